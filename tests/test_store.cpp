// The journal and snapshot: what was written is what is read back, a torn
// last line is survived, a damaged record is dropped (and logged) without
// stopping the start, bad Lamport values are refused. Full-disk tests are in
// test_store_disk.cpp, the format 1 fixture in test_store_fixture.cpp.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "daemon/state_records.hpp"
#include "daemon/store.hpp"
#include "support/log_capture.hpp"
#include "support/temp_dir.hpp"
#include "support/tmpfs.hpp"

using namespace swarmnet;
using swarmnet::testing::LogCapture;
using swarmnet::testing::TempDir;

namespace {
std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}
void append(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::app) << text;
}

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

TEST_CASE("store: a torn last journal line is ignored, and the next write starts on a clean line", "[store]") {
  TempDir dir;
  {
    daemon::Store s(dir.path());
    s.put(network("n1", "one"));
  }
  {
    daemon::Store s(dir.path());  // compacts n1 into the snapshot
    s.put(network("n2", "two"));
  }
  const std::string torn = "1234abcd {\"table\":\"networks\",\"key\":\"n3\",\"vers";  // power cut mid-write
  append(dir / "journal", torn);
  LogCapture log;
  {
    daemon::Store s(dir.path());
    CHECK(s.find_network("n1") != nullptr);
    CHECK(s.find_network("n2") != nullptr);
    CHECK(s.find_network("n3") == nullptr);
    CHECK(log.matching({"warning", "torn last line 3 of " + dir / "journal"}).size() == 1);
    CHECK(log.matching({"dropped"}).empty());
    s.put(network("n4", "four"));
  }
  daemon::Store s(dir.path());
  CHECK(s.find_network("n4") != nullptr);
  CHECK(read_text(dir / "journal").find("\"vers\n") == std::string::npos);
}

TEST_CASE("store: a record whose checksum fails is dropped with a log line, the others load", "[store]") {
  TempDir dir;
  {
    daemon::Store s(dir.path());
    s.put(network("n1", "one"));  // compacted into the snapshot at the next start
  }
  {
    daemon::Store s(dir.path());
    s.put(network("n2", "two"));
    s.put(network("n3", "three"));
    s.put(network("n4", "four"));
  }
  // One byte of n3's record changed on disk: still valid JSON (the name
  // "three" becomes "thref"), so only the checksum can tell.
  std::string journal = read_text(dir / "journal");
  const auto at = journal.find("\"three\"");
  REQUIRE(at != std::string::npos);
  journal[at + 5] = 'f';
  write_text(dir / "journal", journal);

  SECTION("control: the same change without checksums would load silently") {
    // The record as format 1 wrote it (bare JSON, no header) is accepted,
    // changed byte and all: this is what the checksum is for.
    std::string legacy;
    std::istringstream in(journal);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind('#', 0) == 0) continue;
      legacy += line.substr(9) + "\n";
    }
    write_text(dir / "journal", legacy);
    daemon::Store s(dir.path());
    REQUIRE(s.find_network("n3") != nullptr);
    CHECK(s.find_network("n3")->name == "thref");
  }
  SECTION("with checksums the changed record is dropped") {
    LogCapture log;
    daemon::Store s(dir.path());
    CHECK(s.find_network("n1") != nullptr);
    CHECK(s.find_network("n2") != nullptr);
    CHECK(s.find_network("n3") == nullptr);
    CHECK(s.find_network_by_name("thref") == nullptr);
    CHECK(s.find_network("n4") != nullptr);
    INFO(log.all());
    // File, line and reason; line 1 is the header, n3's record is line 3.
    CHECK(log.matching({"error", "dropped from " + dir / "journal", "line 3: checksum mismatch"}).size() == 1);
    CHECK(log.matching({"dropped from"}).size() == 1);
    // The damaged file is kept for the operator.
    CHECK(log.matching({"kept as " + dir / "journal.damaged-"}).size() == 1);
    // Writes go on, and the next start is clean.
    s.put(network("n5", "five"));
  }
}

