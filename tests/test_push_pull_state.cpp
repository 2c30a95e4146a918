// The push/pull message (daemon/push_pull_state): every replicated entry of
// the store, tombstones included, as the store's line for it, table by
// table, followed by the cluster's records; read from the store itself,
// also from another thread while the daemon's thread writes, a few entries
// at a time.
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "daemon/push_pull_state.hpp"
#include "daemon/store.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::daemon::PushPullState;
using swarmnet::testing::TempDir;
namespace json = boost::json;

namespace {

json::value message(const PushPullState& s) {
  const auto bytes = s.bytes();
  return json::parse(std::string(bytes.begin(), bytes.end()));
}

std::string key_of(const json::value& entry) { return std::string(entry.at("key").as_string()); }

daemon::NetworkRecord network(const std::string& id) {
  daemon::NetworkRecord n;
  n.id = id;
  n.name = "name-" + id;
  n.subnet = Ipv4Prefix::parse("10.1.0.0/16");
  n.gateway = Ipv4Address::parse("10.1.0.1");
  n.vni = 4097;
  n.block_length = 24;
  return n;
}

daemon::EndpointRecord endpoint(const daemon::Store& s, int i) {
  daemon::EndpointRecord e;
  e.id = "ep-" + std::to_string(i);
  e.network_id = "n1";
  e.node = s.node_id();
  e.container_id = "container-with-a-long-id-" + std::to_string(i);
  e.ifname = "eth0";
  e.ip = Ipv4Address(Ipv4Address::parse("10.1.0.2").value() + static_cast<uint32_t>(i));
  e.name = "web." + std::to_string(i);
  e.service = "web";
  return e;
}

std::string key_of(const daemon::EndpointRecord& e) { return daemon::endpoint_key(e.network_id, e.node, e.container_id, e.ifname); }

// The store's entries, serialized, by table and key.
std::map<std::pair<std::string, std::string>, std::string> lines_of(const std::vector<json::value>& entries) {
  std::map<std::pair<std::string, std::string>, std::string> out;
  for (const auto& e : entries) {
    const bool added = out.emplace(std::pair{std::string(e.at("table").as_string()), key_of(e)}, json::serialize(e)).second;
    CHECK(added);  // each entry once
  }
  return out;
}

}  // namespace

TEST_CASE("push/pull state: every entry of the store, tombstones included, in table order, then the records",
          "[push_pull]") {
  TempDir dir;
  daemon::Store store(dir.path());
  PushPullState s(store);
  CHECK(message(s).at("entries").as_array().empty());

  daemon::ServiceRecord web;
  web.id = "svc-web";
  web.name = "web";
  store.put(web);  // services come last in the message, whatever the order written
  store.put(network("n1"));
  for (int i = 0; i < 10; ++i) store.put(endpoint(store, i));
  store.erase_endpoint(key_of(endpoint(store, 3)));  // a tombstone is sent too
  s.set_records(json::object{{"keyring", 3}, {"nodes", json::array{}}});

  const json::value m = message(s);
  const auto& entries = m.at("entries").as_array();
  CHECK(lines_of(std::vector<json::value>(entries.begin(), entries.end())) == lines_of(store.replicated_entries()));
  REQUIRE(entries.size() == 12);
  CHECK(entries.front().at("table") == "networks");
  CHECK(entries.back().at("table") == "services");
  bool tombstone = false;
  for (const auto& e : entries) {
    if (key_of(e) == key_of(endpoint(store, 3))) tombstone = e.at("deleted").as_bool() && !e.as_object().contains("value");
  }
  CHECK(tombstone);
  CHECK(m.at("keyring") == 3);
  CHECK(m.at("nodes").as_array().empty());
}

TEST_CASE("push/pull state: the store read a few entries at a time gives the same lines", "[push_pull]") {
  TempDir dir;
  daemon::Store store(dir.path());
  store.put(network("n1"));
  store.put(network("n2"));
  for (int i = 0; i < 50; ++i) store.put(endpoint(store, i));
  std::string whole;
  store.append_replicated_lines([&](std::string_view s) { whole += s; });
  CHECK(json::parse("[" + whole + "]").as_array().size() == 52);
  for (size_t per_hold : {1, 2, 7, 50, 51, 1000}) {
    std::string sliced;
    store.append_replicated_lines([&](std::string_view s) { sliced += s; }, per_hold);
    INFO("per_hold " << per_hold);
    CHECK(sliced == whole);
  }
}

// The gossip thread reads the store while the daemon's thread writes to it,
// removes entries and reaps tombstones: every message is whole (each entry
// once, as one of its versions), and once the writes stop the message is the
// store's entries exactly.
TEST_CASE("push/pull state: read on another thread while the store changes", "[push_pull]") {
  TempDir dir;
  // Tombstones expire at once, so compactions reap them while read.
  daemon::Store store(dir.path(), -1);
  PushPullState s(store);
  store.put(network("n1"));
  std::atomic<bool> done{false};
  std::atomic<int> messages{0};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!done.load()) {
      try {
        const json::value m = message(s);
        std::set<std::string> keys;
        bool network_first = false;
        for (const auto& e : m.at("entries").as_array()) {
          if (keys.empty()) network_first = e.at("table") == "networks";
          if (!keys.insert(key_of(e)).second) ++bad;
        }
        if (!network_first) ++bad;
        ++messages;
      } catch (const std::exception&) {
        ++bad;
      }
    }
  });
  for (int i = 0; i < 1500 || (messages.load() < 20 && i < 100000); ++i) {
    store.put(endpoint(store, i));
    if (i >= 5) store.erase_endpoint(key_of(endpoint(store, i - 5)));
    if (i % 300 == 299) store.compact();  // reaps the tombstones
  }
  done = true;
  reader.join();
  INFO(messages.load() << " messages read");
  CHECK(messages.load() >= 20);
  CHECK(bad.load() == 0);
  const json::value m = message(s);
  const auto& entries = m.at("entries").as_array();
  CHECK(lines_of(std::vector<json::value>(entries.begin(), entries.end())) == lines_of(store.replicated_entries()));
}
