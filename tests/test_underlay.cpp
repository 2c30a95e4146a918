// Bad input and the underlay filter, without root: subnets that IP
// reserves are refused wherever a network is made, and the controller hands
// membership's underlay addresses to the packet filter when they change.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/api.hpp"
#include "common/error.hpp"
#include "daemon/controller.hpp"
#include "daemon/leftovers.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {

api::NetworkCreate net(const std::string& name, const std::string& subnet) {
  api::NetworkCreate n;
  n.name = name;
  n.subnet = Ipv4Prefix::parse(subnet);
  return n;
}

// A cluster of which only the underlay addresses matter.
struct FakeMembership : daemon::Membership {
  bool is_alive(const std::string&) const override { return true; }
  std::optional<Ipv4Address> address_of(const std::string&) const override { return std::nullopt; }
  std::vector<Ipv4Address> underlay_peers() const override { return peers; }
  std::vector<Ipv4Address> peers;
};

}  // namespace

TEST_CASE("subnet_refusal: reserved ranges, with the range named", "[underlay]") {
  struct Case {
    const char* subnet;
    const char* named;  // "" when the subnet is fine
  };
  const Case cases[] = {
      {"0.0.0.0/0", "every IPv4 address"},
      {"0.0.0.0/8", "0.0.0.0/8"},
      {"0.1.0.0/16", "0.0.0.0/8"},
      {"0.0.0.0/1", "0.0.0.0/8"},
      {"127.0.0.0/8", "127.0.0.0/8 (loopback)"},
      {"127.5.0.0/24", "loopback"},
      {"169.254.0.0/16", "169.254.0.0/16 (link-local)"},
      {"169.254.3.0/24", "link-local"},
      {"169.0.0.0/8", "link-local"},  // contains it
      {"224.0.0.0/24", "224.0.0.0/4 (multicast)"},
      {"239.255.255.0/24", "multicast"},
      {"240.0.0.0/4", "240.0.0.0/4 (reserved"},
      {"255.255.255.252/30", "255.255.255.255"},
      {"128.0.0.0/1", "link-local"},
      {"10.0.0.0/8", ""},
      {"10.81.0.0/24", ""},
      {"172.16.0.0/12", ""},
      {"192.168.0.0/16", ""},
      {"1.0.0.0/24", ""},
      {"126.255.255.0/24", ""},
      {"169.253.0.0/16", ""},
      {"223.255.255.0/24", ""},
  };
  for (const auto& c : cases) {
    INFO(c.subnet);
    const auto why = api::subnet_refusal(Ipv4Prefix::parse_network(c.subnet));
    if (std::string(c.named).empty()) {
      CHECK_FALSE(why);
    } else {
      REQUIRE(why);
      CHECK_THAT(*why, Catch::Contains(c.subnet) && Catch::Contains(c.named) &&
                           Catch::Contains("refused"));
    }
  }
}

TEST_CASE("network create refuses reserved subnets and keeps nothing", "[underlay]") {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "test");
  for (const char* bad : {"0.0.0.0/0", "224.0.0.0/24", "169.254.0.0/16", "127.0.0.0/24", "240.0.0.0/24"}) {
    INFO(bad);
    try {
      controller.create_network(net("bad", bad));
      FAIL("created");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      CHECK_THAT(e.what(), Catch::Contains("refused"));
    }
  }
  CHECK(controller.list_networks().empty());
  CHECK(dataplane.firewall.empty());
  // Control: the same call with a usable subnet works.
  CHECK(controller.create_network(net("good", "10.81.0.0/24")).subnet.str() == "10.81.0.0/24");
}

