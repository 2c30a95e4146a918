// The overlay on its own, against the fake Dataplane and a fake membership:
// what the kernel is asked for as containers come and go, nodes die and come
// back, and networks are made.
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <string>

#include "common/error.hpp"
#include "daemon/overlay.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {

struct FakeMembership : daemon::Membership {
  bool is_alive(const std::string& node_id) const override { return !dead.count(node_id); }
  std::optional<Ipv4Address> address_of(const std::string& node_id) const override {
    if (auto it = vteps.find(node_id); it != vteps.end()) return it->second;
    return vtep;
  }
  std::vector<Ipv4Address> underlay_peers() const override { return {vtep}; }
  std::set<std::string> dead;
  Ipv4Address vtep = Ipv4Address::parse("192.168.50.2");
  std::map<std::string, std::optional<Ipv4Address>> vteps;  // other than `vtep`
};

daemon::NetworkRecord network(const std::string& id, const std::string& subnet, const std::string& created_by) {
  daemon::NetworkRecord n;
  n.id = id;
  n.name = "net-" + id.substr(0, 4);
  n.subnet = Ipv4Prefix::parse(subnet);
  n.gateway = Ipv4Address(n.subnet.network().value() + 1);
  n.mtu = 1450;
  n.vni = 5000;
  n.block_length = 28;
  n.created_by = created_by;
  return n;
}

daemon::EndpointRecord endpoint(const daemon::NetworkRecord& n, const std::string& node, const std::string& container,
                                const std::string& ip) {
  daemon::EndpointRecord e;
  e.id = container + "-id";
  e.network_id = n.id;
  e.node = node;
  e.container_id = container;
  e.ifname = "eth0";
  e.ip = Ipv4Address::parse(ip);
  e.attach = true;
  e.host_ifname = "swv" + container;
  return e;
}

// This host (`me`) and another (`other`), whose tables reach mine by merge.
struct Hosts {
  Hosts() {
    overlay.set_membership(&membership, Ipv4Address::parse("192.168.50.1"));
    net = network("aaaabbbbccccdddd", "10.40.0.0/24", other.node_id());
    other.put(net);
    gossip();
  }
  void gossip() { me.merge(other.replicated_entries()); }
  std::string bridge() const { return daemon::Overlay::bridge_name(net.id); }

  TempDir other_dir, my_dir;
  daemon::Store other{other_dir.path()};
  daemon::Store me{my_dir.path()};
  FakeDataplane dataplane;
  FakeMembership membership;
  daemon::Overlay overlay{me, dataplane};
  daemon::NetworkRecord net;
};

}  // namespace

TEST_CASE("overlay: a network comes with its first local container and goes with its last", "[overlay]") {
  Hosts h;
  h.other.put(endpoint(h.net, h.other.node_id(), "remote1", "10.40.0.20"));
  h.gossip();
  // No local container: nothing of the network on this host.
  h.overlay.sync_network(h.net.id);
  CHECK(h.dataplane.bridges.empty());

  h.overlay.prepare_attach(h.net);
  h.me.put(endpoint(h.net, h.me.node_id(), "local1", "10.40.0.2"));
  h.overlay.attached(h.net);
  CHECK(h.dataplane.bridges.count(h.bridge()));
  CHECK(h.dataplane.overlays[h.bridge()] == "vni 5000 local 192.168.50.1");
  REQUIRE(h.dataplane.remote[h.net.id].size() == 1);
  CHECK(h.dataplane.remote[h.net.id][0].ip.str() == "10.40.0.20");
  CHECK(h.dataplane.remote[h.net.id][0].vtep.str() == "192.168.50.2");

  // A second local container: the bridge is only checked.
  h.me.put(endpoint(h.net, h.me.node_id(), "local2", "10.40.0.3"));
  h.dataplane.remote.clear();
  h.overlay.attached(h.net);
  CHECK(h.dataplane.remote.empty());

  const std::string local1 = daemon::endpoint_key(h.net.id, h.me.node_id(), "local1", "eth0");
  const std::string local2 = daemon::endpoint_key(h.net.id, h.me.node_id(), "local2", "eth0");
  h.me.erase_endpoint(local1);
  h.overlay.detached(h.net, "swvlocal1");
  CHECK(h.dataplane.bridges.count(h.bridge()));  // local2 still needs it
  h.me.erase_endpoint(local2);
  h.overlay.detached(h.net, "swvlocal2");
  CHECK(h.dataplane.bridges.empty());
  CHECK(h.dataplane.removed_links == std::vector<std::string>{"swvlocal1", "swvlocal2"});
}

