// LoadBalancing against a fake balancer: what a user would see in the
// kernel's VIP programs as tasks come, fail their health check, die with
// their node, move, and as services go. The kernel balancers themselves are
// tested for real in integration/test_lb_*.
#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <set>

#include "daemon/controller.hpp"
#include "daemon/load_balancing.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "support/fake_balancer.hpp"
#include "support/fake_dataplane.hpp"
#include "support/tasks.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
namespace json = boost::json;

namespace {

using swarmnet::testing::FakeBalancer;

// POST /v1/services with this body, decoded as the API decodes it; the
// reply as the API encodes it.
json::value create_service_json(daemon::Services& services, const std::string& body) {
  return json::value_from(services.create(json::value_to<api::ServiceCreate>(json::parse(body))));
}

using swarmnet::testing::FakeMembership;
using swarmnet::testing::kOtherNode;

struct Fixture {
  testing::TempDir dir;
  testing::FakeDataplane dataplane;
  daemon::Store store{dir.path()};
  daemon::Controller controller{store, dataplane, "host1"};
  daemon::Services services{store, controller};
  FakeBalancer balancer;
  FakeMembership membership;
  std::set<std::string>& dead = membership.dead;
  // This node's own address per bridge, as the kernel would hold it.
  std::map<std::string, std::string> node_addresses;
  daemon::LoadBalancing lb{store, controller, balancer,
                           [this](const std::string& bridge, const std::optional<daemon::LoadBalancing::NodeAddress>& a) {
                             if (a) {
                               node_addresses[bridge] = a->ip.str();
                             } else {
                               node_addresses.erase(bridge);
                             }
                           }};
  std::string network_id;

  Fixture() {
    controller.set_membership(&membership, nullptr, Ipv4Address::parse("192.168.0.1"));
    api::NetworkCreate front;
    front.name = "front";
    front.subnet = Ipv4Prefix::parse("10.1.0.0/24");
    network_id = controller.create_network(front).id;
  }
  std::string create_service(const std::string& name) {
    return json::value_to<std::string>(
        create_service_json(services, R"({"name":")" + name + R"(","networks":["front"]})").at("vips").at("front"));
  }
  std::string local_task(const std::string& container, const std::string& service) {
    return testing::add_local_task(controller, "front", container, service);
  }
  daemon::EndpointRecord remote_task(const std::string& container, const std::string& ip, const std::string& service) {
    return testing::put_remote_task(store, network_id, container, ip, service);
  }
  void node_changed(const std::string& status) { testing::publish_other_node(store, status); }
};

using Backends = std::optional<std::set<std::string>>;

}  // namespace

TEST_CASE("lb: a task turning unhealthy leaves the VIP's backends, and comes back when healthy", "[lb]") {
  Fixture f;
  const std::string vip = f.create_service("web");
  const std::string w1 = f.local_task("w1", "web");
  auto w2 = f.remote_task("w2", "10.1.0.200", "web");
  CHECK(f.balancer.backends_of(vip) == Backends({{w1, "10.1.0.200"}}));

  w2.healthy = false;  // its node's health check says so, by gossip
  f.store.put(w2);
  CHECK(f.balancer.backends_of(vip) == Backends({{w1}}));

  w2.healthy = true;
  f.store.put(w2);
  CHECK(f.balancer.backends_of(vip) == Backends({{w1, "10.1.0.200"}}));
}

TEST_CASE("lb: the tasks of a dead node leave the VIP, and come back with it", "[lb]") {
  Fixture f;
  const std::string vip = f.create_service("web");
  const std::string w1 = f.local_task("w1", "web");
  f.remote_task("w2", "10.1.0.200", "web");
  REQUIRE(f.balancer.backends_of(vip) == Backends({{w1, "10.1.0.200"}}));

  f.dead.insert(kOtherNode);
  f.node_changed("dead");
  CHECK(f.balancer.backends_of(vip) == Backends({{w1}}));

  f.dead.clear();
  f.node_changed("alive");
  CHECK(f.balancer.backends_of(vip) == Backends({{w1, "10.1.0.200"}}));
}

TEST_CASE("lb: a removed service frees its VIP program; others stay", "[lb]") {
  Fixture f;
  const std::string web = f.create_service("web");
  const std::string api = f.create_service("api");
  f.local_task("w1", "web");
  f.local_task("a1", "api");
  REQUIRE(f.balancer.backends_of(web));  // control: programmed before
  f.services.remove("web");
  CHECK_FALSE(f.balancer.backends_of(web));
  CHECK(f.balancer.backends_of(api));
  CHECK(f.lb.programmed().size() == 1);
}

TEST_CASE("lb: a VIP is programmed only while this host has a container on the network", "[lb]") {
  Fixture f;
  const std::string vip = f.create_service("web");
  f.remote_task("w2", "10.1.0.200", "web");
  CHECK_FALSE(f.balancer.backends_of(vip));  // no bridge here to hold the VIP
  f.local_task("c1", "");                    // a plain container arrives: the bridge is here
  CHECK(f.balancer.backends_of(vip) == Backends({{"10.1.0.200"}}));
  f.controller.delete_endpoint("front", "c1", "eth0");
  CHECK_FALSE(f.balancer.backends_of(vip));
}

