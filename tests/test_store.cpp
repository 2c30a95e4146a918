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
