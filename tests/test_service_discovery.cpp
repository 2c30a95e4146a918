// ServiceDiscovery feeding the DNS name table from the store's feed: what a
// container would be answered as tasks come, fail their health check, die
// with their node and as services go. The DNS server itself answers real
// queries in test_dns_server and integration/test_*dns*.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "daemon/controller.hpp"
#include "daemon/service_discovery.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/tasks.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
namespace json = boost::json;

namespace {

// POST /v1/services with this body, decoded as the API decodes it; the
// reply as the API encodes it.
json::value create_service_json(daemon::Services& services, const std::string& body) {
  return json::value_from(services.create(json::value_to<api::ServiceCreate>(json::parse(body))));
}

using swarmnet::testing::kOtherNode;

struct Fixture {
  testing::TempDir dir;
  testing::FakeDataplane dataplane;
  daemon::Store store{dir.path()};
  daemon::Controller controller{store, dataplane, "host1"};
  daemon::Services services{store, controller};
  dns::NameTable names{2};
  // Never started: its listeners on the gateways fail to bind here (logged),
  // which changes nothing of the names.
  dns::Server server{names, dns::ServerOptions{.port = 0}};
  std::set<std::string> dead;
  daemon::ServiceDiscovery discovery{store, [this](const std::string& n) { return !dead.count(n); }, names, server};
  std::string network_id;

  Fixture() {
    api::NetworkCreate front;
    front.name = "front";
    front.subnet = Ipv4Prefix::parse("10.1.0.0/24");
    network_id = controller.create_network(front).id;
  }
  std::string local_task(const std::string& container, const std::string& service) {
    return testing::add_local_task(controller, "front", container, service);
  }
  daemon::EndpointRecord remote_task(const std::string& container, const std::string& ip, const std::string& service) {
    return testing::put_remote_task(store, network_id, container, ip, service);
  }
  void node_changed(const std::string& status) { testing::publish_other_node(store, status); }
  // The addresses `name.front` resolves to.
  std::set<std::string> resolve(const std::string& name) const {
    std::set<std::string> out;
    const std::string prefix = name + ".front A ";
    for (const auto& line : names.dump()) {
      if (line.starts_with(prefix)) out.insert(line.substr(prefix.size()));
    }
    return out;
  }
};

using Ips = std::set<std::string>;

}  // namespace

TEST_CASE("dns: a task turning unhealthy leaves tasks.SERVICE, and comes back when healthy", "[dns][discovery]") {
  Fixture f;
  create_service_json(f.services, R"({"name":"web","networks":["front"]})");
  const std::string w1 = f.local_task("w1", "web");
  auto w2 = f.remote_task("w2", "10.1.0.200", "web");
  CHECK(f.resolve("tasks.web") == Ips{w1, "10.1.0.200"});
  w2.healthy = false;
  f.store.put(w2);
  CHECK(f.resolve("tasks.web") == Ips{w1});
  CHECK(f.resolve("w2") == Ips{"10.1.0.200"});  // its container name still resolves, as in Docker
  w2.healthy = true;
  f.store.put(w2);
  CHECK(f.resolve("tasks.web") == Ips{w1, "10.1.0.200"});
}

TEST_CASE("dns: a dead node's containers stop resolving, and resolve again when it is back", "[dns][discovery]") {
  Fixture f;
  create_service_json(f.services, R"({"name":"web","networks":["front"],"endpoint_mode":"dnsrr"})");
  const std::string w1 = f.local_task("w1", "web");
  f.remote_task("w2", "10.1.0.200", "web");
  REQUIRE(f.resolve("web") == Ips{w1, "10.1.0.200"});  // dnsrr: the name is its tasks
  f.dead.insert(kOtherNode);
  f.node_changed("dead");
  CHECK(f.resolve("web") == Ips{w1});
  CHECK(f.resolve("w2").empty());
  f.dead.clear();
  f.node_changed("alive");
  CHECK(f.resolve("web") == Ips{w1, "10.1.0.200"});
  CHECK(f.resolve("w2") == Ips{"10.1.0.200"});
}

TEST_CASE("dns: a removed service's name stops resolving; its containers keep theirs", "[dns][discovery]") {
  Fixture f;
  const json::value web = create_service_json(f.services, R"({"name":"web","networks":["front"]})");
  const std::string vip = json::value_to<std::string>(web.at("vips").at("front"));
  const std::string w1 = f.local_task("w1", "web");
  REQUIRE(f.resolve("web") == Ips{vip});  // control
  f.services.remove("web");
  CHECK(f.resolve("web").empty());
  CHECK(f.resolve("w1") == Ips{w1});
}

TEST_CASE("dns: an address-only endpoint of a service is not among its tasks", "[dns][discovery]") {
  Fixture f;
  create_service_json(f.services, R"({"name":"web","networks":["front"]})");
  const std::string w1 = f.local_task("w1", "web");
  auto reserved = f.remote_task("r1", "10.1.0.201", "web");
  reserved.attach = false;
  f.store.put(reserved);
  CHECK(f.resolve("tasks.web") == Ips{w1});
  reserved.attach = true;  // control
  f.store.put(reserved);
  CHECK(f.resolve("tasks.web") == Ips{w1, "10.1.0.201"});
}
