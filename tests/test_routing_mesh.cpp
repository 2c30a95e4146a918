// RoutingMesh against a fake of its kernel side (daemon/ingress/mesh_kernel.hpp):
// what a user of the mesh would find programmed on this node as services
// publish ports, tasks come and go on this node and others, nodes' sandboxes
// join and nodes die. The sandbox and the host's rules are tested for real
// in integration/test_cluster_ingress.sh and test_mesh_*.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "daemon/controller.hpp"
#include "daemon/ingress/mesh_kernel.hpp"
#include "daemon/ingress/routing_mesh.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "support/fake_balancer.hpp"
#include "support/fake_dataplane.hpp"
#include "support/tasks.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
namespace json = boost::json;
using swarmnet::testing::FakeBalancer;

namespace {

using swarmnet::testing::FakeMembership;
using swarmnet::testing::kOtherNode;

class FakeMeshKernel : public daemon::MeshKernel {
 public:
  void build_sandbox(const daemon::IngressSandboxConfig& c) override { config = c; }
  bool has_sandbox() const override { return config.has_value(); }
  void sync_peers(const std::map<Ipv4Address, std::string>& sandboxes, const std::vector<Ipv4Address>&) override {
    peers = sandboxes;
  }
  void set_route(Ipv4Address task, std::optional<Ipv4Address> via) override {
    routes[task.str()] = via ? via->str() : "this node";
  }
  void remove_route(Ipv4Address task) override { routes.erase(task.str()); }
  lb::Balancer& balancer() override { return sandbox_balancer; }
  void set_hairpin(const std::set<Ipv4Address>& tasks) override {
    hairpin.clear();
    for (Ipv4Address t : tasks) hairpin.insert(t.str());
  }
  void publish(const std::string& id, Ipv4Address vip, const std::vector<kernel::PublishedPort>& ports,
               const kernel::Spread& spread) override {
    std::string text = vip.str();
    for (const auto& p : ports) text += " " + p.protocol + "/" + std::to_string(p.host_port) + "->" + std::to_string(p.container_port);
    // The shortcut: "straight T1 T2, VIP xN" (N of the hash's slots to the VIP).
    if (!spread.direct.empty()) {
      text += " straight";
      for (Ipv4Address t : spread.direct) text += " " + t.str();
      text += ", VIP x" + std::to_string(spread.shared);
    }
    published[id] = text;
    ++publishes;
  }
  void unpublish(const std::string& id) override { published.erase(id); }
  std::set<std::string> published_ids() override {
    std::set<std::string> ids;
    for (const auto& [id, text] : published) ids.insert(id);
    return ids;
  }
  void forget_udp_flows(uint16_t port, const std::vector<Ipv4Address>& tasks) override {
    for (Ipv4Address t : tasks) forgotten.push_back("udp/" + std::to_string(port) + " " + t.str());
  }

  std::optional<daemon::IngressSandboxConfig> config;
  std::map<Ipv4Address, std::string> peers;
  std::map<std::string, std::string> routes;     // task -> its node's sandbox, or "this node"
  std::map<std::string, std::string> published;  // service id -> "VIP tcp/8080->80 ..."
  std::set<std::string> hairpin;                 // the host's hairpin set
  std::vector<std::string> forgotten;            // "udp/5353 TASK": the host's UDP flows to it, deleted
  size_t publishes = 0;
  FakeBalancer sandbox_balancer;
};

struct Fixture {
  testing::TempDir dir;
  testing::FakeDataplane dataplane;
  daemon::Store store{dir.path()};
  daemon::Controller controller{store, dataplane, "host1"};
  daemon::Services services{store, controller};
  FakeMembership membership;
  FakeMeshKernel kernel;
  std::optional<daemon::RoutingMesh> mesh;
  std::string ingress_id, front_id;