TEST_CASE("store: garbage and undecodable records in the middle do not stop the start", "[store]") {
  TempDir dir;
  {
    daemon::Store s(dir.path());
    s.put(network("n1", "one"));
  }
  namespace json = boost::json;
  append(dir / "journal", "garbage\n");
  // Well framed (its checksum holds) but not a record of any table.
  append(dir / "journal", daemon::state_records::encode(json::parse(R"({"table":"networks"})")));
  {
    daemon::Store s(dir.path());
    s.put(network("n2", "two"));
  }
  // A damaged record in the snapshot costs that record only.
  std::string snap = read_text(dir / "snapshot");
  const auto at = snap.find("\"one\"");
  REQUIRE(at != std::string::npos);
  snap[at + 1] = 'O';
  write_text(dir / "snapshot", snap);
  LogCapture log;
  daemon::Store s(dir.path());
  CHECK(s.find_network("n1") == nullptr);
  CHECK(s.find_network("n2") != nullptr);
  INFO(log.all());
  CHECK(log.matching({"dropped from " + dir / "snapshot", "checksum mismatch"}).size() == 1);
}

TEST_CASE("store: garbage in the journal of the previous start is reported per line", "[store]") {
  TempDir dir;
  { daemon::Store s(dir.path()); }
  append(dir / "journal", "garbage\n");
  namespace json = boost::json;
  append(dir / "journal", daemon::state_records::encode(json::parse(R"({"table":"networks"})")));
  LogCapture log;
  daemon::Store s(dir.path());
  INFO(log.all());
  CHECK(log.matching({"dropped from " + dir / "journal", "line 2: not a record"}).size() == 1);
  CHECK(log.matching({"dropped from " + dir / "journal", "line 3: "}).size() == 1);
}

TEST_CASE("store: a record with a number beyond a double's range is dropped, not loaded", "[store]") {
  // Boost.JSON reads 1e999 as infinity and writes it back as "Infinity"
  // (not JSON): loaded, it would make the next snapshot line unreadable.
  // Framed with a valid checksum, as a bad sector under the checksum can't.
  const std::string body = R"({"table":"networks","key":"n1","deleted_at":1e999})";
  const std::string line = daemon::state_records::encode(boost::json::parse(R"({"table":"networks"})"));
  std::string text = std::string(daemon::state_records::kJournalHeader) + "\n";
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", daemon::state_records::crc32c(body));
  text += std::string(crc) + " " + body + "\n" + line;
  const auto c = daemon::state_records::read(text, daemon::state_records::kJournalHeader);
  REQUIRE(c.dropped.size() == 1);
  CHECK(c.dropped[0].line == 2);
  CHECK(c.dropped[0].reason == "checksum matches but the record is not JSON: a number out of range");
  CHECK(c.records.size() == 1);  // the control: the well-formed line after it loads
}

TEST_CASE("store: a compaction that fails leaves the journal in use", "[store]") {
  TempDir dir;
  daemon::Store s(dir.path());
  s.put(network("n1", "one"));
  // The new journal cannot be created: its temp name is taken by a directory.
  std::filesystem::create_directory(dir / "journal.tmp");
  CHECK_FALSE(s.compact());
  s.put(network("n2", "two"));  // the old journal still takes writes
  CHECK(s.journal_length() == 2);
  {
    // A start that cannot compact still starts, with everything.
    daemon::Store again(dir.path());
    CHECK(again.find_network("n1") != nullptr);
    CHECK(again.find_network("n2") != nullptr);
    again.put(network("n3", "three"));
  }
  std::filesystem::remove(dir / "journal.tmp");
  daemon::Store last(dir.path());
  CHECK(last.find_network("n1") != nullptr);
  CHECK(last.find_network("n2") != nullptr);
  CHECK(last.find_network("n3") != nullptr);
  CHECK(last.journal_length() == 0);
}

TEST_CASE("store: a state file that exists but cannot be read stops the start", "[store]") {
  TempDir dir;
  { daemon::Store s(dir.path()); }
  // Starting without it would hand its addresses out again.
  std::filesystem::remove(dir / "snapshot");
  std::filesystem::create_directory(dir / "snapshot");
  try {
    daemon::Store s(dir.path());
    FAIL("started without its snapshot");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("cannot read " + dir / "snapshot") != std::string::npos);
  }
}

