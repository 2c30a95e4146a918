// The store's index (daemon/read_model) kept in step with endpoint changes:
// each question answers from what is live now, and a removed or moved
// endpoint leaves no key behind. The endpoints of a network and of a node
// are ranges of the endpoint table itself (EndpointKeys).
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/api.hpp"
#include "daemon/read_model.hpp"

using swarmnet::daemon::EndpointKeys;
using swarmnet::daemon::EndpointRecord;
using swarmnet::daemon::ReadModel;

namespace {

EndpointRecord endpoint(const std::string& network, const std::string& node, const std::string& service = "",
                        const std::string& container = "c") {
  EndpointRecord e;
  e.network_id = network;
  e.node = node;
  e.container_id = container;
  e.ifname = "eth0";
  e.service = service;
  e.owner = swarmnet::api::kOwnerCni;
  return e;
}

std::string key_of(const EndpointRecord& e) {
  return swarmnet::daemon::endpoint_key(e.network_id, e.node, e.container_id, e.ifname);
}

std::set<std::string> keys(std::initializer_list<EndpointRecord> eps) {
  std::set<std::string> out;
  for (const auto& e : eps) out.insert(key_of(e));
  return out;
}

// The store's part: its endpoint table, and the index told of each change
// with the table's own key, as Store does.
struct Tables {
  EndpointKeys::Table endpoints;
  ReadModel m{"me", endpoints};
  void put(const EndpointRecord& e) {
    auto [it, fresh] = endpoints.try_emplace(key_of(e));
    const bool live = !fresh && !it->second.deleted;
    const EndpointRecord before = it->second.value;
    it->second.deleted = false;
    it->second.value = e;
    m.endpoint_changed(it->first, live ? &before : nullptr, &it->second.value);
  }
  // Leaves a tombstone, as the store does.
  void remove(const EndpointRecord& e) {
    auto& entry = endpoints.at(key_of(e));
    entry.deleted = true;
    m.endpoint_changed(key_of(e), &entry.value, nullptr);
  }
};

}  // namespace

TEST_CASE("read model: endpoints by network, service and node follow changes", "[read_model]") {
  Tables t;
  const EndpointRecord a = endpoint("n1", "me", "web", "a"), b = endpoint("n1", "other", "web", "b");
  t.put(a);
  t.put(b);
  CHECK(t.m.endpoints_on_network("n1").copy() == keys({a, b}));
  CHECK(t.m.endpoints_of_service("web").copy() == keys({a, b}));
  CHECK(t.m.endpoints_of_node("other").copy() == keys({b}));
  CHECK(t.m.local_attachments("n1").copy() == keys({a}));

  // b leaves the service, then goes.
  EndpointRecord b2 = b;
  b2.service = "";
  t.put(b2);
  CHECK(t.m.endpoints_of_service("web").copy() == keys({a}));
  t.remove(b2);
  CHECK(t.m.endpoints_on_network("n1").copy() == keys({a}));
  CHECK(t.m.endpoints_of_node("other").empty());
  CHECK(t.m.endpoints_of_node("other").size() == 0);
}

TEST_CASE("read model: a node's endpoints on every network, a network's of every node, tombstones left out",
          "[read_model]") {
  Tables t;
  CHECK(t.m.endpoints_on_network("n1").empty());
  CHECK(t.m.endpoints_of_node("me").empty());
  // Ids that are prefixes of one another: n1/n10, me/me2.
  const EndpointRecord mine1 = endpoint("n1", "me", "", "a"), mine10 = endpoint("n10", "me", "", "a"),
                       mine3 = endpoint("n3", "me", "", "b"), also_mine3 = endpoint("n3", "me", "", "c"),
                       other1 = endpoint("n1", "me2", "", "a"), other2 = endpoint("n2", "other", "", "a"),
                       other3 = endpoint("n3", "other", "", "z"), gone = endpoint("n3", "me", "", "d");
  for (const auto& e : {mine1, mine10, mine3, also_mine3, other1, other2, other3, gone}) t.put(e);
  t.remove(gone);
  CHECK(t.m.endpoints_of_node("me").copy() == keys({mine1, mine10, mine3, also_mine3}));
  CHECK(t.m.endpoints_of_node("me").size() == 4);
  CHECK(t.m.endpoints_of_node("me2").copy() == keys({other1}));
  CHECK(t.m.endpoints_of_node("other").copy() == keys({other2, other3}));
  CHECK(t.m.endpoints_of_node("m").empty());
  CHECK(t.m.endpoints_of_node("nobody").empty());
  CHECK(t.m.endpoints_on_network("n1").copy() == keys({mine1, other1}));
  CHECK(t.m.endpoints_on_network("n10").copy() == keys({mine10}));
  CHECK(t.m.endpoints_on_network("n3").copy() == keys({mine3, also_mine3, other3}));
  CHECK(t.m.endpoints_on_network("n").empty());
  // In key order, each once.
  std::vector<std::string> walked(t.m.endpoints_of_node("me").begin(), t.m.endpoints_of_node("me").end());
  CHECK(std::is_sorted(walked.begin(), walked.end()));
  // Only tombstones left on a network: none.
  t.remove(other2);
  CHECK(t.m.endpoints_on_network("n2").empty());
  CHECK(t.m.endpoints_of_node("other").copy() == keys({other3}));
  // A key the table holds that is not an endpoint key of the usual shape
  // (no separator) is passed over, not looped on.
  t.endpoints["n9"].value = endpoint("n9", "me");
  CHECK(t.m.endpoints_of_node("me").size() == 4);
}

