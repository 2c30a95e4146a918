// The daemon's logic against a fake kernel: networks, endpoint addresses,
// idempotence, rollback, persistence across restarts.
#include <catch2/catch.hpp>
#include <algorithm>
#include <set>

#include "common/error.hpp"
#include "daemon/controller.hpp"
#include "daemon/endpoint_reaper.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {

api::NetworkCreate net(const std::string& name, const std::string& subnet = "") {
  api::NetworkCreate n;
  n.name = name;
  if (!subnet.empty()) n.subnet = Ipv4Prefix::parse(subnet);
  return n;
}

api::EndpointCreate ep(const std::string& container, const std::string& ifname = "eth0") {
  api::EndpointCreate e;
  e.container_id = container;
  e.ifname = ifname;
  e.netns = "/var/run/netns/" + container;
  return e;
}

// As the CNI plugin asks for it, for the network configuration `config`.
api::EndpointCreate cni_ep(const std::string& container, const std::string& config = "app-conf") {
  api::EndpointCreate e = ep(container);
  e.owner = api::kOwnerCni;
  e.cni_config = config;
  return e;
}

struct Daemon {
  explicit Daemon(const std::string& dir) : store(dir), controller(store, dataplane, "test") {}
  FakeDataplane dataplane;
  daemon::Store store;
  daemon::Controller controller;
};

Errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("expected an Error");
  return Errc::internal;
}

}  // namespace

TEST_CASE("networks: create, list, defaults, validation", "[controller]") {
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;

  auto a = c.create_network(net("front", "10.1.0.0/24"));
  CHECK(a.gateway.str() == "10.1.0.1");
  CHECK(a.mtu == 1450);  // underlay 1500 - VXLAN 50
  CHECK(a.vni >= 4096);
  CHECK(a.id.size() == 32);

  auto b = c.create_network(net("back"));  // from the default pool
  CHECK(b.subnet.str() == "10.0.0.0/24");
  CHECK(b.vni >= 4096);
  CHECK(b.vni != a.vni);

  auto third = c.create_network(net("third"));
  CHECK(third.subnet.str() == "10.0.1.0/24");  // 10.1.0.0/24 is taken, 10.0.0.0/24 too

  CHECK(c.list_networks().size() == 3);
  // Every network is in the packet filter (isolation holds for all of them).
  CHECK(d.dataplane.firewall == std::set<std::string>{"10.1.0.0/24", "10.0.0.0/24", "10.0.1.0/24"});
  CHECK(c.inspect_network(a.id).name == "front");

  CHECK(code_of([&] { c.create_network(net("front", "10.9.0.0/24")); }) == Errc::conflict);
  CHECK(code_of([&] { c.create_network(net("x", "10.1.0.128/25")); }) == Errc::conflict);
  CHECK(code_of([&] { c.create_network(net("x", "10.50.0.1/24")); }) == Errc::invalid_argument);
  CHECK(code_of([&] { c.create_network(net("x", "10.50.0.0/31")); }) == Errc::invalid_argument);
  CHECK(code_of([&] { c.create_network(net("bad/name", "10.50.0.0/24")); }) ==
        Errc::invalid_argument);
  auto with_gw = net("gw", "10.60.0.0/24");
  with_gw.gateway = Ipv4Address::parse("10.61.0.1");
  CHECK(code_of([&] { c.create_network(with_gw); }) == Errc::invalid_argument);
  auto small_mtu = net("m", "10.62.0.0/24");
  small_mtu.mtu = 100;
  CHECK(code_of([&] { c.create_network(small_mtu); }) == Errc::invalid_argument);
  CHECK(code_of([&] { c.inspect_network("nope"); }) == Errc::not_found);
}

