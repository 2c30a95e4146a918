// The store on a full disk, for real: its state directory on a small tmpfs
// that a ballast file fills (root needed, as in CI). A write that does not
// fit fails with a clear error and leaves the journal exactly as it was;
// once there is room the store goes on; a store started on a full disk (as
// after a SIGKILL there) starts with everything it had acknowledged.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "daemon/store.hpp"
#include "support/log_capture.hpp"
#include "support/tmpfs.hpp"

using namespace swarmnet;
using swarmnet::testing::LogCapture;
using swarmnet::testing::Tmpfs;

namespace {

constexpr size_t kDiskBytes = 256 * 1024;

// About 1.2 KB on disk (a long label), so a few fill a page.
daemon::EndpointRecord endpoint(int i) {
  daemon::EndpointRecord e;
  e.id = "e" + std::to_string(i);
  e.network_id = "net";
  e.node = "ffffffffffffffffffffffffffffffff";
  e.container_id = "container" + std::to_string(i);
  e.ifname = "eth0";
  e.ip = Ipv4Address::parse("10.9.0." + std::to_string(i % 250 + 2));
  e.attach = false;
  e.labels["note"] = std::string(1000, 'a' + i % 26);
  return e;
}

std::string key_of(const daemon::EndpointRecord& e) {
  return daemon::endpoint_key(e.network_id, e.node, e.container_id, e.ifname);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool every_line_whole(const std::string& text) { return text.empty() || text.back() == '\n'; }

}  // namespace

TEST_CASE("store: a full disk refuses a write cleanly and the store goes on when there is room",
          "[store][disk]") {
  if (!Tmpfs::can_mount()) {
    WARN("not root: no tmpfs can be mounted, the full-disk test did not run");
    return;
  }
  Tmpfs disk(kDiskBytes);
  const std::string state = disk / "state";
  const std::string journal = state + "/journal";
  std::vector<std::string> acknowledged;
  {
    daemon::Store s(state);
    disk.fill("ballast");
    int i = 0;
    std::optional<daemon::EndpointRecord> refused;
    for (; i < 100 && !refused; ++i) {
      const auto e = endpoint(i);
      const auto size_before = std::filesystem::file_size(journal);
      try {
        s.put(e);
        acknowledged.push_back(key_of(e));
      } catch (const Error& err) {
        refused = e;
        INFO(err.what());
        CHECK(err.code() == Errc::unavailable);  // CNI code 11: try again later
        CHECK(std::string(err.what()).find("No space left on device") != std::string::npos);
        CHECK(std::string(err.what()).find(state) != std::string::npos);
        // Cut back to where the append began (tmpfs wrote part of it).
        CHECK(std::filesystem::file_size(journal) == size_before);
        CHECK(every_line_whole(read_text(journal)));
        CHECK(s.find_endpoint(key_of(e)) == nullptr);
        // Refused again while the disk is full, still cleanly.
        CHECK_THROWS_AS(s.put(e), Error);
        CHECK(std::filesystem::file_size(journal) == size_before);
      }
    }
    REQUIRE(refused);
    REQUIRE(!acknowledged.empty());  // the journal's last page took some first

    std::filesystem::remove(disk / "ballast");
    const auto v = s.put(*refused);
    acknowledged.push_back(key_of(*refused));
    for (int j = 0; j < 5; ++j, ++i) {
      s.put(endpoint(i));
      acknowledged.push_back(key_of(endpoint(i)));
    }
    // The refused writes left no gap in the clock.
    CHECK(v.lamport == acknowledged.size() - 5);
  }
  LogCapture log;
  daemon::Store s(state);
  for (const auto& k : acknowledged) CHECK(s.find_endpoint(k) != nullptr);
  CHECK(s.endpoints().size() == acknowledged.size());
  INFO(log.all());
  CHECK(log.matching({"dropped"}).empty());
  CHECK(log.matching({"torn"}).empty());
}

TEST_CASE("store: a store killed mid-write on a full disk starts on the full disk", "[store][disk]") {
  if (!Tmpfs::can_mount()) {
    WARN("not root: no tmpfs can be mounted, the full-disk test did not run");
    return;
  }
  Tmpfs disk(kDiskBytes);
  const std::string state = disk / "state";
  std::vector<std::string> acknowledged;
  {
    daemon::Store s(state);
    for (int i = 0; i < 3; ++i) {
      s.put(endpoint(i));
      acknowledged.push_back(key_of(endpoint(i)));
    }
  }
  // The kill came in the middle of the next append: half a record, then the
  // disk filled up.
  std::ofstream(state + "/journal", std::ios::app) << "0badc0de {\"table\":\"endpoints\",\"key\":\"net/";
  disk.fill("ballast");

  LogCapture log;
  std::optional<daemon::Store> s;
  REQUIRE_NOTHROW(s.emplace(state));  // no snapshot fits: it goes on with the journal
  INFO(log.all());
  for (const auto& k : acknowledged) CHECK(s->find_endpoint(k) != nullptr);
  CHECK(log.matching({"warn", "torn last line"}).size() == 1);
  CHECK(log.matching({"error", "cannot compact", "No space left on device"}).size() == 1);
  // The failed compaction gave its space back.
  CHECK_FALSE(std::filesystem::exists(state + "/snapshot.tmp"));
  CHECK_FALSE(std::filesystem::exists(state + "/journal.tmp"));

  std::filesystem::remove(disk / "ballast");
  s->put(endpoint(3));
  acknowledged.push_back(key_of(endpoint(3)));
  s.reset();

  LogCapture again;
  daemon::Store last(state);
  for (const auto& k : acknowledged) CHECK(last.find_endpoint(k) != nullptr);
  INFO(again.all());
  // The torn half was cut off before the write: nothing glued to it.
  CHECK(again.matching({"dropped"}).empty());
  CHECK(again.matching({"torn"}).empty());
  CHECK(last.journal_length() == 0);  // compacted, now that it fits
}

TEST_CASE("store: a merged batch that does not fit on the disk is not applied", "[store][disk][replication]") {
  if (!Tmpfs::can_mount()) {
    WARN("not root: no tmpfs can be mounted, the full-disk test did not run");
    return;
  }
  Tmpfs disk(kDiskBytes);
  daemon::Store peer(disk / "peer");
  std::vector<daemon::Store::Line> broadcast;
  auto sent = peer.feed().subscribe(daemon::Stage::replication, [&](const daemon::Change& c) {
    if (c.local) broadcast.push_back(*c.local);
  });
  for (int i = 0; i < 8; ++i) peer.put(endpoint(i));  // about 10 KB: more than a page

  daemon::Store s(disk / "state");
  size_t notified = 0;
  auto counted = s.feed().subscribe(daemon::Stage::observers, [&](const daemon::Change&) { ++notified; });
  const auto journal = disk / "state/journal";
  const auto size_before = std::filesystem::file_size(journal);
  disk.fill("ballast");
  try {
    s.merge(broadcast);
    FAIL("a batch of 10 KB was journaled on a full disk");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::unavailable);
  }
  CHECK(s.endpoints().empty());
  CHECK(notified == 0);
  CHECK(std::filesystem::file_size(journal) == size_before);

  // Control: the same batch once there is room (push/pull brings it again).
  std::filesystem::remove(disk / "ballast");
  CHECK(s.merge(broadcast) == 8);
  CHECK(s.endpoints().size() == 8);
  CHECK(notified == 8);
}
