// Cluster IPAM with several controllers in one process, joined by a fake
// gossip that can lose messages and partition nodes: no address is ever live
// on two endpoints, whatever the interleaving, during a partition and after
// it heals.
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "daemon/cluster.hpp"
#include "daemon/controller.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/log_capture.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;
using namespace std::chrono_literals;

namespace {

class FakeCluster;

struct Node : daemon::Membership, daemon::BlockExchange {
  Node(FakeCluster& c, int index);
  bool is_alive(const std::string& node_id) const override;
  std::optional<Ipv4Address> address_of(const std::string& node_id) const override;
  void request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range) override;
  bool may_allocate() const override { return lease_ok; }
  bool lease_ok = true;

  FakeCluster& cluster;
  int index;
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store{dir.path()};
  daemon::Controller controller{store, dataplane, "node" + std::to_string(index)};
};

// Broadcasts are queued and delivered by pump() only between nodes of the
// same partition group; a partitioned node misses them (anti_entropy() then
// repairs, as push/pull does).
class FakeCluster {
 public:
  explicit FakeCluster(int n) {
    for (int i = 0; i < n; ++i) nodes.push_back(std::make_unique<Node>(*this, i));
    for (auto& node : nodes) {
      subscriptions.push_back(node->store.feed().subscribe(
          daemon::Stage::replication, [this, from = node.get()](const daemon::Change& c) {
            if (c.local) queue.push_back({from->index, *c.local});
          }));
      node->controller.set_membership(node.get(), node.get(), Ipv4Address(0xC0A80000u + node->index + 1));
    }
  }
  bool connected(int a, int b) const { return group.at(a) == group.at(b); }
  void partition(int i, int g) { group[i] = g; }
  void heal() { group.clear(); for (size_t i = 0; i < nodes.size(); ++i) group[i] = 0; }
  void pump() {
    while (!queue.empty()) {
      auto [from, line] = queue.front();
      queue.pop_front();
      for (auto& n : nodes) {
        if (n->index != from && connected(from, n->index)) n->store.merge({line});
      }
    }
  }
  void anti_entropy() {
    pump();
    for (auto& a : nodes) {
      for (auto& b : nodes) {
        if (a != b && connected(a->index, b->index)) b->store.merge(a->store.replicated_entries());
      }
    }
    pump();
  }
  std::vector<std::unique_ptr<Node>> nodes;
  std::map<int, int> group = {{0, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}};
  std::deque<std::pair<int, boost::json::value>> queue;
  std::vector<daemon::ChangeFeed::Subscription> subscriptions;  // before the nodes' stores go
};

Node::Node(FakeCluster& c, int i) : cluster(c), index(i) {}

bool Node::is_alive(const std::string& node_id) const {
  for (auto& n : cluster.nodes) {
    if (n->store.node_id() == node_id) return cluster.connected(index, n->index);
  }
  return false;
}

std::optional<Ipv4Address> Node::address_of(const std::string& node_id) const {
  for (auto& n : cluster.nodes) {
    if (n->store.node_id() == node_id) return Ipv4Address(0xC0A80000u + n->index + 1);
  }
  return std::nullopt;
}

// As the daemon does over gossip: the request reaches the reachable nodes,
// the first that owns a free block gives it.
void Node::request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range) {
  for (auto& n : cluster.nodes) {
    if (n->index == index || !cluster.connected(index, n->index)) continue;
    if (n->controller.ipam().donate_block(network_id, store.node_id(), range)) break;
  }
}

api::EndpointCreate ep(const std::string& container) {
  api::EndpointCreate e;
  e.container_id = container;
  e.ifname = "eth0";
  return e;
}

