// GET /v1/networks/NAME/verbose without a cluster: the service with its VIP
// and its tasks on every node (one written by another node's id), the VIP's
// own reservation neither a task nor a peer, the peers being the nodes with
// a container on the network.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "daemon/controller.hpp"
#include "daemon/network_view.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
namespace json = boost::json;

TEST_CASE("network view: services with VIP and tasks on every node, and the peers", "[network_view]") {
  testing::TempDir dir;
  testing::FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "host1");
  api::NetworkCreate front;
  front.name = "front";
  front.subnet = Ipv4Prefix::parse("10.1.0.0/24");
  const std::string network_id = controller.create_network(front).id;
  front.name = "empty";
  front.subnet = Ipv4Prefix::parse("10.2.0.0/24");
  controller.create_network(front);
  daemon::Services services(store, controller);
  const std::string vip = json::value_to<std::string>(
      json::value_from(services.create(json::value_to<api::ServiceCreate>(
                           json::parse(R"({"name":"web","networks":["front"],"endpoint_mode":"vip"})"))))
          .at("vips")
          .at("front"));

  api::EndpointCreate local;
  local.container_id = "w1";
  local.ifname = "eth0";
  local.service = "web";
  const std::string w1 = controller.create_endpoint("front", local).first.address.address().str();
  daemon::EndpointRecord remote;  // as gossip brings it from another node
  remote.id = "ep-w2";
  remote.network_id = network_id;
  remote.node = "othernode0000";
  remote.container_id = "w2";
  remote.ifname = "eth0";
  remote.ip = Ipv4Address::parse("10.1.0.200");
  remote.service = "web";
  remote.healthy = false;
  store.put(remote);

  const json::value view = daemon::network_view(store, controller, nullptr, "front");
  CHECK(view.at("name") == "front");  // the plain inspect's fields are there
  const auto& svcs = view.at("services").as_array();
  REQUIRE(svcs.size() == 1);
  CHECK(svcs[0].at("name") == "web");
  CHECK(svcs[0].at("vip") == json::value(vip));
  const auto& tasks = svcs[0].at("tasks").as_array();
  REQUIRE(tasks.size() == 2);
  std::map<std::string, json::object> by_container;
  for (const auto& t : tasks) by_container[json::value_to<std::string>(t.at("container_id"))] = t.as_object();
  CHECK(by_container.at("w1").at("ip") == json::value(w1));
  CHECK(by_container.at("w1").at("node") == json::value(store.node_id()));
  CHECK(by_container.at("w1").at("node_alive") == true);
  CHECK(by_container.at("w2").at("ip") == "10.1.0.200");
  CHECK(by_container.at("w2").at("node") == "othernode0000");
  CHECK(by_container.at("w2").at("healthy") == false);
  CHECK(by_container.at("w2").at("node_alive") == false);  // no cluster: only this node lives

  const auto& peers = view.at("peers").as_array();
  REQUIRE(peers.size() == 2);  // not the VIP's reservation
  std::map<std::string, json::object> by_node;
  for (const auto& p : peers) by_node[json::value_to<std::string>(p.at("node"))] = p.as_object();
  CHECK(by_node.at(store.node_id()).at("self") == true);
  CHECK(by_node.at(store.node_id()).at("containers") == 1);
  CHECK(by_node.at("othernode0000").at("self") == false);
  CHECK(by_node.at("othernode0000").at("address").is_null());

  const json::value empty = daemon::network_view(store, controller, nullptr, "empty");
  CHECK(empty.at("services").as_array().empty());
  CHECK(empty.at("peers").as_array().empty());
  CHECK_THROWS_AS(daemon::network_view(store, controller, nullptr, "nosuch"), Error);
}
