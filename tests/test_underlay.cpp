// Issue 12's underlay filter, without root: the controller hands
// membership's underlay addresses to the packet filter when they change.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "daemon/controller.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {

// A cluster of which only the underlay addresses matter.
struct FakeMembership : daemon::Membership {
  bool is_alive(const std::string&) const override { return true; }
  std::optional<Ipv4Address> address_of(const std::string&) const override { return std::nullopt; }
  void request_block(const std::string&) override {}
  std::vector<Ipv4Address> underlay_peers() const override { return peers; }
  std::vector<Ipv4Address> peers;
};

}  // namespace

TEST_CASE("the packet filter follows membership's underlay addresses", "[underlay]") {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "test");
  // No cluster: the first sync empties the filter's list (one left by an
  // earlier run must not stay).
  controller.sync_underlay_peers();
  CHECK(dataplane.underlay_peer_calls == 1);
  CHECK(dataplane.underlay_peers.empty());

  FakeMembership cluster;
  const auto a = Ipv4Address::parse("172.31.250.11");
  const auto b = Ipv4Address::parse("172.31.250.12");
  cluster.peers = {a, b};
  controller.set_membership(&cluster, a);
  CHECK(dataplane.underlay_peers == std::vector<Ipv4Address>{a, b});
  const int calls = dataplane.underlay_peer_calls;
  // Unchanged: the kernel is not asked again (housekeeping calls this every second).
  controller.sync_underlay_peers();
  controller.on_membership_change();
  CHECK(dataplane.underlay_peer_calls == calls);
  // A member gone (reclaimed, or left): it leaves the list.
  cluster.peers = {a};
  controller.on_membership_change();
  CHECK(dataplane.underlay_peers == std::vector<Ipv4Address>{a});
  // Shutting down (the cluster goes, the daemon restarts): the filter keeps
  // its members, so the overlay carries traffic while the daemon is away.
  controller.set_membership(nullptr, std::nullopt);
  CHECK(dataplane.underlay_peers == std::vector<Ipv4Address>{a});
  // Leaving the cluster syncs on purpose: nobody.
  controller.sync_underlay_peers();
  CHECK(dataplane.underlay_peers.empty());
}