TEST_CASE("read model: a network's containers here and elsewhere leave out node addresses and reservations",
          "[read_model]") {
  Tables t;
  EndpointRecord node_address = endpoint("n1", "me", "", "node");
  node_address.owner = swarmnet::api::kOwnerNode;
  EndpointRecord reservation = endpoint("n1", "other", "", "resv");
  reservation.attach = false;  // an address-only endpoint (IPAM)
  t.put(node_address);
  t.put(reservation);
  CHECK(t.m.local_attachments("n1").empty());
  CHECK(t.m.remote_containers("n1").empty());

  const EndpointRecord here = endpoint("n1", "me", "", "here"), there = endpoint("n1", "other", "", "there");
  t.put(here);
  t.put(there);
  CHECK(t.m.local_attachments("n1").copy() == keys({here}));
  CHECK(t.m.remote_containers("n1").copy() == keys({there}));
  CHECK(t.m.remote_containers("n2").empty());

  t.remove(there);
  CHECK(t.m.remote_containers("n1").empty());
  t.remove(here);
  CHECK(t.m.local_attachments("n1").empty());
}

TEST_CASE("read model: the index holds the table's key, not a copy of it", "[read_model]") {
  // An endpoint's key is about 110 bytes: the index points at the store's
  // own key instead of copying it, and the network's and node's endpoints
  // are the table's keys themselves.
  Tables t;
  const EndpointRecord a = endpoint("n1", "me", "web", "a-long-container-id-that-does-not-fit-in-a-short-string");
  t.put(a);
  const std::string& k = t.endpoints.begin()->first;
  REQUIRE(t.m.endpoints_on_network("n1").size() == 1);
  CHECK(&*t.m.endpoints_on_network("n1").begin() == &k);
  CHECK(&*t.m.endpoints_of_service("web").begin() == &k);
  CHECK(&*t.m.endpoints_of_node("me").begin() == &k);
  CHECK(&*t.m.local_attachments("n1").begin() == &k);
  // Removal finds it by value, from any string equal to it.
  t.remove(a);
  CHECK(t.m.endpoints_of_service("web").empty());
  CHECK(t.m.local_attachments("n1").empty());
  CHECK(t.m.endpoints_on_network("n1").empty());
  CHECK(t.m.endpoints_of_node("me").empty());
}

TEST_CASE("read model: labels are a null pointer until one is set, and read as the map", "[read_model]") {
  EndpointRecord e;
  CHECK(e.labels.empty());
  CHECK(e.labels.find("swarmnet.vip") == e.labels.end());
  e.labels = {{"swarmnet.vip", "web"}};
  CHECK(e.labels.size() == 1);
  CHECK(e.labels == std::map<std::string, std::string>{{"swarmnet.vip", "web"}});
  const EndpointRecord copy = e;
  e.labels["tier"] = "front";
  CHECK(copy.labels.size() == 1);  // a copy of its own
  CHECK(e.labels.count("tier") == 1);
  e.labels = std::map<std::string, std::string>{};
  CHECK(e.labels.empty());
  CHECK_FALSE(e.labels == copy.labels.map());
}