TEST_CASE("overlay: a dead node's containers leave the tunnels and come back with it", "[overlay]") {
  Hosts h;
  h.other.put(endpoint(h.net, h.other.node_id(), "remote1", "10.40.0.20"));
  h.gossip();
  h.me.put(endpoint(h.net, h.me.node_id(), "local1", "10.40.0.2"));
  h.overlay.attached(h.net);
  REQUIRE(h.dataplane.remote[h.net.id].size() == 1);

  h.membership.dead.insert(h.other.node_id());
  h.overlay.membership_changed();
  CHECK(h.dataplane.remote[h.net.id].empty());
  h.membership.dead.clear();
  h.overlay.membership_changed();
  CHECK(h.dataplane.remote[h.net.id].size() == 1);
  CHECK(h.dataplane.underlay_peers == std::vector<Ipv4Address>{Ipv4Address::parse("192.168.50.2")});

  // The network deleted on the other node: its bridge goes once no local
  // container holds it (here one does: it stays).
  h.other.erase_network(h.net.id);
  h.gossip();
  h.overlay.network_changed(h.net.id);
  CHECK(h.dataplane.bridges.count(h.bridge()));
  h.me.erase_endpoint(daemon::endpoint_key(h.net.id, h.me.node_id(), "local1", "eth0"));
  h.overlay.network_changed(h.net.id);
  CHECK(h.dataplane.bridges.empty());
}

TEST_CASE("overlay: the packet filter isolates every network but the ingress, the older of two clashing",
          "[overlay]") {
  Hosts h;
  daemon::NetworkRecord clash = network("eeeeffff00001111", "10.40.0.0/25", h.other.node_id());
  clash.vni = 5001;
  daemon::NetworkRecord internal = network("2222333344445555", "10.41.0.0/24", h.other.node_id());
  internal.internal = true;
  internal.vni = 5002;
  internal.encrypted = true;
  daemon::NetworkRecord ingress = network("6666777788889999", "10.255.0.0/16", h.other.node_id());
  ingress.ingress = true;
  ingress.vni = 5003;
  for (const auto& n : {clash, internal, ingress}) h.other.put(n);
  h.gossip();
  h.overlay.sync_firewall();
  CHECK(h.dataplane.firewall == std::set<std::string>{"10.40.0.0/24", "10.41.0.0/24 internal"});
  CHECK(h.dataplane.encrypted_vnis == std::set<uint32_t>{5002});
}

TEST_CASE("overlay: VNIs come from the network id, skipping those in use; MTU from the underlay", "[overlay]") {
  Hosts h;
  const uint32_t vni = h.overlay.pick_vni("00001389ffffffff");  // 0x1389 = 5001
  CHECK(vni == 4096 + 5001);
  daemon::NetworkRecord taken = network("1111222233334444", "10.42.0.0/24", h.other.node_id());
  taken.vni = vni;
  h.other.put(taken);
  h.gossip();
  CHECK(h.overlay.pick_vni("00001389ffffffff") == vni + 1);
  h.dataplane.mtu = 9000;
  CHECK(h.overlay.default_mtu(false) == 8950);
  CHECK(h.overlay.default_mtu(true) == 8910);
  h.dataplane.mtu = 600;
  CHECK(h.overlay.default_mtu(true) == daemon::Overlay::kMinMtu);
}

TEST_CASE("overlay: another node's endpoint change touches its own entries only, no full sync", "[overlay]") {
  Hosts h;
  h.me.put(endpoint(h.net, h.me.node_id(), "local1", "10.40.0.2"));
  h.overlay.attached(h.net);  // the network comes to this host: the full sync
  REQUIRE(h.dataplane.full_syncs == 1);

  const auto remote1 = endpoint(h.net, h.other.node_id(), "remote1", "10.40.0.20");
  const std::string key = daemon::endpoint_key(h.net.id, h.other.node_id(), "remote1", "eth0");
  h.other.put(remote1);
  h.gossip();
  h.overlay.endpoint_changed(h.net.id, key);
  CHECK(h.dataplane.full_syncs == 1);
  CHECK(h.dataplane.remote_updates == 1);
  REQUIRE(h.dataplane.remote[h.net.id].size() == 1);
  CHECK(h.dataplane.remote[h.net.id][0].ip.str() == "10.40.0.20");

  // A change the kernel does not see (health): nothing at all.
  auto unhealthy = remote1;
  unhealthy.healthy = false;
  h.other.put(unhealthy);
  h.gossip();
  h.overlay.endpoint_changed(h.net.id, key);
  CHECK(h.dataplane.full_syncs == 1);
  CHECK(h.dataplane.remote_updates == 1);

  h.other.erase_endpoint(key);
  h.gossip();
  h.overlay.endpoint_changed(h.net.id, key);
  CHECK(h.dataplane.full_syncs == 1);
  CHECK(h.dataplane.remote_updates == 2);
  CHECK(h.dataplane.remote[h.net.id].empty());

  // Control: a membership change still diffs the whole network.
  h.overlay.membership_changed();
  CHECK(h.dataplane.full_syncs == 2);

  // A network without a local container here: neither.
  h.me.erase_endpoint(daemon::endpoint_key(h.net.id, h.me.node_id(), "local1", "eth0"));
  h.overlay.detached(h.net, "swvlocal1");
  h.other.put(remote1);
  h.gossip();
  h.overlay.endpoint_changed(h.net.id, key);
  CHECK(h.dataplane.full_syncs == 2);
  CHECK(h.dataplane.remote_updates == 2);
  CHECK(h.dataplane.bridges.empty());
}