  Fixture() {
    controller.set_membership(&membership, nullptr, Ipv4Address::parse("192.168.0.1"));
    api::NetworkCreate ingress;
    ingress.name = "ingress";
    ingress.subnet = Ipv4Prefix::parse("10.255.0.0/16");
    ingress.ingress = true;
    ingress_id = controller.create_network(ingress).id;
    api::NetworkCreate front;
    front.name = "front";
    front.subnet = Ipv4Prefix::parse("10.1.0.0/24");
    front_id = controller.create_network(front).id;
  }
  void start(bool keep_client_address = true) {
    mesh.emplace(store, controller, kernel, Ipv4Prefix::parse("172.29.0.0/24"), "nftables", keep_client_address);
    mesh->start();
  }
  // A service on "front" publishing `published`->80 in ingress mode: its id
  // and its VIP on the ingress network.
  std::pair<std::string, std::string> create_service(const std::string& name, int published) {
    const auto body = R"({"name":")" + name + R"(","networks":["front"],"ports":[{"target":80,"published":)" +
                      std::to_string(published) + "}]}";
    services.create(json::value_to<api::ServiceCreate>(json::parse(body)));
    const daemon::ServiceRecord* s = store.find_service_by_name(name);
    REQUIRE(s);
    REQUIRE(s->ingress_vip);
    return {s->id, s->ingress_vip->str()};
  }
  std::string local_task(const std::string& container, const std::string& service) {
    return testing::add_local_task(controller, "front", container, service);
  }
  daemon::EndpointRecord remote_task(const std::string& container, const std::string& ip, const std::string& service,
                                     const std::string& node = kOtherNode) {
    return testing::put_remote_task(store, front_id, container, ip, service, node);
  }
  // A node's sandbox (the other node's unless said) joins the ingress network, as gossip brings it.
  void remote_sandbox(const std::string& ip, const std::string& node = kOtherNode) {
    daemon::EndpointRecord r;
    r.id = "ep-sandbox";
    r.network_id = ingress_id;
    r.node = node;
    r.container_id = daemon::kSandboxContainerId;
    r.ifname = daemon::kSandboxIngressLink;
    r.owner = api::kOwnerSandbox;
    r.ip = Ipv4Address::parse(ip);
    store.put(r);
  }
  void node_changed(const std::string& status) { testing::publish_other_node(store, status); }
  std::optional<std::set<std::string>> backends(const std::string& vip) const {
    return kernel.sandbox_balancer.backends_of(vip);
  }
};

using Backends = std::optional<std::set<std::string>>;
using Routes = std::map<std::string, std::string>;

}  // namespace

TEST_CASE("mesh: a published port answers on this node and balances over the tasks of every node with a sandbox",
          "[mesh]") {
  Fixture f;
  f.start(false);  // masquerading, swarm's way: everything through the sandbox (the shortcut: below)
  REQUIRE(f.kernel.has_sandbox());  // this node joined the ingress network
  const auto [id, vip] = f.create_service("web", 8080);
  CHECK(f.kernel.published == std::map<std::string, std::string>{{id, vip + " tcp/8080->80"}});
  const std::string w1 = f.local_task("w1", "web");
  f.remote_sandbox("10.255.0.200");
  f.remote_task("w2", "10.1.0.200", "web");
  CHECK(f.backends(vip) == Backends({{w1, "10.1.0.200"}}));
  // A local task back over gw0, a remote one through its node's sandbox,
  // whose replies find their way back by its MAC.
  CHECK(f.kernel.routes == Routes{{w1, "this node"}, {"10.1.0.200", "10.255.0.200"}});
  CHECK(f.kernel.peers == std::map<Ipv4Address, std::string>{{Ipv4Address::parse("10.255.0.200"), "02:42:0a:ff:00:c8"}});
  // Masquerading, the host's DNAT stays one DNAT to the VIP, local task or not.
  CHECK(f.kernel.published == std::map<std::string, std::string>{{id, vip + " tcp/8080->80"}});
  CHECK(f.kernel.hairpin.empty());
}