TEST_CASE("store: Lamport values above the bound are refused and the clock never wraps", "[store][replication]") {
  namespace json = boost::json;
  TempDir dir;
  auto line = [](uint64_t lamport, const std::string& key) {
    return json::value{{"table", "networks"},
                       {"key", key},
                       {"version", {{"lamport", lamport}, {"node", "ffffffffffffffffffffffffffffffff"}}},
                       {"deleted", false},
                       {"value", daemon::to_json(network(key, key))}};
  };
  {
    daemon::Store s(dir.path());
    CHECK_THROWS_AS(s.merge({line(UINT64_MAX, "evil")}), Error);
    CHECK(s.find_network("evil") == nullptr);
    CHECK(s.put(network("n1", "one")).lamport == 1);  // not wrapped to 0

    // At the bound itself the value is taken, and the next local write is
    // refused rather than wrapping.
    CHECK(s.merge({line(daemon::Store::kMaxLamport, "high")}) == 1);
    CHECK_THROWS_AS(s.put(network("n2", "two")), Error);
    CHECK(s.find_network("n2") == nullptr);
  }
  // A loaded record above the bound (its checksum fine) is dropped and logged.
  append(dir / "journal", daemon::state_records::encode(line(uint64_t{1} << 63, "loaded")));
  LogCapture log;
  daemon::Store s(dir.path());
  CHECK(s.find_network("loaded") == nullptr);
  CHECK(s.find_network("n1") != nullptr);
  INFO(log.all());
  CHECK(log.matching({"dropped from", "above the bound"}).size() == 1);
}

