// The push/pull copy (daemon/push_pull_state): each entry is held once, by
// (table, key), as the store's line for it; a newer line replaces the older,
// a removed entry leaves, and the message lists the lines in (table, key)
// order followed by the cluster's records.
#include <boost/json.hpp>
#include <catch2/catch.hpp>
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

TEST_CASE("push/pull state: one line per entry, replaced, removed, in table and key order", "[push_pull]") {
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
  // Tables in their order (networks before endpoints), keys sorted within.
  CHECK(entries[0].at("key") == "net");
  CHECK(std::string(entries[1].at("key").as_string()) == a);
  CHECK(std::string(entries[2].at("key").as_string()) == b);

  // A newer line of the same entry replaces it; nullopt removes it.
  s.put(TableId::endpoints, a, line("endpoints", a, 7));
  s.put(TableId::endpoints, b, std::nullopt);
  s.put(TableId::services, "gone", std::nullopt);  // never held: nothing to do
  m = message(s);
  REQUIRE(m.at("entries").as_array().size() == 2);
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
  CHECK(entries[1].at("key") == "s1");
  CHECK(entries[1].at("version").at("lamport") == 5);
  CHECK(entries[2].at("key") == "s2");
  CHECK(m.at("keyring") == 3);
  s.reset({});
  CHECK(s.entries() == 0);
  CHECK(message(s).at("entries").as_array().empty());
}