// Like the API server: on BlockNeeded ask for a block, let gossip run, retry.
std::optional<api::Endpoint> add(FakeCluster& c, Node& n, const std::string& net,
                                 const std::string& container) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      return n.controller.create_endpoint(net, ep(container)).first;
    } catch (const daemon::BlockNeeded& e) {
      n.request_block(e.network_id(), e.range());
      c.pump();
    } catch (const Error&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// Every live endpoint across all nodes' tables, by address: never two.
void check_no_duplicates(FakeCluster& c, std::set<int> only = {}) {
  std::map<Ipv4Address, std::string> owner;
  for (auto& n : c.nodes) {
    if (!only.empty() && !only.count(n->index)) continue;
    for (const auto& [key, e] : n->store.endpoints()) {
      if (e.deleted || e.value.node != n->store.node_id()) continue;  // each node's own
      auto [it, fresh] = owner.emplace(e.value.ip, e.value.container_id);
      INFO("address " << e.value.ip.str() << " on " << it->second << " and " << e.value.container_id);
      CHECK(fresh);
    }
  }
}

}  // namespace

TEST_CASE("cluster IPAM: blocks move only by their owner's hand", "[cluster][ipam]") {
  FakeCluster c(3);
  auto& a = *c.nodes[0];
  api::NetworkCreate create;
  create.name = "overlay";
  create.subnet = Ipv4Prefix::parse("10.20.0.0/24");  // /29 blocks
  a.controller.create_network(create);
  c.pump();
  REQUIRE(c.nodes[1]->controller.list_networks().size() == 1);

  auto first_b = add(c, *c.nodes[1], "overlay", "b0");
  REQUIRE(first_b);
  auto first_a = add(c, a, "overlay", "a0");
  REQUIRE(first_a);
  CHECK(first_a->address != first_b->address);
  // b's block came from a (the creator), from the top of the subnet.
  CHECK(first_b->address.address().value() > first_a->address.address().value());

  std::mt19937 rng(7);
  std::map<std::string, int> live;  // container -> node
  for (int i = 0; i < 400; ++i) {
    int n = static_cast<int>(rng() % 3);
    if (!live.empty() && rng() % 3 == 0) {
      auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
      c.nodes[it->second]->controller.delete_endpoint("overlay", it->first, "eth0");
      live.erase(it);
    } else {
      std::string name = "c" + std::to_string(i);
      if (add(c, *c.nodes[n], "overlay", name)) live[name] = n;
    }
    if (rng() % 4 == 0) c.pump();  // gossip lags behind the allocations
  }
  c.anti_entropy();
  check_no_duplicates(c);
  CHECK(live.size() > 100);
}

TEST_CASE("cluster IPAM: a partitioned node never duplicates an address", "[cluster][ipam]") {
  FakeCluster c(3);
  api::NetworkCreate create;
  create.name = "overlay";
  create.subnet = Ipv4Prefix::parse("10.21.0.0/24");
  c.nodes[0]->controller.create_network(create);
  c.pump();
  for (int i = 0; i < 3; ++i) REQUIRE(add(c, *c.nodes[i], "overlay", "warm" + std::to_string(i)));
  c.anti_entropy();

  c.partition(2, 1);  // node 2 alone
  int isolated_ok = 0, isolated_refused = 0;
  for (int i = 0; i < 40; ++i) {
    if (add(c, *c.nodes[2], "overlay", "iso" + std::to_string(i))) {
      ++isolated_ok;
    } else {
      ++isolated_refused;
    }
    add(c, *c.nodes[0], "overlay", "a" + std::to_string(i));
    add(c, *c.nodes[1], "overlay", "b" + std::to_string(i));
    c.pump();
  }
  // Alone, node 2 uses up its own block and then has to refuse: it cannot
  // take blocks without their owners.
  CHECK(isolated_ok > 0);
  CHECK(isolated_refused > 0);
  c.heal();
  c.anti_entropy();
  check_no_duplicates(c);
  // After the heal it can get a block again.
  CHECK(add(c, *c.nodes[2], "overlay", "after-heal"));
  c.anti_entropy();
  check_no_duplicates(c);
}

