// The store's index (daemon/read_model) kept in step with endpoint changes:
// each question answers from what is live now, and a removed or moved
// endpoint leaves no key behind.
#include <catch2/catch.hpp>

#include "common/api.hpp"
#include "daemon/read_model.hpp"

using swarmnet::daemon::EndpointRecord;
using swarmnet::daemon::ReadModel;

namespace {

EndpointRecord endpoint(const std::string& network, const std::string& node, const std::string& service = "") {
  EndpointRecord e;
  e.network_id = network;
  e.node = node;
  e.service = service;
  e.owner = swarmnet::api::kOwnerCni;
  return e;
}

ReadModel::Keys keys(std::initializer_list<std::string> k) { return ReadModel::Keys(k); }

}  // namespace

TEST_CASE("read model: endpoints by network, service and node follow changes", "[read_model]") {
  ReadModel m("me");
  const EndpointRecord a = endpoint("n1", "me", "web"), b = endpoint("n1", "other", "web");
  m.endpoint_changed("a", nullptr, &a);
  m.endpoint_changed("b", nullptr, &b);
  CHECK(m.endpoints_on_network("n1") == keys({"a", "b"}));
  CHECK(m.endpoints_of_service("web") == keys({"a", "b"}));
  CHECK(m.endpoints_of_node("other") == keys({"b"}));
  CHECK(m.local_attachments("n1") == keys({"a"}));

  // b leaves the service, then goes.
  EndpointRecord b2 = b;
  b2.service = "";
  m.endpoint_changed("b", &b, &b2);
  CHECK(m.endpoints_of_service("web") == keys({"a"}));
  m.endpoint_changed("b", &b2, nullptr);
  CHECK(m.endpoints_on_network("n1") == keys({"a"}));
  CHECK(m.endpoints_of_node("other").empty());
}

TEST_CASE("read model: a network's containers here and elsewhere leave out node addresses and reservations",
          "[read_model]") {
  ReadModel m("me");
  EndpointRecord node_address = endpoint("n1", "me");
  node_address.owner = swarmnet::api::kOwnerNode;
  EndpointRecord reservation = endpoint("n1", "other");
  reservation.attach = false;  // an address-only endpoint (IPAM)
  m.endpoint_changed("node", nullptr, &node_address);
  m.endpoint_changed("resv", nullptr, &reservation);
  CHECK(m.local_attachments("n1").empty());
  CHECK(m.remote_containers("n1").empty());

  const EndpointRecord here = endpoint("n1", "me"), there = endpoint("n1", "other");
  m.endpoint_changed("here", nullptr, &here);
  m.endpoint_changed("there", nullptr, &there);
  CHECK(m.local_attachments("n1") == keys({"here"}));
  CHECK(m.remote_containers("n1") == keys({"there"}));
  CHECK(m.remote_containers("n2").empty());

  m.endpoint_changed("there", &there, nullptr);
  CHECK(m.remote_containers("n1").empty());
  m.endpoint_changed("here", &here, nullptr);
  CHECK(m.local_attachments("n1").empty());
}
