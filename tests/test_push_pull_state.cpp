// The push/pull copy (daemon/push_pull_state): each entry is held once, by
// (table, key), as the store's line for it, compressed; a newer line replaces
// the older, a removed entry leaves, and the message lists the lines, byte
// for byte as given, table by table, followed by the cluster's records.
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "daemon/push_pull_state.hpp"

using swarmnet::daemon::PushPullState;
using swarmnet::daemon::TableId;
namespace json = boost::json;

namespace {

json::value line(const char* table, const std::string& key, int lamport) {
  return json::object{{"table", table}, {"key", key}, {"version", json::object{{"lamport", lamport}, {"node", "n"}}}};
}

json::value message(const PushPullState& s) {
  const auto bytes = s.bytes();
  return json::parse(std::string(bytes.begin(), bytes.end()));
}

}  // namespace

std::string key_of(const json::value& entry) { return std::string(entry.at("key").as_string()); }

TEST_CASE("push/pull state: one line per entry, replaced, removed, in table order", "[push_pull]") {
  PushPullState s;
  // Keys longer than a short string, as the endpoints' are.
  const std::string a = std::string(64, 'a') + "\x1f" + "node\x1f" + "c1\x1f" + "eth0";
  const std::string b = std::string(64, 'b') + "\x1f" + "node\x1f" + "c2\x1f" + "eth0";
  s.put(TableId::endpoints, b, line("endpoints", b, 1));
  s.put(TableId::endpoints, a, line("endpoints", a, 2));
  s.put(TableId::networks, "net", line("networks", "net", 3));
  CHECK(s.entries() == 3);

  json::value m = message(s);
  const auto& entries = m.at("entries").as_array();
  REQUIRE(entries.size() == 3);
  // Tables in their order (networks before endpoints); within a table the
  // order is the keys' digests'.
  CHECK(entries[0].at("key") == "net");
  CHECK(std::set<std::string>{key_of(entries[1]), key_of(entries[2])} == std::set<std::string>{a, b});

  // A newer line of the same entry replaces it; nullopt removes it.
  s.put(TableId::endpoints, a, line("endpoints", a, 7));
  s.put(TableId::endpoints, b, std::nullopt);
  s.put(TableId::services, "gone", std::nullopt);  // never held: nothing to do
  m = message(s);
  REQUIRE(m.at("entries").as_array().size() == 2);
  CHECK(key_of(m.at("entries").as_array()[1]) == a);
  CHECK(m.at("entries").as_array()[1].at("version").at("lamport") == 7);
  CHECK(s.entries() == 2);

  // The same key in two tables is two entries.
  s.put(TableId::services, "net", line("services", "net", 8));
  CHECK(s.entries() == 3);
}

TEST_CASE("push/pull state: reset replaces every entry, and the records follow the entries", "[push_pull]") {
  PushPullState s;
  s.put(TableId::networks, "old", line("networks", "old", 1));
  s.reset({line("services", "s2", 4), line("networks", "n1", 2), line("services", "s1", 3),
           line("services", "s1", 5),  // a later line of a key wins, as before
           line("cursors-of-nobody", "x", 1)});  // a table it does not know is skipped
  s.set_records(json::object{{"keyring", 3}});
  const json::value m = message(s);
  const auto& entries = m.at("entries").as_array();
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].at("key") == "n1");
  std::map<std::string, json::value> services{{key_of(entries[1]), entries[1]}, {key_of(entries[2]), entries[2]}};
  REQUIRE(services.count("s1") == 1);
  CHECK(services.at("s1").at("version").at("lamport") == 5);
  CHECK(services.count("s2") == 1);
  CHECK(m.at("keyring") == 3);
  s.reset({});
  CHECK(s.entries() == 0);
  CHECK(message(s).at("entries").as_array().empty());
}

