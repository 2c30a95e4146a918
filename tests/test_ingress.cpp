// The ingress component (daemon/ingress/ingress.hpp) against a fake kernel:
// who may hold an address on the ingress network, how `cluster init` makes
// it, what the mesh keeps on the host while it exists; and that the rest of
// the daemon asks this component rather than knowing the ingress network
// itself. (Port numbers and the ingress VIP through the services API:
// test_services_publish.cpp.)
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.hpp"
#include "daemon/controller.hpp"
#include "daemon/ingress/ingress.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {

struct Node {
  explicit Node(const std::string& dir) : store(dir), controller(store, dataplane, "test") {
    api::NetworkCreate front;
    front.name = "front";
    front.subnet = Ipv4Prefix::parse("10.1.0.0/24");
    controller.create_network(front);
  }
  // An endpoint as `owner` would ask for it; "" when made, else the error.
  std::string join(const std::string& network, const std::string& container_id, const std::string& owner,
                   bool attach = true, std::map<std::string, std::string> labels = {}) {
    api::EndpointCreate req;
    req.container_id = container_id;
    req.ifname = "eth0";
    req.attach = attach;
    req.owner = owner;
    req.labels = std::move(labels);
    if (attach) req.netns = "/proc/self/ns/net";
    try {
      controller.create_endpoint(network, req);
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  }
  FakeDataplane dataplane;
  daemon::Store store;
  daemon::Controller controller;
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("ingress: cluster init makes the network once, on the default subnet", "[ingress]") {
  TempDir dir;
  Node n(dir.path());
  CHECK(daemon::find_ingress_network(n.store) == nullptr);
  CHECK(daemon::ingress_host_links(n.store).empty());
  CHECK_FALSE(daemon::ingress_host_table(n.store));
  CHECK_THROWS_WITH(daemon::ingress_network(n.store), Catch::Contains("`swarmnetctl cluster init` makes"));

  daemon::create_ingress_network(n.controller, n.store, std::nullopt, false);
  const daemon::NetworkRecord* ingress = daemon::find_ingress_network(n.store);
  REQUIRE(ingress != nullptr);
  CHECK(ingress->name == daemon::kIngressNetworkName);
  CHECK(ingress->subnet.str() == daemon::kDefaultIngressSubnet);
  CHECK_FALSE(ingress->carries_containers());
  CHECK(n.store.find_network_by_name("front")->carries_containers());
  // Again (a node that had left, initialising anew): the same network.
  const std::string id = ingress->id;
  daemon::create_ingress_network(n.controller, n.store, Ipv4Prefix::parse("10.200.0.0/16"), false);
  CHECK(daemon::find_ingress_network(n.store)->id == id);
  CHECK(daemon::ingress_host_links(n.store).size() == 3);
  CHECK(daemon::ingress_host_table(n.store) == std::optional<std::string>("swarmnet-mesh"));
}

TEST_CASE("ingress: a subnet that cannot be had is refused, saying what to choose", "[ingress]") {
  TempDir dir;
  Node n(dir.path());
  CHECK_THROWS_WITH(daemon::create_ingress_network(n.controller, n.store, Ipv4Prefix::parse("10.1.0.0/16"), false),
                    Catch::Contains("the routing mesh's network \"ingress\"") &&
                        Catch::Contains("choose another --ingress-subnet"));
  CHECK(daemon::find_ingress_network(n.store) == nullptr);
  // Control: a free subnet is taken.
  daemon::create_ingress_network(n.controller, n.store, Ipv4Prefix::parse("10.2.0.0/16"), false);
  CHECK(daemon::find_ingress_network(n.store)->subnet.str() == "10.2.0.0/16");
}

TEST_CASE("ingress: only a node's sandbox and the services' VIPs hold addresses there", "[ingress]") {
  TempDir dir;
  Node n(dir.path());
  daemon::create_ingress_network(n.controller, n.store, std::nullopt, false);

  const std::string refused = "is the routing mesh's: no container joins it";
  CHECK_THAT(n.join("ingress", "c1", api::kOwnerCni), Catch::Contains(refused));
  // A client naming its container as the sandbox is still a client.
  CHECK_THAT(n.join("ingress", daemon::kSandboxContainerId, api::kOwnerApi), Catch::Contains(refused));
  // An address-only endpoint of a client, labelled as a VIP, is not a service's.
  CHECK_THAT(n.join("ingress", "svc-vip-web", api::kOwnerApi, false, {{"swarmnet.vip", "web"}}),
             Catch::Contains(refused));
  CHECK(n.controller.list_endpoints("ingress").empty());

  CHECK(n.join("ingress", daemon::kSandboxContainerId, api::kOwnerSandbox) == "");
  CHECK(n.join("ingress", "svc-vip-web", api::kOwnerServiceVip, false, {{"swarmnet.vip", "web"}}) == "");
  CHECK(n.controller.list_endpoints("ingress").size() == 2);
  // Control: a container joins any other network.
  CHECK(n.join("front", "c1", api::kOwnerCni) == "");
}

// The rest of the daemon asks daemon/ingress/ingress.hpp: none of its files
// finds the ingress network, reads its flag or names its sandbox or ports
// (records.cpp stores the flag; a network's flag set from the request that
// `cluster init` makes is the controller's to copy).
TEST_CASE("ingress: no file of the daemon outside daemon/ingress/ names the ingress network", "[ingress]") {
  const std::filesystem::path daemon_dir = std::filesystem::path(SWARMNET_FIXTURES_DIR) / "../../daemon";
  REQUIRE(std::filesystem::is_directory(daemon_dir / "ingress"));
  const std::regex names_ingress(
      R"((find_ingress_network|kIngressNetworkName|kDefaultIngressSubnet|kIngressPort(First|Last|Owner)|kSandboxContainerId|kMeshHostTable|(\.|->)ingress\b))");
  const std::set<std::string> allowed = {"records.cpp", "records.hpp"};
  std::vector<std::string> offenders;
  size_t seen = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(daemon_dir)) {
    const auto& p = entry.path();
    if (!entry.is_regular_file() || (p.extension() != ".cpp" && p.extension() != ".hpp")) continue;
    if (p.parent_path().filename() == "ingress" || allowed.count(p.filename().string())) continue;
    ++seen;
    std::istringstream lines(read_file(p));
    std::string line;
    for (int number = 1; std::getline(lines, line); ++number) {
      const auto code = line.substr(0, line.find("//"));
      if (std::regex_search(code, names_ingress) && code.find("req.ingress") == std::string::npos) {
        offenders.push_back(p.filename().string() + ":" + std::to_string(number) + ": " + line);
      }
    }
  }
  CHECK(seen > 30);  // the scan read the daemon's files
  std::string list;
  for (const auto& o : offenders) list += o + "\n";
  INFO(list);
  CHECK(offenders.empty());
}