TEST_CASE("mesh: the shortcut: this node's tasks straight from the host, the VIP over the other nodes' tasks only",
          "[mesh][shortcut]") {
  Fixture f;
  f.start();  // keeping the client's address, the default
  const auto [id, vip] = f.create_service("web", 8080);
  f.remote_sandbox("10.255.0.200");
  f.remote_task("w2", "10.1.0.200", "web");
  f.remote_task("w3", "10.1.0.201", "web");
  // No task here: unchanged, one DNAT to the VIP, which takes every task.
  CHECK(f.kernel.published == std::map<std::string, std::string>{{id, vip + " tcp/8080->80"}});
  CHECK(f.backends(vip) == Backends({{"10.1.0.200", "10.1.0.201"}}));
  CHECK(f.kernel.hairpin.empty());

  // 1 task of 3 here: a third of the hash's slots straight to it, two
  // thirds to the VIP, which picks among the 2 others only.
  const std::string w1 = f.local_task("w1", "web");
  CHECK(f.kernel.published == std::map<std::string, std::string>{{id, vip + " tcp/8080->80 straight " + w1 + ", VIP x2"}});
  CHECK(f.backends(vip) == Backends({{"10.1.0.200", "10.1.0.201"}}));
  CHECK(f.kernel.hairpin == std::set<std::string>{w1});  // w1 calling its own port may get itself
  CHECK(f.mesh->balanced_tasks() == 3);                   // (the metric counts both ways to a task)
  // The sandbox still routes to w1 (other nodes' sandboxes send it their share).
  CHECK(f.kernel.routes == Routes{{w1, "this node"}, {"10.1.0.200", "10.255.0.200"}, {"10.1.0.201", "10.255.0.200"}});

  // Every task here: all straight, nothing left for the VIP.
  f.store.erase_endpoint(daemon::endpoint_key(f.front_id, kOtherNode, "w2", "eth0"));
  f.store.erase_endpoint(daemon::endpoint_key(f.front_id, kOtherNode, "w3", "eth0"));
  const std::string w4 = f.local_task("w4", "web");
  const Ipv4Address a = Ipv4Address::parse(w1), b = Ipv4Address::parse(w4);
  const Ipv4Address lo = std::min(a, b), hi = std::max(a, b);
  CHECK(f.kernel.published ==
        std::map<std::string, std::string>{{id, vip + " tcp/8080->80 straight " + lo.str() + " " + hi.str() + ", VIP x0"}});
  CHECK(f.backends(vip) == Backends(std::set<std::string>{}));
  CHECK(f.kernel.hairpin == std::set<std::string>{w1, w4});
}

TEST_CASE("mesh: the shortcut follows this node's tasks: health, a dead node, removal, the service's end",
          "[mesh][shortcut]") {
  Fixture f;
  f.start();
  const auto [id, vip] = f.create_service("web", 8080);
  f.remote_sandbox("10.255.0.200");
  f.remote_task("w2", "10.1.0.200", "web");
  const std::string w1 = f.local_task("w1", "web");
  REQUIRE(f.kernel.published.at(id) == vip + " tcp/8080->80 straight " + w1 + ", VIP x1");
  REQUIRE(f.backends(vip) == Backends({{"10.1.0.200"}}));

  // w1's health check fails: everything to the VIP, which takes w2 alone.
  const std::string key = daemon::endpoint_key(f.front_id, f.store.node_id(), "w1", "eth0");
  daemon::EndpointRecord r = *f.store.find_endpoint(key);
  r.healthy = false;
  f.store.put(r);
  CHECK(f.kernel.published.at(id) == vip + " tcp/8080->80");
  CHECK(f.backends(vip) == Backends({{"10.1.0.200"}}));
  CHECK(f.kernel.hairpin.empty());
  r.healthy = true;
  f.store.put(r);
  CHECK(f.kernel.published.at(id) == vip + " tcp/8080->80 straight " + w1 + ", VIP x1");
  CHECK(f.kernel.hairpin == std::set<std::string>{w1});

  // The other node dies: its share goes with it.
  f.membership.dead.insert(kOtherNode);
  f.node_changed("dead");
  CHECK(f.kernel.published.at(id) == vip + " tcp/8080->80 straight " + w1 + ", VIP x0");
  CHECK(f.backends(vip) == Backends(std::set<std::string>{}));
  f.membership.dead.clear();
  f.node_changed("alive");
  CHECK(f.kernel.published.at(id) == vip + " tcp/8080->80 straight " + w1 + ", VIP x1");

  // A change elsewhere reaches the kernel only where it differs.
  const size_t publishes = f.kernel.publishes;
  f.remote_task("w3", "10.1.0.201", "web");
  CHECK(f.kernel.published.at(id) == vip + " tcp/8080->80 straight " + w1 + ", VIP x2");
  CHECK(f.backends(vip) == Backends({{"10.1.0.200", "10.1.0.201"}}));
  CHECK(f.kernel.publishes == publishes + 1);

  // w1 goes: back to one DNAT to the VIP over every task.
  f.store.erase_endpoint(key);
  CHECK(f.kernel.published.at(id) == vip + " tcp/8080->80");
  CHECK(f.backends(vip) == Backends({{"10.1.0.200", "10.1.0.201"}}));
  CHECK(f.kernel.hairpin.empty());

  // The service's end takes its hairpin element too.
  f.local_task("w5", "web");
  REQUIRE(f.kernel.hairpin.size() == 1);
  f.services.remove("web");
  CHECK_FALSE(f.kernel.published.count(id));
  CHECK(f.kernel.hairpin.empty());
}

