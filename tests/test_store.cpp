// The journal and snapshot: what was written is what is read back, a torn
// last line is survived, real corruption is reported.
#include <catch2/catch.hpp>
#include <fstream>

#include "common/error.hpp"
#include "daemon/store.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::TempDir;

namespace {
daemon::NetworkRecord network(const std::string& id, const std::string& name) {
  daemon::NetworkRecord n;
  n.id = id;
  n.name = name;
  n.subnet = Ipv4Prefix::parse("10.1.0.0/24");
  n.gateway = Ipv4Address::parse("10.1.0.1");
  n.mtu = 1450;
  n.vni = 4096;
  n.block_length = 26;
  return n;
}
}  // namespace

TEST_CASE("store: journal replay, tombstones, versions", "[store]") {
  TempDir dir;
  std::string node;
  {
    daemon::Store s(dir.path());
    node = s.node_id();
    auto v1 = s.put(network("n1", "one"));
    auto v2 = s.put(network("n2", "two"));
    CHECK(v2 > v1);
    s.erase_network("n1");
    CHECK(s.find_network("n1") == nullptr);
    CHECK(s.find_network_by_name("two") != nullptr);
    CHECK(s.journal_length() == 3);
  }
  daemon::Store s(dir.path());
  CHECK(s.node_id() == node);
  CHECK(s.find_network("n1") == nullptr);
  REQUIRE(s.find_network("n2") != nullptr);
  CHECK(s.find_network("n2")->subnet.str() == "10.1.0.0/24");
  // The tombstone is kept (gossip needs it), with a version above the put's.
  REQUIRE(s.networks().count("n1") == 1);
  CHECK(s.networks().at("n1").deleted);
  CHECK(s.journal_length() == 0);  // compacted at start
  auto v3 = s.put(network("n3", "three"));
  CHECK(v3.lamport > s.networks().at("n1").version.lamport);
}

TEST_CASE("store: a torn last journal line is ignored", "[store]") {
  TempDir dir;
  {
    daemon::Store s(dir.path());
    s.put(network("n1", "one"));
  }
  {
    daemon::Store s(dir.path());  // compacts n1 into the snapshot
    s.put(network("n2", "two"));
  }
  {
    std::ofstream j(dir / "journal", std::ios::app);
    j << "{\"table\":\"networks\",\"key\":\"n3\",\"vers";  // power cut mid-write
  }
  daemon::Store s(dir.path());
  CHECK(s.find_network("n1") != nullptr);
  CHECK(s.find_network("n2") != nullptr);
  CHECK(s.find_network("n3") == nullptr);
}

TEST_CASE("store: a corrupt journal line in the middle is an error", "[store]") {
  TempDir dir;
  { daemon::Store s(dir.path()); }
  {
    std::ofstream j(dir / "journal", std::ios::app);
    j << "garbage\n{\"table\":\"networks\"}\n";
  }
  CHECK_THROWS_AS(daemon::Store(dir.path()), Error);
}

TEST_CASE("store: merging another node's entries, last writer wins", "[store][replication]") {
  TempDir dir_a, dir_b;
  daemon::Store a(dir_a.path());
  daemon::Store b(dir_b.path());
  std::vector<std::string> seen_by_b;
  b.add_change_listener([&](const std::string& table, const std::string& key,
                            const daemon::Store::Line* local) {
    if (!local) seen_by_b.push_back(table + ":" + key);  // merged, not written here
  });
  std::vector<daemon::Store::Line> broadcast;
  a.add_change_listener([&](const std::string&, const std::string&, const daemon::Store::Line* l) {
    if (l) broadcast.push_back(*l);
  });

  a.put(network("n1", "one"));
  a.put(network("n2", "two"));
  REQUIRE(broadcast.size() == 2);
  CHECK(b.merge(broadcast) == 2);
  CHECK(seen_by_b == std::vector<std::string>{"networks:n1", "networks:n2"});
  CHECK(b.merge(broadcast) == 0);  // the same again changes nothing
  REQUIRE(b.find_network("n2") != nullptr);

  // b renames n2 with a newer version; a's older update arrives after it.
  auto renamed = network("n2", "two-b");
  b.put(renamed);
  auto stale = broadcast[1];
  CHECK(b.merge({stale}) == 0);
  CHECK(b.find_network("n2")->name == "two-b");

  // A deletion with a higher version beats the put; the tombstone travels.
  broadcast.clear();
  a.erase_network("n1");
  CHECK(b.merge(broadcast) == 1);
  CHECK(b.find_network("n1") == nullptr);

  // b's state reaches a by push/pull; both converge on the same entries.
  CHECK(a.merge(b.replicated_entries()) >= 1);
  CHECK(a.find_network("n2")->name == "two-b");
  CHECK(a.replicated_entries() == b.replicated_entries());
}

TEST_CASE("store: a malformed batch is refused whole", "[store][replication]") {
  TempDir dir_a, dir_b;
  daemon::Store a(dir_a.path());
  daemon::Store b(dir_b.path());
  std::vector<daemon::Store::Line> lines;
  a.add_change_listener([&](const std::string&, const std::string&, const daemon::Store::Line* l) {
    if (l) lines.push_back(*l);
  });
  a.put(network("n1", "one"));
  namespace json = boost::json;
  const std::vector<json::value> bad = {
      json::parse(R"({"table":"networks","key":"x"})"),
      json::parse(R"({"table":"nope","key":"x","version":{"lamport":1,"node":"n"},"value":{}})"),
      json::parse(R"({"table":"networks","key":"x","version":{"lamport":1,"node":"n"},"value":{"id":5}})"),
      json::parse(R"({"table":"cursors","key":"x","version":{"lamport":1,"node":"n"},"value":{"network_id":"x","last_allocated":"10.0.0.1"}})"),
      json::parse(R"([1,2,3])"),
  };
  for (const auto& b_line : bad) {
    INFO(json::serialize(b_line));
    std::vector<json::value> batch = {lines[0], b_line};
    CHECK_THROWS_AS(b.merge(batch), Error);
    CHECK(b.find_network("n1") == nullptr);
  }
}