TEST_CASE("store: merging another node's entries, last writer wins", "[store][replication]") {
  TempDir dir_a, dir_b;
  daemon::Store a(dir_a.path());
  daemon::Store b(dir_b.path());
  std::vector<std::string> seen_by_b;
  auto seen = b.feed().subscribe(daemon::Stage::observers, [&](const daemon::Change& c) {
    if (!c.local) seen_by_b.push_back(std::string(daemon::table_name(c.table)) + ":" + c.key);  // merged, not written here
  });
  std::vector<daemon::Store::Line> broadcast;
  auto sent = a.feed().subscribe(daemon::Stage::replication, [&](const daemon::Change& c) {
    if (c.local) broadcast.push_back(*c.local);
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

namespace {
// Two nodes' stores: what `a` writes is in `lines`, as its broadcasts carry
// it, for `b` to merge.
struct TwoStores {
  TempDir dir_a, dir_b;
  daemon::Store a{dir_a.path()};
  daemon::Store b{dir_b.path()};
  std::vector<daemon::Store::Line> lines;
  daemon::ChangeFeed::Subscription sent = a.feed().subscribe(daemon::Stage::replication, [this](const daemon::Change& c) {
    if (c.local) lines.push_back(*c.local);
  });
};
}  // namespace

TEST_CASE("store: a malformed batch is refused whole", "[store][replication]") {
  TwoStores two;
  daemon::Store& a = two.a;
  daemon::Store& b = two.b;
  const auto& lines = two.lines;
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

TEST_CASE("store: an endpoint line whose key is not made of its record's network, node, container and interface "
          "is refused",
          "[store][replication]") {
  // The endpoints of a network and of a node are read from the keys
  // (ReadModel's EndpointKeys): a key that says otherwise than its record
  // would hide the endpoint from them while the other indexes held it.
  namespace json = boost::json;
  TwoStores two;
  daemon::Store& a = two.a;
  daemon::Store& b = two.b;
  const auto& lines = two.lines;
  daemon::EndpointRecord e;
  e.id = "e1";
  e.network_id = "n1";
  e.node = a.node_id();
  e.container_id = "c1";
  e.ifname = "eth0";
  e.ip = Ipv4Address::parse("10.1.0.2");
  a.put(e);
  REQUIRE(lines.size() == 1);
  const std::string key = daemon::endpoint_key("n1", a.node_id(), "c1", "eth0");
  json::value moved = lines[0];
  moved.as_object()["key"] = daemon::endpoint_key("n2", a.node_id(), "c1", "eth0");  // another network's key
  json::value other_node = lines[0];
  other_node.as_object()["value"].as_object()["node"] = "someone-else";
  for (const auto& bad : {moved, other_node}) {
    INFO(json::serialize(bad));
    CHECK_THROWS_AS(b.merge({bad}), Error);
    CHECK(b.endpoints().empty());
  }
  // The control: the line as written is taken, and found by its network and node.
  CHECK(b.merge({lines[0]}) == 1);
  CHECK(b.find_endpoint(key) != nullptr);
  CHECK(b.index().endpoints_on_network("n1").copy() == std::set<std::string>{key});
  CHECK(b.index().endpoints_of_node(a.node_id()).copy() == std::set<std::string>{key});
}

namespace {
// Thousands of fdatasyncs: on a tmpfs of its own when root (as in CI),
// where they cost nothing, else on disk (about 30 s).
class ManyWritesDir {
 public:
  ManyWritesDir() {
    if (swarmnet::testing::Tmpfs::can_mount()) tmpfs_.emplace(64 << 20);
  }
  std::string operator/(const std::string& name) const { return tmpfs_ ? *tmpfs_ / name : temp_ / name; }

 private:
  TempDir temp_;
  std::optional<swarmnet::testing::Tmpfs> tmpfs_;
};

// A crash at this moment, as the next start finds the directory: the state
// files copied now. (Only the child may act meanwhile, and its one visible
// step, the snapshot's rename, is atomic: the snapshot is copied first, so a
// rename in between gives the old snapshot with both journals, which is a
// state a crash can leave too.)
std::string crash_image(const ManyWritesDir& dir, const std::string& name) {
  const std::string image = dir / name;
  std::filesystem::create_directory(image);
  for (const char* file : {"node-id", "snapshot", "journal", "journal.next"}) {
    std::error_code ec;
    std::filesystem::copy_file(dir / ("state/" + std::string(file)), image + "/" + file, ec);
  }
  return image;
}
}  // namespace

TEST_CASE("store: a compaction runs beside the changes, and a crash at any step of it loses none",
          "[store]") {
  ManyWritesDir dir;
  const std::string state = dir / "state";
  std::optional<daemon::Store> s(std::in_place, state);
  std::vector<std::string> acknowledged;
  auto put = [&](const std::string& id) {
    s->put(network(id, "name-" + id));
    acknowledged.push_back(id);
  };
  int i = 0;
  while (i < 10000) {
    put("n" + std::to_string(i++));
    if (s->journal_length() == 0) break;  // that change reached the journal's length
  }
  REQUIRE(i < 10000);
  // The change that reached it did not write the snapshot: a child does,
  // and changes go to journal.next meanwhile (without a child, the snapshot
  // was written in place and journal.next never exists).
  CHECK(std::filesystem::exists(state + "/journal.next"));
  const std::vector<std::string> at_start = acknowledged;
  const std::string started = crash_image(dir, "started");
  for (int k = 0; k < 20; ++k) put("m" + std::to_string(k));
  const std::vector<std::string> during = acknowledged;
  const std::string later = crash_image(dir, "later");
  // Finished by a poll (the daemon's timer) without any change.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (s->poll_compaction() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK_FALSE(s->poll_compaction());
  CHECK_FALSE(std::filesystem::exists(state + "/journal.next"));
  CHECK(s->journal_length() == 20);  // the journal now holds only what came after
  const std::string finished = crash_image(dir, "finished");
  for (int k = 0; k < 5; ++k) put("p" + std::to_string(k));
  s.reset();

  auto holds = [](const std::string& path, const std::vector<std::string>& ids) {
    LogCapture log;
    daemon::Store back(path);
    INFO(path << ": " << log.all());
    CHECK(back.networks().size() == ids.size());
    for (const auto& id : ids) CHECK(back.find_network(id) != nullptr);
    CHECK(log.matching({"dropped"}).empty());
    CHECK(back.journal_length() == 0);  // compacted at start
    CHECK_FALSE(std::filesystem::exists(path + "/journal.next"));
  };
  holds(started, at_start);
  holds(later, during);
  holds(finished, during);
  holds(state, acknowledged);
}

TEST_CASE("store: the journal grows as long as the store before a compaction, so its cost per change stays flat",
          "[store]") {
  ManyWritesDir dir;
  std::optional<daemon::Store> s(std::in_place, dir / "state");
  int i = 0;
  // Until a change starts a compaction (the journal begins anew); then
  // until the child is done.
  auto until_compaction = [&] {
    const int first = i;
    while (i - first <= 20000) {
      s->put(network("n" + std::to_string(i++), "x"));
      if (s->journal_length() == 0) break;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (s->poll_compaction() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE_FALSE(s->poll_compaction());  // the child finished
    return i - first;
  };
  // A small store: after 4,096 lines (the control: the fixed length).
  CHECK(until_compaction() == 4096);
  CHECK(until_compaction() == 4096);  // begun at 4,096 entries
  // Now 8,192 entries: the next after as many lines, not 4,096.
  CHECK(s->compaction_length() == 8192);
  CHECK(until_compaction() == 8192);
  CHECK(s->compaction_length() == 16384);
  // A start compacts in place: the same length follows from the tables read.
  for (int k = 0; k < 10; ++k) s->put(network("n" + std::to_string(i++), "x"));
  s.reset();
  s.emplace(dir / "state");
  CHECK(s->networks().size() == 16394);
  CHECK(s->compaction_length() == 16394);
}

namespace {
daemon::EndpointRecord endpoint_of(const daemon::Store& s, int i) {
  daemon::EndpointRecord e;
  e.id = "e" + std::to_string(i);
  e.network_id = "net";
  e.node = s.node_id();
  e.container_id = "c" + std::to_string(i);
  e.ifname = "eth0";
  e.ip = Ipv4Address::parse("10.1.0." + std::to_string(i % 250 + 2));
  return e;
}
const daemon::EndpointRecord* find(const daemon::Store& s, const daemon::EndpointRecord& e) {
  return s.find_endpoint(daemon::endpoint_key(e.network_id, e.node, e.container_id, e.ifname));
}
}  // namespace

TEST_CASE("store: a record put unsynced is in the journal at once, and durable after a sync, a synced write or a "
          "compaction",
          "[store]") {
  ManyWritesDir dir;
  std::optional<daemon::Store> s(std::in_place, dir / "state");
  s->put(network("n0", "x"));
  CHECK_FALSE(s->journal_unsynced());  // the control: a write synced before it returns
  const auto e1 = endpoint_of(*s, 1);
  s->put_unsynced(e1);
  CHECK(s->journal_unsynced());
  REQUIRE(find(*s, e1));
  // A daemon killed now keeps it: the record is in the file (only a crash
  // of the machine before the sync could lose it).
  {
    daemon::Store back(crash_image(dir, "killed"));
    CHECK(find(back, e1));
  }
  s->sync_journal();
  CHECK_FALSE(s->journal_unsynced());

  // The next synced write's fdatasync covers it (the same file).
  s->put_unsynced(endpoint_of(*s, 2));
  s->put(network("n1", "x"));
  CHECK_FALSE(s->journal_unsynced());
  // So does a compaction in place: the snapshot holds it.
  s->put_unsynced(endpoint_of(*s, 3));
  REQUIRE(s->compact());
  CHECK_FALSE(s->journal_unsynced());

  // An unsynced write that starts a background compaction: the journal it
  // went to is synced before the next one replaces it.
  int i = 10;
  while (i < 20000) {
    s->put_unsynced(endpoint_of(*s, i++));
    if (s->journal_length() == 0) break;
  }
  REQUIRE(i < 20000);
  CHECK_FALSE(s->journal_unsynced());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (s->poll_compaction() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto last = endpoint_of(*s, i);
  s->put_unsynced(last);
  CHECK(s->journal_unsynced());
  s.reset();  // synced at exit
  daemon::Store back(dir / "state");
  CHECK(find(back, e1));
  CHECK(find(back, last));
  CHECK(back.endpoints().size() == static_cast<size_t>(i - 10 + 4));
}

namespace {
int failing_datasync(int) {
  errno = EIO;
  return -1;
}
// Fails once, then works: what errseq makes of a failed writeback (the next
// fdatasync of the file says nothing of it).
int fail_once_count = 0;
int fail_once_datasync(int fd) {
  if (fail_once_count++ == 0) return failing_datasync(fd);
  return ::fdatasync(fd);
}
}  // namespace

TEST_CASE("store: once an fdatasync failed after an unsynced record, syncing writes the state afresh", "[store]") {
  TempDir dir;
  std::optional<daemon::Store> s(std::in_place, dir.path());
  s->put(network("n0", "x"));
  const auto e1 = endpoint_of(*s, 1);
  // e1 written unsynced, and the next fdatasync of the journal fails.
  auto unsynced_then_failing_sync = [&] {
    s->put_unsynced(e1);
    fail_once_count = 0;
    s->fail_syncs_for_tests(fail_once_datasync);
  };

  SECTION("the control: a sync that works is one fdatasync, the journal stays") {
    s->put_unsynced(e1);
    s->sync_journal();
    CHECK_FALSE(s->journal_unsynced());
    CHECK(s->journal_length() == 2);
  }
  SECTION("another write's fdatasync failed: the next one proves nothing, the state is written afresh") {
    unsynced_then_failing_sync();
    CHECK_THROWS_WITH(s->put(network("n1", "x")), Catch::Contains("fdatasync"));
    // The refused write's cut-back synced fine, and so would the next
    // fdatasync: none may count for e1.
    CHECK(s->journal_unsynced());
    s->sync_journal();
    CHECK_FALSE(s->journal_unsynced());
    CHECK(s->journal_length() == 0);  // a compaction in place
  }
  SECTION("its own fdatasync failed: written afresh, no error") {
    unsynced_then_failing_sync();
    s->sync_journal();
    CHECK_FALSE(s->journal_unsynced());
    CHECK(s->journal_length() == 0);
  }
  SECTION("writing afresh fails too: an error, and the next sync tries again") {
    s->put_unsynced(e1);
    s->fail_syncs_for_tests(failing_datasync);
    CHECK_THROWS_WITH(s->sync_journal(), Catch::Contains("try again when the disk works"));
    CHECK(s->journal_unsynced());
    s->fail_syncs_for_tests(nullptr);
    s->sync_journal();
    CHECK_FALSE(s->journal_unsynced());
    CHECK(s->journal_length() == 0);
  }
  SECTION("the next write to a journal that may have lost records goes to a new one") {
    unsynced_then_failing_sync();
    CHECK_THROWS(s->put(network("n1", "x")));
    s->put(network("n2", "x"));
    CHECK(s->journal_length() == 1);  // n2 alone, after a compaction in place
    CHECK_FALSE(s->journal_unsynced());
  }
  s->fail_syncs_for_tests(nullptr);
  s.reset();
  daemon::Store back(dir.path());
  CHECK(find(back, e1));
}

TEST_CASE("store: a background compaction whose journal cannot be synced first writes the state afresh", "[store]") {
  ManyWritesDir dir;
  std::optional<daemon::Store> s(std::in_place, dir / "state");
  // Every fdatasync fails: the one before the journal is handed over, and
  // the one of a compaction in place.
  s->fail_syncs_for_tests(failing_datasync);
  const size_t at = s->compaction_length();
  int i = 0;
  while (s->journal_length() < at) s->put_unsynced(endpoint_of(*s, i++));
  CHECK(s->journal_length() == at);  // not handed over: the journal in use stays
  CHECK(s->journal_unsynced());
  // The disk works again: the records of that journal are not taken as on
  // the disk after a plain fdatasync, the state is written afresh.
  s->fail_syncs_for_tests(nullptr);
  s->sync_journal();
  CHECK_FALSE(s->journal_unsynced());
  CHECK(s->journal_length() == 0);
  s.reset();
  daemon::Store back(dir / "state");
  CHECK(back.endpoints().size() == static_cast<size_t>(i));
}

TEST_CASE("store: a compaction whose snapshot cannot be written leaves every change readable",
          "[store]") {
  ManyWritesDir dir;
  const std::string state = dir / "state";
  std::vector<std::string> acknowledged;
  {
    daemon::Store s(state);
    // The snapshot cannot be written: its temp name is taken by a directory.
    std::filesystem::create_directory(state + "/snapshot.tmp");
    LogCapture log;
    int i = 0;
    while (i < 10000) {
      s.put(network("n" + std::to_string(i), "x"));
      acknowledged.push_back("n" + std::to_string(i++));
      if (s.journal_length() == 0) break;
    }
    REQUIRE(i < 10000);
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (s.poll_compaction() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    INFO(log.all());
    CHECK(log.matching({"error", "cannot compact", "snapshot.tmp"}).size() == 1);
    // Changes go on, in journal.next; a start now reads both journals.
    s.put(network("after", "x"));
    acknowledged.push_back("after");
    CHECK(std::filesystem::exists(state + "/journal.next"));
    {
      const std::string image = crash_image(dir, "image");
      daemon::Store back(image);
      CHECK(back.networks().size() == acknowledged.size());
      CHECK(back.find_network("n0") != nullptr);
      CHECK(back.find_network("after") != nullptr);
    }
    std::filesystem::remove(state + "/snapshot.tmp");
    // The next try, a few changes later, compacts in place: both journals go.
    for (int k = 0; k < 300 && std::filesystem::exists(state + "/journal.next"); ++k) {
      s.put(network("retry" + std::to_string(k), "x"));
      acknowledged.push_back("retry" + std::to_string(k));
    }
    CHECK_FALSE(std::filesystem::exists(state + "/journal.next"));
    CHECK(s.journal_length() == 0);
  }
  LogCapture log;
  daemon::Store back(state);
  INFO(log.all());
  CHECK(back.networks().size() == acknowledged.size());
  for (const auto& id : acknowledged) CHECK(back.find_network(id) != nullptr);
  CHECK(log.matching({"dropped"}).empty());
}