TEST_CASE("mesh: a task the host no longer DNATs to straight loses the host's UDP flows to it, not its TCP ones",
          "[mesh][shortcut]") {
  Fixture f;
  f.start();
  f.services.create(json::value_to<api::ServiceCreate>(json::parse(
      R"({"name":"dns","networks":["front"],"ports":[{"target":80,"published":8080},)"
      R"({"target":53,"published":5353,"protocol":"udp"}]})")));
  const std::string id = f.store.find_service_by_name("dns")->id;
  f.remote_sandbox("10.255.0.200");
  f.remote_task("w2", "10.1.0.200", "dns");
  const std::string w1 = f.local_task("w1", "dns");
  const std::string w3 = f.local_task("w3", "dns");
  REQUIRE(f.kernel.published.at(id).ends_with("straight " + w1 + " " + w3 + ", VIP x1"));
  CHECK(f.kernel.forgotten.empty());  // a task that comes takes nothing from the others

  // w1's health check fails: the port's flows to w1 go, w3's stay.
  const std::string key = daemon::endpoint_key(f.front_id, f.store.node_id(), "w1", "eth0");
  daemon::EndpointRecord r = *f.store.find_endpoint(key);
  r.healthy = false;
  f.store.put(r);
  CHECK(f.kernel.forgotten == std::vector<std::string>{"udp/5353 " + w1});
  r.healthy = true;
  f.store.put(r);
  CHECK(f.kernel.forgotten.size() == 1);

  // A change that keeps the local tasks forgets nothing (the VIP's share changes).
  f.remote_task("w4", "10.1.0.201", "dns");
  CHECK(f.kernel.forgotten.size() == 1);

  // The service's end: every task the host sent to straight.
  f.kernel.forgotten.clear();
  f.services.remove("dns");
  CHECK_FALSE(f.kernel.published.count(id));
  std::sort(f.kernel.forgotten.begin(), f.kernel.forgotten.end());
  std::vector<std::string> both{"udp/5353 " + w1, "udp/5353 " + w3};
  std::sort(both.begin(), both.end());
  CHECK(f.kernel.forgotten == both);
}

TEST_CASE("mesh: masquerading (--ingress-client-address masquerade), no shortcut: the VIP takes every task",
          "[mesh][shortcut]") {
  Fixture f;
  f.start(false);
  const auto [id, vip] = f.create_service("web", 8080);
  f.remote_sandbox("10.255.0.200");
  f.remote_task("w2", "10.1.0.200", "web");
  const std::string w1 = f.local_task("w1", "web");
  const std::string w4 = f.local_task("w4", "web");
  CHECK(f.kernel.published.at(id) == vip + " tcp/8080->80");
  CHECK(f.backends(vip) == Backends({{w1, w4, "10.1.0.200"}}));
  CHECK(f.kernel.hairpin.empty());
}

TEST_CASE("mesh: a node's tasks get requests only once its sandbox has joined", "[mesh]") {
  Fixture f;
  f.start();
  const auto [id, vip] = f.create_service("web", 8080);
  f.remote_task("w2", "10.1.0.200", "web");
  CHECK(f.backends(vip) == Backends(std::set<std::string>{}));  // nowhere to send them yet
  CHECK(f.kernel.routes.empty());
  f.remote_sandbox("10.255.0.200");
  CHECK(f.backends(vip) == Backends({{"10.1.0.200"}}));
  CHECK(f.kernel.routes == Routes{{"10.1.0.200", "10.255.0.200"}});
}