TEST_CASE("the packet filter follows membership's underlay addresses", "[underlay]") {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "test");
  // No cluster: the first sync empties the filter's list (one left by an
  // earlier run must not stay).
  controller.overlay().sync_underlay_peers();
  CHECK(dataplane.underlay_peer_calls == 1);
  CHECK(dataplane.underlay_peers.empty());

  FakeMembership cluster;
  const auto a = Ipv4Address::parse("172.31.250.11");
  const auto b = Ipv4Address::parse("172.31.250.12");
  cluster.peers = {a, b};
  controller.set_membership(&cluster, nullptr, a);
  CHECK(dataplane.underlay_peers == std::vector<Ipv4Address>{a, b});
  const int calls = dataplane.underlay_peer_calls;
  // Unchanged: the kernel is not asked again (housekeeping calls this every second).
  controller.overlay().sync_underlay_peers();
  controller.on_membership_change();
  CHECK(dataplane.underlay_peer_calls == calls);
  // A member gone (reclaimed, or left): it leaves the list.
  cluster.peers = {a};
  controller.on_membership_change();
  CHECK(dataplane.underlay_peers == std::vector<Ipv4Address>{a});
  // Shutting down (the cluster goes, the daemon restarts): the filter keeps
  // its members, so the overlay carries traffic while the daemon is away.
  controller.set_membership(nullptr, nullptr, std::nullopt);
  CHECK(dataplane.underlay_peers == std::vector<Ipv4Address>{a});
  // Leaving the cluster syncs on purpose: nobody.
  controller.overlay().sync_underlay_peers();
  CHECK(dataplane.underlay_peers.empty());
}

TEST_CASE("leftovers: swarmnet's links that the store does not own", "[underlay]") {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "test");
  const auto n = controller.create_network(net("app", "10.2.0.0/24"));
  api::EndpointCreate req;
  req.container_id = "c1";
  req.ifname = "eth0";
  req.netns = "/var/run/netns/c1";
  const auto [e, created] = controller.create_endpoint("app", req);
  const std::string bridge = daemon::Controller::bridge_name(n.id);
  const std::string vxlan = daemon::vxlan_name(n.id);
  const std::string container_end = "swc" + e.host_ifname.substr(3);

  const std::vector<std::string> links = {
      "lo", "eth0", "docker0", "swn", "swnfoo", "swvfoo",          // not swarmnet's names
      bridge, vxlan, e.host_ifname, container_end,                 // owned
      "swn-0123456789a", "swx-0123456789a", "swv0123456789ab",     // stale
      "swc0123456789ab", "swn-gwbridge", "swn-gwsbox", "swi-sandbox"};
  CHECK(daemon::stale_links(links, store) ==
        std::vector<std::string>{"swn-0123456789a", "swx-0123456789a", "swv0123456789ab",
                                 "swc0123456789ab", "swn-gwbridge", "swn-gwsbox", "swi-sandbox"});

  // An empty state owns nothing: every swarmnet link is stale.
  TempDir empty_dir;
  daemon::Store empty(empty_dir.path());
  CHECK(daemon::stale_links(links, empty).size() == 11);

  // A deleted network's bridge is no longer owned.
  controller.delete_endpoint("app", "c1", "eth0");
  controller.remove_network("app");
  const auto after = daemon::stale_links({bridge, vxlan, e.host_ifname}, store);
  CHECK(after == std::vector<std::string>{bridge, vxlan, e.host_ifname});
}

TEST_CASE("leftovers: swarmnet's tables that the daemon does not use", "[underlay]") {
  const std::vector<std::string> tables = {"inet swarmnet", "ip swarmnet-lb", "ip swarmnet-ipvs",
                                           "inet swarmnet-ingress", "inet filter", "ip nat",
                                           "inet swarmnetx"};
  CHECK(daemon::stale_tables(tables, {"swarmnet", "swarmnet-lb"}) ==
        std::vector<std::string>{"ip swarmnet-ipvs", "inet swarmnet-ingress"});
  CHECK(daemon::stale_tables(tables, {"swarmnet"}) ==
        std::vector<std::string>{"ip swarmnet-lb", "ip swarmnet-ipvs", "inet swarmnet-ingress"});
}