TEST_CASE("overlay: two endpoints sharing an address: removing one leaves the other's entries", "[overlay]") {
  Hosts h;
  h.membership.vteps["node-c"] = Ipv4Address::parse("192.168.50.3");
  h.me.put(endpoint(h.net, h.me.node_id(), "local1", "10.40.0.2"));
  h.overlay.attached(h.net);
  // The same address on two other nodes (a clash; the MAC follows the IP).
  const auto b = endpoint(h.net, h.other.node_id(), "b", "10.40.0.20");
  const auto c = endpoint(h.net, "node-c", "c", "10.40.0.20");
  const std::string key_b = daemon::endpoint_key(h.net.id, b.node, "b", "eth0");
  const std::string key_c = daemon::endpoint_key(h.net.id, c.node, "c", "eth0");
  h.me.put(b);
  h.overlay.endpoint_changed(h.net.id, key_b);
  h.me.put(c);
  h.overlay.endpoint_changed(h.net.id, key_c);
  // The smaller holder (vtep .2) is served.
  REQUIRE(h.dataplane.remote[h.net.id].size() == 1);
  CHECK(h.dataplane.remote[h.net.id][0].vtep.str() == "192.168.50.2");
  h.me.erase_endpoint(key_b);
  h.overlay.endpoint_changed(h.net.id, key_b);
  // Not deleted with b: now c's.
  REQUIRE(h.dataplane.remote[h.net.id].size() == 1);
  CHECK(h.dataplane.remote[h.net.id][0].vtep.str() == "192.168.50.3");
  h.me.erase_endpoint(key_c);
  h.overlay.endpoint_changed(h.net.id, key_c);
  CHECK(h.dataplane.remote[h.net.id].empty());
  CHECK(h.dataplane.full_syncs == 1);
}

// The delta must come to what the full diff makes of the same tables,
// whatever the order of changes: random additions, removals and moves (a new
// address or detached) of endpoints on four nodes, with few addresses so that
// they clash often (and a MAC shared by two addresses now and then), a node
// dying and coming back or changing its address between them. After each
// change, this overlay's entries (deltas since the last full sync) against a
// fresh overlay's full sync of the same tables.
TEST_CASE("overlay: a series of per-endpoint deltas leaves what a full sync would", "[overlay]") {
  Hosts h;
  const std::vector<std::string> nodes = {h.other.node_id(), "node-c", "node-d", h.me.node_id()};
  h.membership.vteps["node-c"] = Ipv4Address::parse("192.168.50.3");
  h.membership.vteps["node-d"] = Ipv4Address::parse("192.168.50.4");
  h.me.put(endpoint(h.net, h.me.node_id(), "local0", "10.40.0.2"));
  h.overlay.attached(h.net);

  std::mt19937 rng(GENERATE(1u, 2u, 3u));
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  std::set<std::string> live;  // keys written and not erased
  for (int step = 0; step < 150; ++step) {
    const size_t what = pick(20);
    if (what == 0) {
      // Membership: a node dies, comes back or moves; the full sync follows.
      const std::string& node = nodes[pick(3)];
      if (h.membership.dead.count(node)) {
        h.membership.dead.erase(node);
      } else if (pick(2)) {
        h.membership.dead.insert(node);
      } else {
        h.membership.vteps[node] = Ipv4Address::parse("192.168.50." + std::to_string(10 + pick(3)));
      }
      h.overlay.membership_changed();
    } else {
      const std::string node = nodes[pick(nodes.size())];
      const std::string container = "c" + std::to_string(pick(6));
      const std::string key = daemon::endpoint_key(h.net.id, node, container, "eth0");
      if (what < 6 && live.count(key)) {
        h.me.erase_endpoint(key);
        live.erase(key);
      } else {
        // Four addresses for six containers: two endpoints often share an
        // address, so also a MAC (derived from it).
        auto e = endpoint(h.net, node, container, "10.40.0." + std::to_string(20 + pick(4)));
        e.attach = pick(6) != 0;
        h.me.put(e);
        live.insert(key);
      }
      if (node != h.me.node_id()) h.overlay.endpoint_changed(h.net.id, key);
    }
    FakeDataplane full;
    daemon::Overlay fresh{h.me, full};
    fresh.set_membership(&h.membership, Ipv4Address::parse("192.168.50.1"));
    fresh.sync_network(h.net.id);
    INFO("step " << step);
    REQUIRE(h.dataplane.entries[h.net.id] == full.entries[h.net.id]);
  }
  CHECK(h.dataplane.remote_updates > 0);
}