TEST_CASE("mesh: a dead node's tasks leave the VIP with their routes, and come back with the node", "[mesh]") {
  Fixture f;
  f.start(false);  // the VIP takes this node's task too (the shortcut's case: below)
  const auto [id, vip] = f.create_service("web", 8080);
  const std::string w1 = f.local_task("w1", "web");
  f.remote_sandbox("10.255.0.200");
  f.remote_task("w2", "10.1.0.200", "web");
  REQUIRE(f.backends(vip) == Backends({{w1, "10.1.0.200"}}));

  f.membership.dead.insert(kOtherNode);
  f.node_changed("dead");
  CHECK(f.backends(vip) == Backends({{w1}}));
  CHECK(f.kernel.routes == Routes{{w1, "this node"}});

  f.membership.dead.clear();
  f.node_changed("alive");
  CHECK(f.backends(vip) == Backends({{w1, "10.1.0.200"}}));
  CHECK(f.kernel.routes.count("10.1.0.200"));
}

TEST_CASE("mesh: a task's change recomputes only its own service", "[mesh]") {
  Fixture f;
  f.start();
  const auto [web, web_vip] = f.create_service("web", 8080);
  const auto [api, api_vip] = f.create_service("api", 8081);
  f.remote_sandbox("10.255.0.200");
  // api's task is on a third node (whose sandbox has joined too).
  constexpr const char* kThirdNode = "fedcba9876543210fedcba9876543210";
  f.remote_sandbox("10.255.0.201", kThirdNode);
  f.remote_task("a1", "10.1.0.201", "api", kThirdNode);
  REQUIRE(f.backends(api_vip) == Backends({{"10.1.0.201"}}));
  const size_t upserts = f.kernel.sandbox_balancer.upserts, publishes = f.kernel.publishes;
  const int asked_about_api_task = f.membership.asked[kThirdNode];
  f.remote_task("w2", "10.1.0.200", "web");
  CHECK(f.backends(web_vip) == Backends({{"10.1.0.200"}}));
  CHECK(f.kernel.sandbox_balancer.upserts == upserts + 1);  // web's VIP, not api's
  CHECK(f.kernel.publishes == publishes);                   // the ports did not change
  // api's tasks were not weighed again: nothing asked about their node.
  CHECK(f.membership.asked[kThirdNode] == asked_about_api_task);
}

TEST_CASE("mesh: a task moving to another service leaves the old VIP, and a removed one frees its route", "[mesh]") {
  Fixture f;
  f.start();
  const auto [web, web_vip] = f.create_service("web", 8080);
  const auto [api, api_vip] = f.create_service("api", 8081);
  f.remote_sandbox("10.255.0.200");
  auto w2 = f.remote_task("w2", "10.1.0.200", "web");
  REQUIRE(f.backends(web_vip) == Backends({{"10.1.0.200"}}));
  w2.service = "api";
  f.store.put(w2);
  CHECK(f.backends(web_vip) == Backends(std::set<std::string>{}));
  CHECK(f.backends(api_vip) == Backends({{"10.1.0.200"}}));
  CHECK(f.kernel.routes == Routes{{"10.1.0.200", "10.255.0.200"}});
  f.store.erase_endpoint(daemon::endpoint_key(f.front_id, kOtherNode, "w2", "eth0"));
  CHECK(f.backends(api_vip) == Backends(std::set<std::string>{}));
  CHECK(f.kernel.routes.empty());
}

TEST_CASE("mesh: a removed service closes its ports and frees its VIP", "[mesh]") {
  Fixture f;
  f.start();
  const auto [web, web_vip] = f.create_service("web", 8080);
  const auto [api, api_vip] = f.create_service("api", 8081);
  f.local_task("w1", "web");
  REQUIRE(f.kernel.published.count(web));  // control: open before
  f.services.remove("web");
  CHECK_FALSE(f.kernel.published.count(web));
  CHECK_FALSE(f.backends(web_vip));
  CHECK(f.kernel.routes.empty());
  CHECK(f.kernel.published.count(api));
}

TEST_CASE("mesh: ports an earlier run published for a service gone since are closed at start", "[mesh]") {
  Fixture f;
  f.kernel.published["0123456789abcdef-gone"] = "10.255.0.9 tcp/8080->80";
  const auto [web, web_vip] = f.create_service("web", 8081);
  f.start();
  CHECK(f.kernel.published == std::map<std::string, std::string>{{web, web_vip + " tcp/8081->80"}});
}