namespace {

// An endpoint's line as the store writes it (Store::replicated_entry), with
// ids as long as real ones: 64 hex digits for networks and containers.
json::value endpoint_line(int i, const std::string& network, const std::string& node) {
  char container[65];
  std::snprintf(container, sizeof container, "%064x", i * 2654435761u);
  const std::string key = network + "\x1f" + node + "\x1f" + container + "\x1f" "eth0";
  char ip[32], mac[32];
  std::snprintf(ip, sizeof ip, "10.%d.%d.%d/16", 200, (i >> 8) & 255, i & 255);
  std::snprintf(mac, sizeof mac, "02:42:0a:c8:%02x:%02x", (i >> 8) & 255, i & 255);
  json::object value{{"id", std::string(container).substr(0, 32)},
                     {"network_id", network},
                     {"node", node},
                     {"container_id", container},
                     {"ifname", "eth0"},
                     {"netns", "/var/run/netns/cni-" + std::string(container).substr(0, 36)},
                     {"ip", ip},
                     {"mac", mac},
                     {"host_ifname", "veth" + std::string(container).substr(0, 8)},
                     {"attach", true},
                     {"name", "web.1." + std::string(container).substr(0, 25)},
                     {"aliases", json::array{"web"}},
                     {"service", "web"},
                     {"labels", json::object{}},
                     {"healthy", true},
                     {"host_ports", json::array{}},
                     {"owner", "cni"},
                     {"cni_config", "swarmnet"}};
  return json::object{{"table", "endpoints"},
                      {"key", key},
                      {"version", json::object{{"lamport", 1000 + i}, {"node", node}}},
                      {"deleted", false},
                      {"deleted_at", 0},
                      {"value", std::move(value)}};
}

}  // namespace

TEST_CASE("push/pull state: thousands of endpoints held compressed, every line back as it was", "[push_pull]") {
  const std::string network(64, 'e');
  const std::string nodes[] = {"4f1c2a9e0b7d4c3a8e6f5d2c1b0a9e8f", "9a8b7c6d5e4f30211f2e3d4c5b6a7980"};
  constexpr int kCount = 4000;
  PushPullState s;
  std::map<std::string, std::string> want;  // key -> serialized line
  size_t serialized = 0;
  // Half through reset (start), half one by one (the feed), then changes.
  std::vector<json::value> first;
  for (int i = 0; i < kCount / 2; ++i) first.push_back(endpoint_line(i, network, nodes[i % 2]));
  s.reset(first);
  for (const auto& l : first) want[key_of(l)] = json::serialize(l);
  for (int i = kCount / 2; i < kCount; ++i) {
    const json::value l = endpoint_line(i, network, nodes[i % 2]);
    s.put(TableId::endpoints, key_of(l), l);
    want[key_of(l)] = json::serialize(l);
  }
  for (const auto& [key, text] : want) serialized += text.size();
  // A change and a deletion (tombstone) of entries already held.
  json::value changed = endpoint_line(7, network, nodes[1]);
  changed.as_object()["version"].as_object()["lamport"] = 99999;
  changed.as_object()["value"].as_object()["healthy"] = false;
  s.put(TableId::endpoints, key_of(changed), changed);
  want[key_of(changed)] = json::serialize(changed);
  json::value tombstone = endpoint_line(8, network, nodes[0]);
  tombstone.as_object().erase("value");
  tombstone.as_object()["deleted"] = true;
  s.put(TableId::endpoints, key_of(tombstone), tombstone);
  want[key_of(tombstone)] = json::serialize(tombstone);
  REQUIRE(s.entries() == want.size());

  // Every line comes back byte for byte (the message is their concatenation).
  const auto bytes = s.bytes();
  const json::value m = json::parse(std::string(bytes.begin(), bytes.end()));
  std::map<std::string, std::string> got;
  for (const auto& e : m.at("entries").as_array()) got[key_of(e)] = json::serialize(e);
  CHECK(got == want);

  // Held: a fraction of the lines' own size (about 700 bytes each here). The
  // copy held each line and its key as text: more than the lines' size.
  const double per_line = static_cast<double>(serialized) / kCount;
  const double held = static_cast<double>(s.held_bytes()) / kCount;
  INFO("serialized " << per_line << " bytes a line, held " << held);
  CHECK(per_line > 650);
  CHECK(held < per_line / 2.5);
}