TEST_CASE("cluster: remote endpoints are programmed while their node lives", "[cluster]") {
  FakeCluster c(2);
  api::NetworkCreate create;
  create.name = "overlay";
  create.subnet = Ipv4Prefix::parse("10.22.0.0/24");
  auto net = c.nodes[0]->controller.create_network(create);
  c.pump();
  auto a = add(c, *c.nodes[0], "overlay", "ca");
  auto b = add(c, *c.nodes[1], "overlay", "cb");
  REQUIRE(a);
  REQUIRE(b);
  c.anti_entropy();
  auto& remote_on_a = c.nodes[0]->dataplane.remote[net.id];
  REQUIRE(remote_on_a.size() == 1);
  CHECK(remote_on_a[0].ip == b->address.address());
  CHECK(remote_on_a[0].mac == b->mac);
  CHECK(remote_on_a[0].vtep.str() == "192.168.0.2");
  CHECK(c.nodes[0]->dataplane.overlays.count(daemon::Controller::bridge_name(net.id)) == 1);

  // A membership change diffs the whole network against the kernel.
  auto& dp = c.nodes[0]->dataplane;
  int full = dp.full_syncs;
  c.partition(1, 1);  // node 1 "dies" as seen from node 0
  c.nodes[0]->controller.on_membership_change();
  CHECK(dp.remote[net.id].empty());
  CHECK(dp.full_syncs == full + 1);
  c.heal();
  c.nodes[0]->controller.on_membership_change();
  CHECK(dp.remote[net.id].size() == 1);

  // Another node's endpoint change: its entries only, no full sync.
  full = dp.full_syncs;
  const int updates = dp.remote_updates;
  c.nodes[1]->controller.delete_endpoint("overlay", "cb", "eth0");
  c.pump();
  CHECK(dp.remote[net.id].empty());
  CHECK(dp.full_syncs == full);
  CHECK(dp.remote_updates == updates + 1);
  auto b2 = add(c, *c.nodes[1], "overlay", "cb2");
  REQUIRE(b2);
  c.pump();
  REQUIRE(dp.remote[net.id].size() == 1);
  CHECK(dp.remote[net.id][0].ip == b2->address.address());
  CHECK(dp.full_syncs == full);
  CHECK(dp.remote_updates == updates + 2);
}

TEST_CASE("cluster IPAM: a node dead past the reclaim time gives its blocks back, not its addresses",
          "[cluster][ipam]") {
  FakeCluster c(3);
  api::NetworkCreate create;
  create.name = "overlay";
  create.subnet = Ipv4Prefix::parse("10.23.0.0/24");
  c.nodes[2]->controller.create_network(create);  // node 2 creates: owns every block
  c.pump();
  for (int i = 0; i < 3; ++i) REQUIRE(add(c, *c.nodes[i], "overlay", "x" + std::to_string(i)));
  c.anti_entropy();
  const std::string dead = c.nodes[2]->store.node_id();

  // Node 2 is cut off, its container x2 running. Past its lease it refuses
  // to allocate...
  c.partition(2, 1);
  c.nodes[2]->lease_ok = false;
  CHECK_FALSE(add(c, *c.nodes[2], "overlay", "late"));
  // ...and past the reclaim time the majority takes its blocks.
  CHECK(c.nodes[0]->controller.reclaim_from(dead) > 0);
  CHECK(c.nodes[0]->controller.reclaim_from(c.nodes[1]->store.node_id()) == 0);  // alive: never
  c.anti_entropy();
  bool x2_held = false;
  for (const auto& e : c.nodes[1]->controller.list_endpoints("overlay")) x2_held |= e.container_id == "x2";
  CHECK(x2_held);
  // The survivors fill the rest of the subnet between them: x2's address
  // is not handed out (before, the reclaim freed it: 253 - 2 were added).
  int added = 0;
  for (int i = 0; i < 300; ++i) {
    if (add(c, *c.nodes[i % 2], "overlay", "r" + std::to_string(i))) ++added;
    c.pump();
  }
  c.anti_entropy();
  CHECK(added == 253 - 3);
  // Node 2 comes back with x2: no address is live twice, node 2's included.
  c.heal();
  c.nodes[2]->lease_ok = true;
  c.anti_entropy();
  check_no_duplicates(c);

  SECTION("node rm frees a node gone for good, and never a live one") {
    CHECK(c.nodes[0]->controller.release_node(dead) == 0);  // alive again: refused
    c.partition(2, 1);
    CHECK(c.nodes[0]->controller.release_node(dead) == 1);
    c.anti_entropy();
    CHECK(add(c, *c.nodes[0], "overlay", "after-rm"));  // x2's address, in a block node 0 reclaimed
    CHECK_FALSE(add(c, *c.nodes[0], "overlay", "full"));
  }
}

