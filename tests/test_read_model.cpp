// The store's index (daemon/read_model) kept in step with endpoint changes:
// each question answers from what is live now, and a removed or moved
// endpoint leaves no key behind.
#include <catch2/catch.hpp>

#include <set>
#include <string>

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

std::set<std::string> keys(std::initializer_list<std::string> k) { return std::set<std::string>(k); }

// The index keeps pointers to the keys it is given (the store passes its
// table's own): here they live in a set of their own for the whole test.
const std::string& key(const char* k) {
  static std::set<std::string> held;
  return *held.insert(k).first;
}

}  // namespace

TEST_CASE("read model: endpoints by network, service and node follow changes", "[read_model]") {
  ReadModel m("me");
  const EndpointRecord a = endpoint("n1", "me", "web"), b = endpoint("n1", "other", "web");
  m.endpoint_changed(key("a"), nullptr, &a);
  m.endpoint_changed(key("b"), nullptr, &b);
  CHECK(m.endpoints_on_network("n1").copy() == keys({"a", "b"}));
  CHECK(m.endpoints_of_service("web").copy() == keys({"a", "b"}));
  CHECK(m.endpoints_of_node("other").copy() == keys({"b"}));
  CHECK(m.local_attachments("n1").copy() == keys({"a"}));

  // b leaves the service, then goes.
  EndpointRecord b2 = b;
  b2.service = "";
  m.endpoint_changed(key("b"), &b, &b2);
  CHECK(m.endpoints_of_service("web").copy() == keys({"a"}));
  m.endpoint_changed(key("b"), &b2, nullptr);
  CHECK(m.endpoints_on_network("n1").copy() == keys({"a"}));
  CHECK(m.endpoints_of_node("other").empty());
}

TEST_CASE("read model: a network's containers here and elsewhere leave out node addresses and reservations",
          "[read_model]") {
  ReadModel m("me");
  EndpointRecord node_address = endpoint("n1", "me");
  node_address.owner = swarmnet::api::kOwnerNode;
  EndpointRecord reservation = endpoint("n1", "other");
  reservation.attach = false;  // an address-only endpoint (IPAM)
  m.endpoint_changed(key("node"), nullptr, &node_address);
  m.endpoint_changed(key("resv"), nullptr, &reservation);
  CHECK(m.local_attachments("n1").empty());
  CHECK(m.remote_containers("n1").empty());

  const EndpointRecord here = endpoint("n1", "me"), there = endpoint("n1", "other");
  m.endpoint_changed(key("here"), nullptr, &here);
  m.endpoint_changed(key("there"), nullptr, &there);
  CHECK(m.local_attachments("n1").copy() == keys({"here"}));
  CHECK(m.remote_containers("n1").copy() == keys({"there"}));
  CHECK(m.remote_containers("n2").empty());

  m.endpoint_changed(key("there"), &there, nullptr);
  CHECK(m.remote_containers("n1").empty());
  m.endpoint_changed(key("here"), &here, nullptr);
  CHECK(m.local_attachments("n1").empty());
}

TEST_CASE("read model: the index holds the caller's key, not a copy of it", "[read_model]") {
  // An endpoint's key is about 110 bytes and is filed under three or four
  // questions: the index points at the store's own key instead of copying it.
  ReadModel m("me");
  const std::string& k = key("a-long-key-that-does-not-fit-in-a-short-string-buffer");
  const EndpointRecord a = endpoint("n1", "me", "web");
  m.endpoint_changed(k, nullptr, &a);
  REQUIRE(m.endpoints_on_network("n1").size() == 1);
  CHECK(&*m.endpoints_on_network("n1").begin() == &k);
  CHECK(&*m.endpoints_of_service("web").begin() == &k);
  CHECK(&*m.endpoints_of_node("me").begin() == &k);
  CHECK(&*m.local_attachments("n1").begin() == &k);
  CHECK(m.endpoints_on_network("n1").contains("a-long-key-that-does-not-fit-in-a-short-string-buffer"));
  // Removal finds it by value, from any string equal to it.
  m.endpoint_changed(std::string(k), &a, nullptr);
  CHECK(m.endpoints_on_network("n1").empty());
  CHECK(m.endpoints_of_node("me").empty());
}