TEST_CASE("networks without a subnet come from the address pools, clear of the host's routes",
          "[controller][pools]") {
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;
  d.dataplane.routes = {{Ipv4Prefix::parse("172.30.1.0/24"), "eth1"}};
  ipam::AddressPools pools;
  pools.pools = {Ipv4Prefix::parse("172.30.0.0/23"), Ipv4Prefix::parse("192.168.200.0/24")};
  pools.mask_length = 25;
  c.ipam().set_address_pools(pools);

  CHECK(c.create_network(net("given", "172.30.0.0/25")).subnet.str() == "172.30.0.0/25");
  // 172.30.0.0/25 is a network's, 172.30.1.0/24 the host's route to eth1.
  CHECK(c.create_network(net("a")).subnet.str() == "172.30.0.128/25");
  CHECK(c.create_network(net("b")).subnet.str() == "192.168.200.0/25");
  CHECK(c.create_network(net("c")).subnet.str() == "192.168.200.128/25");
  try {
    c.create_network(net("d"));
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::exhausted);
    CHECK_THAT(e.what(), Catch::Contains("172.30.0.0/23, 192.168.200.0/24") && Catch::Contains("no free /25") &&
                             Catch::Contains("give --subnet"));
  }
  // Back to swarm's defaults (out of the cluster).
  c.ipam().set_address_pools(ipam::default_address_pools());
  CHECK(c.create_network(net("e")).subnet.str() == "10.0.0.0/24");
}

TEST_CASE("address pools against the host's routes: warned when partly covered, refused when wholly",
          "[controller][pools]") {
  TempDir dir;
  Daemon d(dir.path());
  d.dataplane.routes = {{Ipv4Prefix::parse("172.31.250.0/24"), "eth0"},
                        {Ipv4Prefix::parse("10.8.0.0/16"), ""}};
  ipam::AddressPools pools;
  pools.pools = {Ipv4Prefix::parse("172.31.0.0/16"), Ipv4Prefix::parse("192.168.0.0/24")};
  pools.mask_length = 24;
  const auto warnings = daemon::ClusterIpam::check_pools_against_routes(pools, d.dataplane.host_routes());
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("172.31.0.0/16 overlaps a route of this host: 172.31.250.0/24 (dev eth0)"));

  // The control: a pool clear of every route gives no warning.
  pools.pools = {Ipv4Prefix::parse("192.168.0.0/24")};
  CHECK(daemon::ClusterIpam::check_pools_against_routes(pools, d.dataplane.host_routes()).empty());

  for (const char* covered : {"172.31.250.0/24", "172.31.250.128/25", "10.8.0.0/16"}) {
    INFO(covered);
    pools.pools = {Ipv4Prefix::parse("192.168.0.0/24"), Ipv4Prefix::parse(covered)};
    pools.mask_length = 26;
    try {
      daemon::ClusterIpam::check_pools_against_routes(pools, d.dataplane.host_routes());
      FAIL("no throw");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      CHECK_THAT(e.what(), Catch::Contains(std::string(covered) + " is refused: every /26 subnet of it overlaps"));
    }
  }
}

TEST_CASE("endpoints: addresses in order, idempotent ADD, bridge lifetime", "[controller]") {
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;
  auto n = c.create_network(net("app", "10.2.0.0/24"));
  const std::string bridge = daemon::Controller::bridge_name(n.id);

  auto [e1, created1] = c.create_endpoint("app", ep("c1"));
  CHECK(created1);
  CHECK(e1.address.str() == "10.2.0.2/24");
  CHECK(e1.gateway.str() == "10.2.0.1");
  CHECK(e1.mac == "02:42:0a:02:00:02");
  CHECK(e1.bridge == bridge);
  CHECK(e1.host_ifname.size() <= 15);
  CHECK(d.dataplane.bridges.at(bridge) == "10.2.0.1/24");

  auto [again, created_again] = c.create_endpoint("app", ep("c1"));
  CHECK_FALSE(created_again);
  CHECK(again.address == e1.address);

  auto [e2, created2] = c.create_endpoint("app", ep("c2"));
  CHECK(e2.address.str() == "10.2.0.3/24");
  // Same container, second interface: its own address.
  auto [e3, created3] = c.create_endpoint("app", ep("c2", "net1"));
  CHECK(e3.address.str() == "10.2.0.4/24");

  CHECK(c.delete_endpoint("app", "c1", "eth0"));
  CHECK_FALSE(c.delete_endpoint("app", "c1", "eth0"));  // DEL repeats
  CHECK(d.dataplane.removed_links == std::vector<std::string>{e1.host_ifname});
  CHECK(d.dataplane.bridges.count(bridge) == 1);

  // Released 10.2.0.2 is not reused while the rest of the range is free.
  auto [e4, created4] = c.create_endpoint("app", ep("c4"));
  CHECK(e4.address.str() == "10.2.0.5/24");

  CHECK(code_of([&] { c.remove_network("app"); }) == Errc::conflict);
  c.delete_endpoint("app", "c2", "eth0");
  c.delete_endpoint("app", "c2", "net1");
  c.delete_endpoint("app", "c4", "eth0");
  CHECK(d.dataplane.bridges.count(bridge) == 0);  // last endpoint gone: bridge gone
  c.remove_network("app");
  CHECK(c.list_networks().empty());
  CHECK(d.dataplane.firewall.empty());
  CHECK_FALSE(c.delete_endpoint("app", "c4", "eth0"));  // network gone: still fine
}