namespace {

// One daemon's Cluster on loopback, resumed from a cluster.json written here
// as an earlier run of the daemon (or an older swarmnetd) would leave it.
// Its peers do not run: this node is cut off from them.
struct RestartedNode {
  explicit RestartedNode(const boost::json::object& settings, std::chrono::seconds reclaim_after = 60s) {
    write_settings(settings);
    daemon::ClusterOptions options;
    options.gossip_port = 0;  // any free port
    options.reclaim_after = reclaim_after;
    cluster = std::make_unique<daemon::Cluster>(io, store, controller, dir.path(), "me", options);
    cluster->resume();
  }
  void write_settings(const boost::json::object& settings) const {
    std::ofstream(dir / "cluster.json") << boost::json::serialize(settings) << "\n";
  }
  boost::json::object saved() const {
    std::ifstream in(dir / "cluster.json");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return boost::json::parse(text).as_object();
  }
  std::string allocate_error() {
    try {
      controller.create_endpoint("overlay", ep("c" + std::to_string(++count)));
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  TempDir dir;
  boost::asio::io_context io;  // never run: no gossip gets through
  FakeDataplane dataplane;
  daemon::Store store{dir.path()};
  daemon::Controller controller{store, dataplane, "me"};
  std::unique_ptr<daemon::Cluster> cluster;
  int count = 0;
};

api::NetworkCreate overlay() {
  api::NetworkCreate n;
  n.name = "overlay";
  n.subnet = Ipv4Prefix::parse("10.30.0.0/24");
  return n;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// cluster.json of this node in a cluster of 3, both others last seen `status`.
boost::json::object settings(const std::string& status, std::optional<int64_t> majority_ago_s) {
  boost::json::array members;
  for (int i : {2, 3}) {
    boost::json::object m{{"id", "peer" + std::to_string(i)},
                          {"name", "host" + std::to_string(i)},
                          {"address", "127.0.0.1:" + std::to_string(40000 + i)}};
    if (!status.empty()) m["status"] = status;
    members.push_back(std::move(m));
  }
  boost::json::object o{{"advertise", "127.0.0.1"},
                        {"keys", boost::json::array{gossip::Keyring::key_to_base64(gossip::Keyring::generate_key())}},
                        {"keys_version", 1},
                        {"peers", boost::json::array{"127.0.0.1:40002", "127.0.0.1:40003"}},
                        {"members", std::move(members)}};
  if (majority_ago_s) o["last_majority_unix"] = unix_now() - *majority_ago_s;
  return o;
}

}  // namespace

TEST_CASE("cluster lease: a restart inside a partition neither renews nor loses the lease", "[cluster][lease]") {
  SECTION("cut off past the lease, restarted: still refuses, and says why") {
    RestartedNode n(settings("dead", 100));  // lease 30 s, last majority 100 s ago
    n.controller.create_network(overlay());
    CHECK_FALSE(n.cluster->may_allocate());
    const std::string error = n.allocate_error();
    CHECK_THAT(error, Catch::Contains("cut off from most of the cluster for longer than its lease"));
    CHECK_THAT(error, Catch::Contains("force-new-cluster"));
    // Its members stay counted, dead, across the restart.
    const auto members = n.saved().at("members").as_array();
    REQUIRE(members.size() == 2);
    for (const auto& m : members) CHECK(m.at("status").as_string() == "dead");
    CHECK(n.saved().at("last_majority_unix").as_int64() == 0);  // the lease had run out
  }
  SECTION("cut off, restarted inside the lease: goes on allocating from its own blocks") {
    RestartedNode n(settings("dead", 5));
    n.controller.create_network(overlay());
    CHECK(n.cluster->may_allocate());
    CHECK(n.allocate_error().empty());
    // The saved time is the old one, not the restart's.
    CHECK(n.saved().at("last_majority_unix").as_int64() <= unix_now() - 5);
  }
  SECTION("a file of an older swarmnetd (alive members only, no time): refuses until a majority is seen") {
    RestartedNode n(settings("", std::nullopt));
    CHECK_FALSE(n.cluster->may_allocate());
  }
  SECTION("a last majority in the future (the clock went back): refuses") {
    RestartedNode n(settings("dead", -3600));
    CHECK_FALSE(n.cluster->may_allocate());
  }
  SECTION("force-new-cluster: the members out of sight stop counting, and that survives a restart") {
    boost::json::object before = settings("dead", 100);
    {
      RestartedNode n(before);
      REQUIRE_FALSE(n.cluster->may_allocate());
      CHECK(n.cluster->force_new_cluster() == 2);
      CHECK(n.cluster->may_allocate());
      n.controller.create_network(overlay());
      CHECK(n.allocate_error().empty());
      before = n.saved();
      for (const auto& m : before.at("members").as_array()) CHECK(m.at("status").as_string() == "left");
    }
    // Restarted long after: alone in its quorum, it is a majority at once,
    // and stays one.
    before["last_majority_unix"] = unix_now() - 1000;
    RestartedNode again(before);
    CHECK(again.cluster->may_allocate());
    again.io.run_for(1500ms);
    CHECK(again.cluster->may_allocate());
  }
  SECTION("control: the same restart with dead members does not renew the lease") {
    RestartedNode n(settings("dead", 1000));
    n.io.run_for(1500ms);
    CHECK_FALSE(n.cluster->may_allocate());
  }
}

TEST_CASE("networks from the address pools: distinct across nodes; two made at the same moment clash loudly",
          "[cluster][pools]") {
  swarmnet::testing::LogCapture log;
  FakeCluster c(2);
  ipam::AddressPools pools;
  pools.pools = {Ipv4Prefix::parse("172.30.0.0/24")};
  pools.mask_length = 26;
  for (auto& n : c.nodes) n->controller.ipam().set_address_pools(pools);
  auto& a = *c.nodes[0];
  auto& b = *c.nodes[1];
  auto named = [](const char* name) {
    api::NetworkCreate n;
    n.name = name;
    return n;
  };

  // One after the other (gossip in between): each node skips the other's.
  CHECK(a.controller.create_network(named("one")).subnet.str() == "172.30.0.0/26");
  c.pump();
  CHECK(b.controller.create_network(named("two")).subnet.str() == "172.30.0.64/26");
  c.pump();
  CHECK(log.matching({"clash"}).empty());

  // At the same moment (neither has heard of the other's): both pick the
  // lowest free subnet; there is no coordinator to prevent it, so both nodes
  // say so once they hear of it.
  c.partition(1, 1);
  CHECK(a.controller.create_network(named("three")).subnet.str() == "172.30.0.128/26");
  CHECK(b.controller.create_network(named("four")).subnet.str() == "172.30.0.128/26");
  c.heal();
  c.anti_entropy();
  CHECK(log.matching({"three", "four", "created concurrently on two nodes and clash"}).size() >= 2);
}

TEST_CASE("cluster IPAM: a network's ip range serves every node, whoever owns its blocks first",
          "[cluster][ipam][range]") {
  FakeCluster c(3);
  api::NetworkCreate create;
  create.name = "ranged";
  create.subnet = Ipv4Prefix::parse("10.22.0.0/24");
  create.ip_range = Ipv4Prefix::parse("10.22.0.96/27");
  const api::Network made = c.nodes[0]->controller.create_network(create);
  CHECK(made.block_length == 29);
  REQUIRE(made.ip_range);
  c.pump();
  // Node 0 made the network and takes the range's first block first; the
  // others' addresses must come from blocks of the range node 0 owns.
  REQUIRE(add(c, *c.nodes[0], "ranged", "a0"));
  std::set<Ipv4Address> seen;
  for (int i = 0; i < 18; ++i) {
    auto& n = *c.nodes[static_cast<size_t>(2 - i % 3)];
    const auto made_ep = add(c, n, "ranged", "c" + std::to_string(i));
    REQUIRE(made_ep);
    INFO(made_ep->address.str());
    CHECK(create.ip_range->contains(made_ep->address.address()));
    CHECK(seen.insert(made_ep->address.address()).second);
    if (i % 2) c.pump();  // gossip lags behind the allocations
  }
  c.anti_entropy();
  check_no_duplicates(c);
  for (auto& n : c.nodes) {
    size_t mine = 0;
    for (const auto& [key, e] : n->store.endpoints())
      if (!e.deleted && e.value.node == n->store.node_id()) ++mine;
    CHECK(mine >= 6);
  }
  // Removed, an address is free again: the node hands it out next (the
  // range's lowest free address, as Docker does).
  const Ipv4Address freed = c.nodes[2]->controller.create_endpoint("ranged", ep("c0")).first.address.address();
  c.nodes[2]->controller.delete_endpoint("ranged", "c0", "eth0");
  const auto again = add(c, *c.nodes[2], "ranged", "again");
  REQUIRE(again);
  CHECK(again->address.address() == freed);
  // A static address outside the range: from the owner of its block, as before.
  api::EndpointCreate fixed = ep("fixed");
  fixed.static_ips = {Ipv4Address::parse("10.22.0.10")};
  CHECK(c.nodes[0]->controller.create_endpoint("ranged", fixed).first.address.address().str() == "10.22.0.10");
}

TEST_CASE("cluster IPAM: another node's new endpoint is marked used, not a rebuild of the address space",
          "[cluster][ipam]") {
  FakeCluster c(2);
  auto& a = *c.nodes[0];
  api::NetworkCreate create;
  create.name = "overlay";
  create.subnet = Ipv4Prefix::parse("10.23.0.0/24");
  a.controller.create_network(create);
  c.pump();
  REQUIRE(add(c, a, "overlay", "a0"));
  REQUIRE(add(c, *c.nodes[1], "overlay", "b0"));
  c.pump();
  const size_t rebuilds = a.controller.ipam().space_rebuilds();
  // b's endpoint reached a: a's next ADD uses its space as it is.
  auto a1 = add(c, a, "overlay", "a1");
  REQUIRE(a1);
  CHECK(a.controller.ipam().space_rebuilds() == rebuilds);
  // Nor a removal, another node's or its own (each was a rebuild from every
  // endpoint at the next ADD: O(the store) per change while a cluster churns).
  c.nodes[1]->controller.delete_endpoint("overlay", "b0", "eth0");
  c.pump();
  REQUIRE(add(c, a, "overlay", "a2"));
  a.controller.delete_endpoint("overlay", "a1", "eth0");
  REQUIRE(add(c, a, "overlay", "a3"));
  CHECK(a.controller.ipam().space_rebuilds() == rebuilds);
  check_no_duplicates(c);
}

TEST_CASE("cluster IPAM: an address two endpoints hold (a clash) is free only once both are gone",
          "[cluster][ipam]") {
  FakeCluster c(2);
  auto& a = *c.nodes[0];
  auto& b = *c.nodes[1];
  api::NetworkCreate create;
  create.name = "overlay";
  create.subnet = Ipv4Prefix::parse("10.24.0.0/24");
  const std::string network_id = a.controller.create_network(create).id;
  c.pump();
  const auto a0 = add(c, a, "overlay", "a0");
  REQUIRE(a0);
  const Ipv4Address clashed = a0->address.address();
  // b holds the same address, as after a lease race across a partition (a
  // node handed it out just before it was cut off, the majority again).
  daemon::EndpointRecord twin;
  twin.network_id = network_id;
  twin.node = b.store.node_id();
  twin.container_id = "b-twin";
  twin.ifname = "eth0";
  twin.ip = clashed;
  twin.attach = false;
  b.store.put(twin);
  c.pump();
  const size_t rebuilds = a.controller.ipam().space_rebuilds();
  api::EndpointCreate fixed = ep("wants-it");
  fixed.static_ips = {clashed};
  // a's own endpoint goes: b's still holds the address, a must not hand it out.
  a.controller.delete_endpoint("overlay", "a0", "eth0");
  CHECK_THROWS_WITH(a.controller.create_endpoint("overlay", fixed), Catch::Contains("in use"));
  // Control: once b's goes too, the address is free, and a hands it out.
  b.store.erase_endpoint(daemon::endpoint_key(network_id, twin.node, twin.container_id, twin.ifname));
  c.pump();
  CHECK(a.controller.create_endpoint("overlay", fixed).first.address.address() == clashed);
  CHECK(a.controller.ipam().space_rebuilds() == rebuilds);
}