TEST_CASE("lb: a task moving to another service leaves the old VIP for the new one", "[lb]") {
  Fixture f;
  const std::string web = f.create_service("web");
  const std::string api = f.create_service("api");
  f.local_task("c1", "");
  auto w2 = f.remote_task("w2", "10.1.0.200", "web");
  REQUIRE(f.balancer.backends_of(web) == Backends({{"10.1.0.200"}}));
  REQUIRE(f.balancer.backends_of(api) == Backends(std::set<std::string>{}));
  w2.service = "api";
  f.store.put(w2);
  CHECK(f.balancer.backends_of(web) == Backends(std::set<std::string>{}));
  CHECK(f.balancer.backends_of(api) == Backends({{"10.1.0.200"}}));
}

TEST_CASE("lb: an address-only endpoint of a service is no backend (no container answers there)", "[lb]") {
  Fixture f;
  const std::string vip = f.create_service("web");
  const std::string w1 = f.local_task("w1", "web");
  auto reserved = f.remote_task("r1", "10.1.0.201", "web");
  reserved.attach = false;  // an IPAM-only reservation (swarmnet-ipam, Docker's RequestAddress)
  f.store.put(reserved);
  CHECK(f.balancer.backends_of(vip) == Backends({{w1}}));
  reserved.attach = true;  // control: the same endpoint with a container is one
  f.store.put(reserved);
  CHECK(f.balancer.backends_of(vip) == Backends({{w1, "10.1.0.201"}}));
}

TEST_CASE("lb: a change of one service reprograms only that service's VIP", "[lb]") {
  Fixture f;
  f.create_service("web");
  f.create_service("api");
  f.local_task("w1", "web");
  f.local_task("a1", "api");
  const size_t before = f.balancer.upserts;
  f.remote_task("w2", "10.1.0.200", "web");
  CHECK(f.balancer.upserts == before + 1);
}

// Found by integration/test_chaos: a service removed and made again under
// its name on another node; gossip brought the new one before the old one's
// removal, then a task. Each of the two was a service named "api"; the task
// went only to the one with the smallest id, which then went away.
TEST_CASE("lb: a task reaches every service of its name (a re-created one arriving before the old one goes)",
          "[lb]") {
  Fixture f;
  f.local_task("c1", "");  // the network's bridge is on this host
  auto service = [&](const std::string& id, const std::string& vip) {
    daemon::ServiceRecord s;
    s.id = id;
    s.name = "api";
    s.networks = {f.network_id};
    s.vips[f.network_id] = Ipv4Address::parse(vip);
    s.created_by = kOtherNode;
    return s;
  };
  const auto old_api = service("00000000000000000000000000000001", "10.1.0.240");
  const auto new_api = service("ffffffffffffffffffffffffffffffff", "10.1.0.241");
  f.store.put(old_api);
  f.store.put(new_api);
  f.remote_task("a1", "10.1.0.200", "api");
  CHECK(f.balancer.backends_of("10.1.0.240") == Backends({{"10.1.0.200"}}));
  CHECK(f.balancer.backends_of("10.1.0.241") == Backends({{"10.1.0.200"}}));
  f.store.erase_service(old_api.id);
  CHECK_FALSE(f.balancer.backends_of("10.1.0.240"));
  CHECK(f.balancer.backends_of("10.1.0.241") == Backends({{"10.1.0.200"}}));
}

TEST_CASE("services: inspect counts as healthy the tasks that serve, not those of a dead node", "[lb][services]") {
  Fixture f;
  f.create_service("web");
  f.local_task("w1", "web");
  f.remote_task("w2", "10.1.0.200", "web");
  CHECK(f.services.inspect("web").healthy_count == 2);  // control
  f.dead.insert(kOtherNode);
  f.node_changed("dead");
  const api::Service view = f.services.inspect("web");
  CHECK(view.task_count == 2);
  CHECK(view.healthy_count == 1);
}

TEST_CASE("lb: this node's own address on a network comes with a container here and one elsewhere", "[lb]") {
  Fixture f;
  const std::string bridge = daemon::bridge_name(f.network_id);
  f.local_task("c1", "");
  CHECK(f.node_addresses.empty());  // a network of one node needs none
  f.remote_task("w2", "10.1.0.200", "");
  REQUIRE(f.node_addresses.count(bridge));
  const std::string key = daemon::endpoint_key(f.network_id, f.store.node_id(), daemon::kNodeContainerId,
                                               daemon::kNodeIfname);
  REQUIRE(f.store.find_endpoint(key));
  CHECK(f.node_addresses.at(bridge) == f.store.find_endpoint(key)->ip.str());
  f.controller.delete_endpoint("front", "c1", "eth0");  // the network leaves this node
  CHECK(f.node_addresses.empty());
  CHECK_FALSE(f.store.find_endpoint(key));
}