TEST_CASE("endpoints: bad input changes nothing", "[controller]") {
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;
  c.create_network(net("app", "10.3.0.0/29"));  // 5 usable addresses, gateway .1

  CHECK(code_of([&] { c.create_endpoint("nope", ep("c1")); }) == Errc::not_found);
  CHECK(code_of([&] { c.create_endpoint("app", ep("-bad")); }) == Errc::invalid_argument);
  CHECK(code_of([&] { c.create_endpoint("app", ep("c1", "waytoolonginterface")); }) ==
        Errc::invalid_argument);
  CHECK(code_of([&] { c.create_endpoint("app", ep("c1", "a/b")); }) == Errc::invalid_argument);

  auto fixed = ep("s1");
  fixed.static_ips = {Ipv4Address::parse("10.3.0.6")};
  CHECK(c.create_endpoint("app", fixed).first.address.str() == "10.3.0.6/29");
  auto taken = ep("s2");
  taken.static_ips = {Ipv4Address::parse("10.3.0.6")};
  CHECK(code_of([&] { c.create_endpoint("app", taken); }) == Errc::conflict);
  taken.static_ips = {Ipv4Address::parse("10.3.0.1")};  // the gateway
  CHECK(code_of([&] { c.create_endpoint("app", taken); }) == Errc::invalid_argument);
  taken.static_ips = {Ipv4Address::parse("10.9.0.1")};
  CHECK(code_of([&] { c.create_endpoint("app", taken); }) == Errc::invalid_argument);

  // A kernel failure after allocation rolls the endpoint back.
  d.dataplane.fail_next_ensure = true;
  CHECK(code_of([&] { c.create_endpoint("app", ep("k1")); }) == Errc::internal);
  CHECK(c.list_endpoints("app").size() == 1);

  for (int i = 0; i < 4; ++i) c.create_endpoint("app", ep("f" + std::to_string(i)));
  CHECK(c.list_endpoints("app").size() == 5);
  CHECK(code_of([&] { c.create_endpoint("app", ep("full")); }) == Errc::exhausted);
}

// Labels and aliases had no length limit (an endpoint's
// record travels in every gossip message and journal line about it).
TEST_CASE("endpoints: names, aliases and labels have sane limits, with a clear error",
          "[controller]") {
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;
  c.create_network(net("app", "10.3.0.0/24"));
  auto message = [&](const api::EndpointCreate& req) {
    try {
      c.create_endpoint("app", req);
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string("created");
  };

  auto ok = ep("ok");
  ok.name = std::string(253, 'n');
  ok.aliases = std::vector<std::string>(32, std::string(253, 'a'));
  for (int i = 0; i < 64; ++i) ok.labels["k" + std::to_string(i)] = std::string(1024, 'v');
  CHECK(message(ok) == "created");

  auto r = ep("r1");
  r.aliases = {"web", std::string(254, 'a')};
  CHECK_THAT(message(r), Catch::Contains("alias") && Catch::Contains("254 bytes long, at most 253"));
  r = ep("r2");
  r.aliases = std::vector<std::string>(33, "x");
  CHECK_THAT(message(r), Catch::Contains("33 aliases, at most 32"));
  r = ep("r3");
  r.labels[std::string(129, 'k')] = "v";
  CHECK_THAT(message(r), Catch::Contains("label key"));
  r = ep("r4");
  r.labels["big"] = std::string(1 << 20, 'v');
  CHECK_THAT(message(r), Catch::Contains("value of label big") && Catch::Contains("at most 1024"));
  r = ep("r5");
  for (int i = 0; i < 65; ++i) r.labels["k" + std::to_string(i)] = "v";
  CHECK_THAT(message(r), Catch::Contains("65 labels, at most 64"));
  r = ep("r6");
  r.name = std::string(300, 'n');
  CHECK_THAT(message(r), Catch::Contains("name"));
  // Nothing of the refused ones was created.
  CHECK(c.list_endpoints("app").size() == 1);

  api::EndpointUpdate u;
  u.aliases = std::vector<std::string>{std::string(1000, 'a')};
  CHECK(code_of([&] { c.update_endpoint("app", "ok", "eth0", u); }) == Errc::invalid_argument);
  CHECK(c.list_endpoints("app").front().aliases.front().size() == 253);
}

TEST_CASE("endpoints: GC releases what the runtime no longer knows", "[controller]") {
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;
  c.create_network(net("app", "10.4.0.0/24"));
  for (int i = 0; i < 5; ++i) c.create_endpoint("app", cni_ep("c" + std::to_string(i)));
  api::GcRequest keep;
  keep.valid = {{"c1", "eth0"}, {"c3", "eth0"}, {"unknown", "eth0"}};
  keep.cni_config = "app-conf";
  auto result = c.gc("app", keep);
  CHECK(result.released.size() == 3);
  std::set<std::string> left;
  for (const auto& e : c.list_endpoints("app")) left.insert(e.container_id);
  CHECK(left == std::set<std::string>{"c1", "c3"});
}

TEST_CASE("endpoints: GC releases only what the CNI plugin made for that configuration", "[controller][gc]") {
  TempDir dir;
  {
    Daemon d(dir.path());
    auto& c = d.controller;
    // A /29: 5 addresses, so a released one is handed out again at once.
    c.create_network(net("app", "10.4.1.0/29"));
    api::EndpointCreate vip = ep("svc-vip-web", "vip");
    vip.attach = false;
    vip.owner = api::kOwnerServiceVip;
    vip.labels = {{"swarmnet.vip", "web"}};
    const auto vip_ip = c.create_endpoint("app", vip).first.address;
    api::EndpointCreate docker = ep("0123456789ab");
    docker.owner = api::kOwnerDocker;
    docker.netns = "";
    c.create_endpoint("app", docker);
    c.create_endpoint("app", cni_ep("other", "another-conf"));  // another configuration's
    c.create_endpoint("app", cni_ep("stale"));
    // A record written before owners were recorded: not provably the plugin's.
    {
      api::EndpointCreate legacy = cni_ep("legacy");
      c.create_endpoint("app", legacy);
      daemon::EndpointRecord r = *d.store.find_endpoint(
          daemon::endpoint_key(c.inspect_network("app").id, d.store.node_id(), "legacy", "eth0"));
      r.owner.clear();
      r.cni_config.clear();
      d.store.put(r);
    }
    CHECK(c.list_endpoints("app").size() == 5);

    api::GcRequest none;
    none.cni_config = "app-conf";
    auto result = c.gc("app", none);
    REQUIRE(result.released.size() == 1);
    CHECK(result.released.front().container_id == "stale");
    std::set<std::string> left;
    for (const auto& e : c.list_endpoints("app")) left.insert(e.container_id);
    CHECK(left == std::set<std::string>{"svc-vip-web", "0123456789ab", "other", "legacy"});
    // The only free address is the stale one's: the next ADD gets it, never the VIP's.
    auto next = c.create_endpoint("app", cni_ep("next")).first.address;
    CHECK(next != vip_ip);
    CHECK(code_of([&] { c.create_endpoint("app", cni_ep("full")); }) == Errc::exhausted);
  }
  // The owner survives a restart (it is in the journal).
  Daemon again(dir.path());
  CHECK(again.controller.get_endpoint("app", "svc-vip-web", "vip").owner == api::kOwnerServiceVip);
  CHECK(again.controller.get_endpoint("app", "next", "eth0").owner == api::kOwnerCni);
  CHECK(again.controller.get_endpoint("app", "legacy", "eth0").owner.empty());
}

TEST_CASE("state survives a restart: no address handed out twice", "[controller][store]") {
  TempDir dir;
  std::set<std::string> seen;
  std::string network_id;
  {
    Daemon d(dir.path());
    network_id = d.controller.create_network(net("app", "10.5.0.0/24")).id;
    for (int i = 0; i < 20; ++i) {
      seen.insert(d.controller.create_endpoint("app", ep("c" + std::to_string(i))).first.address.str());
    }
    d.controller.delete_endpoint("app", "c3", "eth0");
  }  // no compaction on purpose: the journal alone must carry the state
  Daemon d(dir.path());
  CHECK(d.store.node_id().size() == 32);
  CHECK(d.controller.inspect_network("app").id == network_id);
  CHECK(d.controller.list_endpoints("app").size() == 19);
  d.controller.reconcile();
  CHECK(d.dataplane.bridges.count(daemon::Controller::bridge_name(network_id)) == 1);
  // The cursor survived too: the next address continues after the last one.
  auto next = d.controller.create_endpoint("app", ep("after")).first.address.str();
  CHECK(seen.count(next) == 0);
  CHECK(next == "10.5.0.22/24");
}

TEST_CASE("endpoints: a released address waits until the whole subnet was used", "[controller]") {
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;
  // A /24 is cut into several blocks: reuse must not start at a block's end.
  auto n = c.create_network(net("rr", "10.6.0.0/24"));
  REQUIRE(n.block_length > 24);
  std::vector<std::string> order;
  for (int i = 0; i < 20; ++i) {
    auto e = c.create_endpoint("rr", ep("c" + std::to_string(i))).first;
    order.push_back(e.address.str());
    if (i == 0) c.delete_endpoint("rr", "c0", "eth0");  // 10.6.0.2 free again at once
  }
  CHECK(order[1] == "10.6.0.3/24");
  CHECK(std::find(order.begin() + 1, order.end(), "10.6.0.2/24") == order.end());
  CHECK(order.back() == "10.6.0.21/24");
  // Fill the rest of the subnet (.2 is free, .22-.254 are 233 more).
  std::set<std::string> all(order.begin() + 1, order.end());
  for (int i = 20; i < 20 + 234; ++i) {
    all.insert(c.create_endpoint("rr", ep("c" + std::to_string(i))).first.address.str());
  }
  CHECK(all.size() == 253);
  CHECK(all.count("10.6.0.2/24") == 1);  // reused last
  CHECK_THROWS_AS(c.create_endpoint("rr", ep("one-more")), Error);
}

TEST_CASE("reaper: a CNI endpoint whose namespace is gone without DEL is released after the delay",
          "[controller][reaper]") {
  using namespace std::chrono_literals;
  TempDir dir;
  Daemon d(dir.path());
  auto& c = d.controller;
  c.create_network(net("app", "10.4.2.0/24"));
  std::set<std::string> present;  // the namespaces that exist
  boost::asio::io_context io;
  daemon::EndpointReaper reaper(io, d.store, c, 60s,
                                [&](const std::string& path) { return present.count(path) > 0; });
  const auto gone = c.create_endpoint("app", cni_ep("gone")).first;  // its netns is deleted
  c.create_endpoint("app", cni_ep("kept"));                                  // the control: still there
  present.insert("/var/run/netns/kept");
  c.create_endpoint("app", cni_ep("flaky"));  // gone for a while, then back
  api::EndpointCreate docker = ep("0123456789ab");
  docker.owner = api::kOwnerDocker;
  c.create_endpoint("app", docker);  // missing path, but Docker's: not the reaper's business
  api::EndpointCreate vip = ep("svc-vip-web", "vip");
  vip.owner = api::kOwnerServiceVip;
  vip.netns = "";
  vip.attach = false;
  c.create_endpoint("app", vip);
  auto names = [&] {
    std::set<std::string> s;
    for (const auto& e : c.list_endpoints("app")) s.insert(e.container_id);
    return s;
  };
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(reaper.sweep(t0) == 0);  // first seen missing
  CHECK(reaper.sweep(t0 + 30s) == 0);
  present.insert("/var/run/netns/flaky");
  CHECK(reaper.sweep(t0 + 40s) == 0);
  present.erase("/var/run/netns/flaky");
  CHECK(reaper.sweep(t0 + 59s) == 0);
  CHECK(reaper.sweep(t0 + 60s) == 1);
  CHECK(names() == std::set<std::string>{"kept", "flaky", "0123456789ab", "svc-vip-web"});
  // Released as a DEL would: its host link removed, its address no longer in use.
  CHECK(std::count(d.dataplane.removed_links.begin(), d.dataplane.removed_links.end(), gone.host_ifname) == 1);
  for (const auto& e : c.list_endpoints("app")) CHECK(e.address != gone.address);
  CHECK(reaper.sweep(t0 + 118s) == 0);
  CHECK(reaper.sweep(t0 + 119s) == 1);  // flaky: 60 s since it went again (t0 + 59 s)
  CHECK(names() == std::set<std::string>{"kept", "0123456789ab", "svc-vip-web"});
  CHECK(reaper.sweep(t0 + 1000s) == 0);  // the control stays, however long
}
