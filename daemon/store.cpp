#include "daemon/store.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <mutex>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/random.hpp"
#include "daemon/state_records.hpp"

namespace swarmnet::daemon {

namespace fs = std::filesystem;
namespace records = state_records;

namespace {

constexpr int kLegacySnapshotFormat = 1;
// The journal's length that starts a compaction: this many lines, or as
// many as the store has entries if that is more. A snapshot costs O(the
// store) (a fork, about 80 ms of encoding at 10,000 endpoints, the copies
// of the pages the daemon writes meanwhile): after a fixed number of lines
// its cost per change grew with the store; in proportion, it stays flat.
// (At 10,000 tasks the difference does not show in change_cost's p99,
// bench/README.) The price: tombstones, reaped only by a compaction, may
// wait that much longer past their lifetime.
constexpr size_t kCompactAfterLines = 4096;
// After a failed compaction (a full disk), how many more journal lines
// before the next try: not one snapshot write per change.
constexpr size_t kCompactRetryLines = 256;
// Where changes go while a background compaction writes the snapshot of
// everything before them.
constexpr const char* kNextJournal = "journal.next";

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void pwrite_all(int fd, const std::string& data, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::unavailable, "writing " + path, errno);
    }
    done += static_cast<size_t>(n);
  }
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno(Errc::unavailable, "opening " + dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw_errno(Errc::unavailable, "fsync of " + dir, err);
}

// A snapshot's clock; above the bound it is dropped (the entries' own
// versions still set the clock).
uint64_t read_clock(const json::object& o, std::vector<std::string>& dropped) {
  const uint64_t lamport = json_fields::optional_uint(o, "lamport", UINT64_MAX).value_or(0);
  if (lamport <= Store::kMaxLamport) return lamport;
  dropped.push_back("its Lamport clock " + std::to_string(lamport) + " is above the bound 2^62");
  return 0;
}

template <class T>
json::object entry_line(const char* table, const std::string& key, const Entry<T>& e, bool with_value,
                        json::storage_ptr sp = {}) {
  json::object line({{"table", table},
                     {"key", key},
                     {"version", to_json(e.version, sp)},
                     {"deleted", e.deleted},
                     {"deleted_at", e.deleted_at}},
                    sp);
  if (!with_value) return line;
  if constexpr (std::is_same_v<T, EndpointRecord>) {
    line["value"] = to_json(e.value, sp);
  } else {
    line["value"] = to_json(e.value);
  }
  return line;
}

}  // namespace

Store::Store(std::string state_dir, int64_t tombstone_seconds)
    : dir_(std::move(state_dir)), tombstone_seconds_(tombstone_seconds), compact_at_(kCompactAfterLines) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(Errc::internal, "cannot create state directory " + dir_ + ": " + ec.message());
  ::chmod(dir_.c_str(), 0700);

  const std::string id_path = dir_ + "/node-id";
  if (auto id = read_file(id_path)) {
    node_id_ = *id;
    while (!node_id_.empty() && (node_id_.back() == '\n' || node_id_.back() == ' ')) node_id_.pop_back();
    if (node_id_.size() != 32) throw Error(Errc::internal, id_path + " does not hold a node id");
  } else {
    node_id_ = random_hex(16);
    write_file_atomically(dir_, "node-id", node_id_ + "\n");
    spdlog::info("new node id {} in {}", node_id_, dir_);
  }

  // Left by a compaction that a crash or a full disk interrupted; never read.
  for (const char* name : {"snapshot.tmp", "journal.tmp", "state.json.tmp"}) {
    ::unlink((dir_ + "/" + name).c_str());
  }
  index_ = ReadModel(node_id_, endpoints_);
  load();
  // On a full disk the compaction fails: the daemon starts anyway and goes
  // on with the journal it has (a daemon that cannot start is worse).
  if (!compact()) reopen_journal();
}

Store::~Store() {
  finish_compaction(true);
  if (journal_suspect_) {
    compact();  // logs a failure
  } else if (journal_unsynced_) {
    if (auto err = datasync_journal()) {
      spdlog::error("state: fdatasync {}/{} at exit: {}", dir_, journal_name_, std::strerror(*err));
    }
  }
  if (journal_fd_ >= 0) ::close(journal_fd_);
}

// ---- Loading ----

// The file's content, nullopt if there is none. A file that exists but
// cannot be read stops the start: going on without it would hand out its
// addresses again.
std::optional<std::string> Store::read_state_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec) && !ec) return std::nullopt;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno(Errc::internal, "cannot read " + path, errno);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw_errno(Errc::internal, "cannot read " + path, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

void Store::load() {
  const std::string snapshot = dir_ + "/snapshot";
  const std::string legacy = dir_ + "/state.json";
  if (auto text = read_state_file(snapshot)) {
    load_snapshot(snapshot, *text);
  } else if (auto old = read_state_file(legacy)) {
    load_legacy_snapshot(legacy, *old);
  }
  const std::string journal = dir_ + "/journal";
  if (auto text = read_state_file(journal)) load_journal(journal, *text);
  // A background compaction's continuation: the changes after the point the
  // snapshot it was writing stops at (whether or not it got to finish).
  const std::string next = dir_ + "/" + kNextJournal;
  if (auto text = read_state_file(next)) {
    load_journal(next, *text);
    journal_name_ = kNextJournal;
  }
}

void Store::load_snapshot(const std::string& path, const std::string& text) {
  auto contents = records::read(text, records::kSnapshotHeader);
  std::vector<std::string> dropped;
  for (const auto& d : contents.dropped) dropped.push_back("line " + std::to_string(d.line) + ": " + d.reason);
  if (contents.torn_tail) {
    dropped.push_back("line " + std::to_string(contents.torn_tail->line) + ": " + contents.torn_tail->reason);
  }
  std::optional<uint64_t> announced;
  size_t entries = 0;
  for (const auto& r : contents.records) {
    // The one record without a table is the snapshot's own: clock and size.
    if (r.value.is_object() && !r.value.as_object().contains("table")) {
      try {
        const auto& o = r.value.as_object();
        announced = json_fields::optional_uint(o, "entries", UINT64_MAX);
        lamport_ = std::max(lamport_, read_clock(o, dropped));
      } catch (const std::exception& e) {
        dropped.push_back("line " + std::to_string(r.line) + ": " + e.what());
      }
      continue;
    }
    ++entries;
    apply_loaded(r.value, r.line, dropped);
  }
  report_dropped(path, dropped);
  if (announced && *announced != entries) {
    spdlog::error("state: {} holds {} readable entries of the {} it was written with", path, entries, *announced);
  }
}

// Format 1 (before the checksums): one JSON document; a row that does not
// decode is dropped, a document that does not parse is dropped whole.
void Store::load_legacy_snapshot(const std::string& path, const std::string& text) {
  std::vector<std::string> dropped;
  try {
    json::value v = json_fields::parse(text, path);
    const auto& o = json_fields::as_object(v, "snapshot");
    auto format = json_fields::optional_uint(o, "format", 1000).value_or(0);
    if (format != kLegacySnapshotFormat) {
      throw Error(Errc::internal, "unknown snapshot format " + std::to_string(format));
    }
    lamport_ = read_clock(o, dropped);
    const auto& tables = json_fields::as_object(o.at("tables"), "tables");
    for (const auto& [name, rows] : tables) {
      if (!rows.is_array()) {
        dropped.push_back("table " + std::string(name) + ": not an array");
        continue;
      }
      size_t index = 0;
      for (const auto& row : rows.get_array()) {
        try {
          json::object line = json_fields::as_object(row, "row");
          line["table"] = name;
          apply_line(line);
        } catch (const std::exception& e) {
          dropped.push_back("table " + std::string(name) + " row " + std::to_string(index) + ": " + e.what());
        }
        ++index;
      }
    }
  } catch (const std::exception& e) {
    dropped.push_back(std::string("the whole file: ") + e.what());
  }
  report_dropped(path, dropped);
}

void Store::load_journal(const std::string& path, const std::string& text) {
  auto contents = records::read(text, records::kJournalHeader);
  std::vector<std::string> dropped;
  for (const auto& d : contents.dropped) dropped.push_back("line " + std::to_string(d.line) + ": " + d.reason);
  for (const auto& r : contents.records) apply_loaded(r.value, r.line, dropped);
  if (contents.torn_tail) {
    // An append cut short (power loss, full disk): it was never acknowledged.
    spdlog::warn("state: ignoring the torn last line {} of {}: {}", contents.torn_tail->line, path,
                 contents.torn_tail->reason);
  }
  loaded_journal_size_ = contents.intact_size;
  report_dropped(path, dropped);
}

void Store::apply_loaded(const json::value& record, size_t line, std::vector<std::string>& dropped) {
  try {
    apply_line(record);
  } catch (const std::exception& e) {
    dropped.push_back("line " + std::to_string(line) + ": " + e.what());
  }
}

// Logs each dropped record and keeps the damaged file under another name (a
// hard link: no space needed), since the compaction that follows replaces it.
void Store::report_dropped(const std::string& path, const std::vector<std::string>& dropped) {
  if (dropped.empty()) return;
  for (const auto& d : dropped) spdlog::error("state: dropped from {} {}", path, d);
  const std::string copy = path + ".damaged-" + std::to_string(now_seconds());
  if (::link(path.c_str(), copy.c_str()) == 0) {
    spdlog::error("state: {} record(s) of {} dropped; the damaged file is kept as {}", dropped.size(), path, copy);
  } else {
    spdlog::error("state: {} record(s) of {} dropped", dropped.size(), path);
  }
}

void Store::apply_line(const json::value& jv) { apply_if_newer(jv, false); }

template <class F>
decltype(auto) Store::with_table(const std::string& table, F&& f) {
  if (table == "networks") return f(networks_);
  if (table == "blocks") return f(blocks_);
  if (table == "endpoints") return f(endpoints_);
  if (table == "cursors") return f(cursors_);
  if (table == "services") return f(services_);
  throw Error(Errc::invalid_argument, "unknown table \"" + table + "\"");
}

namespace {

struct LineHead {
  std::string table;
  std::string key;
  Version version;
  bool deleted = false;
  int64_t deleted_at = 0;
};

LineHead read_head(const json::value& jv) {
  const auto& o = json_fields::as_object(jv, "journal entry");
  LineHead h;
  h.table = json_fields::required_string(o, "table");
  h.key = json_fields::required_string(o, "key");
  const json::value* version_value = json_fields::find(o, "version");
  if (!version_value) throw Error(Errc::invalid_argument, "missing field \"version\"");
  from_json(*version_value, h.version);
  if (h.version.lamport > Store::kMaxLamport) {
    throw Error(Errc::invalid_argument, "Lamport value " + std::to_string(h.version.lamport) +
                                            " of " + h.table + "/" + h.key +
                                            " is above the bound 2^62 (a corrupt or forged version)");
  }
  h.deleted = json_fields::bool_or(o, "deleted", false);
  h.deleted_at = static_cast<int64_t>(json_fields::optional_uint(o, "deleted_at", INT64_MAX).value_or(0));
  return h;
}

}  // namespace

// Decodes a line fully before touching anything, then applies it if its
// version beats the entry we hold. With validate_only nothing is applied.
bool Store::apply_if_newer(const json::value& jv, bool validate_only) {
  const LineHead h = read_head(jv);
  const auto& o = jv.as_object();
  return with_table(h.table, [&](auto& t) -> bool {
    using T = std::decay_t<decltype(t.begin()->second.value)>;
    T value{};
    if (!h.deleted) {
      const json::value* v = json_fields::find(o, "value");
      if (!v) throw Error(Errc::invalid_argument, "missing field \"value\"");
      from_json(*v, value);
      // An endpoint is found by its key's parts (ReadModel's EndpointKeys
      // read a network's and a node's from the key): a line whose key says
      // otherwise than its record is refused.
      if constexpr (std::is_same_v<T, EndpointRecord>) {
        if (h.key != endpoint_key(value.network_id, value.node, value.container_id, value.ifname)) {
          throw Error(Errc::invalid_argument, "endpoint key " + json::serialize(json::string(h.key)) +
                                                  " does not match its record (network, node, container, interface)");
        }
      }
    }
    if (validate_only) return false;
    lamport_ = std::max(lamport_, h.version.lamport);
    auto it = t.find(h.key);
    if (it != t.end() && !(h.version > it->second.version)) return false;  // ours is newer
    set_entry(t, h.key, h.version, h.deleted ? std::nullopt : std::optional<T>(std::move(value)), h.deleted_at);
    return true;
  });
}

std::optional<Version> Store::version_of(const std::string& table, const std::string& key) {
  return with_table(table, [&](auto& t) -> std::optional<Version> {
    auto it = t.find(key);
    if (it == t.end()) return std::nullopt;
    return it->second.version;
  });
}

// ---- Replication ----

size_t Store::merge(const std::vector<Line>& lines) {
  for (const auto& line : lines) {
    apply_if_newer(line, true);
    if (json_fields::required_string(line.as_object(), "table") == "cursors") {
      throw Error(Errc::invalid_argument, "cursors are local to a node and never merged");
    }
  }
  // Pick the winners without touching the tables (the journal first: if it
  // cannot be written, nothing is applied).
  std::map<std::pair<std::string, std::string>, Version> newest;
  std::vector<const Line*> winners;
  std::string batch;
  for (const auto& line : lines) {
    LineHead h = read_head(line);
    auto id = std::make_pair(h.table, h.key);
    auto it = newest.find(id);
    std::optional<Version> held = it != newest.end() ? std::optional(it->second) : version_of(h.table, h.key);
    if (held && !(h.version > *held)) continue;
    newest[id] = h.version;
    winners.push_back(&line);
    batch += records::encode(line);
  }
  if (winners.empty()) return 0;
  // One fdatasync for the whole batch: a push/pull brings thousands.
  append_journal(std::move(batch), winners.size());
  std::vector<std::pair<std::string, std::string>> changed;
  for (const Line* line : winners) {
    apply_if_newer(*line, false);
    const auto& o = line->as_object();
    changed.emplace_back(std::string(o.at("table").as_string()), std::string(o.at("key").as_string()));
  }
  for (const auto& [table, key] : changed) notify(table, key, nullptr);
  maybe_compact();
  return changed.size();
}

std::vector<Store::Line> Store::replicated_entries() const {
  std::vector<Line> out;
  auto add = [&](const char* name, const auto& t) {
    for (const auto& [key, e] : t) out.push_back(entry_line(name, key, e, !e.deleted));
  };
  add("networks", networks_);
  add("blocks", blocks_);
  add("endpoints", endpoints_);
  add("services", services_);
  return out;
}

void Store::append_replicated_lines(const std::function<void(std::string_view)>& append, size_t per_hold) const {
  per_hold = std::max<size_t>(per_hold, 1);
  bool first = true;
  json::serializer serializer;
  char buffer[4096];
  alignas(std::max_align_t) unsigned char arena_start[16384];
  auto add = [&](const char* name, const auto& t) {
    // Copies of a few entries are taken under the lock, and serialized
    // after it (several times longer), so a write waits for the copying of
    // at most per_hold entries.
    std::vector<std::pair<std::string, typename std::decay_t<decltype(t)>::mapped_type>> held;
    held.reserve(per_hold);
    for (;;) {
      const bool started = !held.empty();
      std::string after = started ? std::move(held.back().first) : std::string();  // the last key read
      held.clear();
      bool more;
      {
        std::shared_lock lock(replicated_mu_);
        auto it = started ? t.upper_bound(after) : t.begin();
        for (; held.size() < per_hold && it != t.end(); ++it) held.emplace_back(it->first, it->second);
        more = it != t.end();
      }
      // The lines' values from one arena, let go at once after the hold's
      // lines are written (an endpoint's line is some thirty allocations).
      json::monotonic_resource arena(arena_start, sizeof arena_start);
      for (const auto& [key, e] : held) {
        if (!first) append(",");
        first = false;
        const json::value line = entry_line(name, key, e, !e.deleted, &arena);
        serializer.reset(&line);
        while (!serializer.done()) append(serializer.read(buffer, sizeof buffer));
      }
      if (!more || held.empty()) return;
    }
  };
  add("networks", networks_);
  add("blocks", blocks_);
  add("endpoints", endpoints_);
  add("services", services_);
}

std::optional<Store::Line> Store::replicated_entry(TableId table, const std::string& key) const {
  auto one = [&](const char* name, const auto& t) -> std::optional<Line> {
    auto it = t.find(key);
    if (it == t.end()) return std::nullopt;
    return entry_line(name, key, it->second, !it->second.deleted);
  };
  switch (table) {
    case TableId::networks: return one("networks", networks_);
    case TableId::blocks: return one("blocks", blocks_);
    case TableId::endpoints: return one("endpoints", endpoints_);
    case TableId::services: return one("services", services_);
    case TableId::cursors: return std::nullopt;  // local to this node: never replicated
  }
  return std::nullopt;
}

void Store::notify(const std::string& table, const std::string& key, const Line* local) {
  const std::optional<TableId> t = parse_table(table);
  if (!t) return;  // with_table() refused it before anything was applied
  feed_.publish(Change::entry(*t, key, local ? std::optional<Line>(*local) : std::nullopt));
}

// ---- Writing ----

void Store::write_snapshot(int64_t horizon) const {
  auto expired = [&](const auto& e) { return e.deleted && e.deleted_at < horizon; };
  size_t count = 0;
  auto count_rows = [&](const auto& t) {
    for (const auto& [key, e] : t) count += expired(e) ? 0 : 1;
  };
  count_rows(networks_);
  count_rows(blocks_);
  count_rows(endpoints_);
  count_rows(services_);
  count_rows(cursors_);
  // Written in pieces of about kChunk bytes, not put together whole first:
  // a snapshot is about 700 bytes an endpoint, and a string that size (and
  // the copies its growth makes) was the daemon's largest allocation, whose
  // pages glibc then kept: 10,000 endpoints made a 21 MB peak at each
  // compaction. The snapshot's rename is durable (its directory synced)
  // before the journal's.
  write_file_atomically(dir_, "snapshot", [&](const AppendPiece& append) {
    constexpr size_t kChunk = 256 * 1024;
    std::string chunk(records::kSnapshotHeader);
    chunk += '\n';
    chunk += records::encode(json::object{{"node_id", node_id_}, {"lamport", lamport_}, {"entries", count}});
    auto dump = [&](const char* name, const auto& t) {
      for (const auto& [key, e] : t) {
        if (expired(e)) continue;
        chunk += records::encode(entry_line(name, key, e, true));
        if (chunk.size() < kChunk) continue;
        append(chunk);
        chunk.clear();
      }
    };
    dump("networks", networks_);
    dump("blocks", blocks_);
    dump("endpoints", endpoints_);
    dump("services", services_);
    dump("cursors", cursors_);
    append(chunk);
  });
}

// Drops the tombstones a snapshot left out, and the format-1 file it replaced.
void Store::after_snapshot(int64_t horizon) {
  auto expired = [&](const auto& e) { return e.deleted && e.deleted_at < horizon; };
  auto reap = [&](auto& t) { std::erase_if(t, [&](const auto& kv) { return expired(kv.second); }); };
  {
    std::lock_guard lock(replicated_mu_);
    reap(networks_);
    reap(blocks_);
    reap(endpoints_);
    reap(services_);
  }
  reap(cursors_);
  // Format 1's snapshot, superseded by the first compaction after an upgrade.
  if (::unlink((dir_ + "/state.json").c_str()) == 0) {
    spdlog::info("state: converted {} to format 2 (checksummed records)", dir_);
  }
}

bool Store::compact() {
  finish_compaction(true);  // one snapshot writer at a time
  const int64_t horizon = now_seconds() - tombstone_seconds_;
  try {
    write_snapshot(horizon);
    // The snapshot now holds everything; an empty journal replaces the old
    // one(s).
    install_new_journal();
  } catch (const std::exception& e) {
    spdlog::error("state: cannot compact {}: {}; the journal in use stays", dir_, e.what());
    return false;
  }
  after_snapshot(horizon);
  compact_at_ = compaction_length_for_size();
  return true;
}

// ---- Compaction in the background ----
//
// A snapshot is O(the store): about 80 ms of encoding at 10,000 endpoints.
// Written by the change that reached kCompactAfterLines, it made that
// change (and every request queued behind it) wait. Instead a forked child
// writes it from its copy-on-write image of the tables, which no later
// change can touch, while this process goes on at once with a new journal,
// journal.next, holding what comes after. At start the snapshot, journal and
// journal.next are read in that order, so every moment is covered:
//   - before the child's rename: the old snapshot + journal + journal.next;
//   - after it: the new snapshot + journal (older lines, which lose to the
//     snapshot's newer versions, as after any compaction's rename) +
//     journal.next;
//   - once the child is done, journal.next is renamed over journal.
// The child only encodes and writes files: it never logs (another thread
// may hold the logger's lock at the fork) and reports a failure through a
// pipe, read here when it has exited.

bool Store::start_compaction() {
  // After one that failed, changes are in journal.next and journal both:
  // a compaction in place replaces the two.
  if (journal_name_ != "journal") return compact();
  // A failed append whose cut-back failed too left part of a refused record
  // in the journal; it is cut off first, as before an append, since no
  // append to this journal will come to do it.
  if (journal_dirty_) {
    try {
      truncate_journal();
    } catch (const std::exception& e) {
      spdlog::error("state: cannot compact {}: {}; the journal in use stays", dir_, e.what());
      return false;
    }
  }
  // The journal in use is closed below, and the child's snapshot is not
  // durable until it finishes: a record of it not yet synced is synced now.
  if (journal_unsynced_) {
    if (!journal_suspect_) {
      if (auto err = datasync_journal()) {
        spdlog::error("state: fdatasync {}/{}: {}; writing the state afresh", dir_, journal_name_,
                      std::strerror(*err));
      }
    }
    // Its records may not be on the disk: a snapshot written here and now
    // holds them (and replaces the journal), or the journal in use stays.
    if (journal_suspect_) return compact();
    journal_unsynced_ = false;
  }
  const std::string next = dir_ + "/" + kNextJournal;
  const std::string header = std::string(records::kJournalHeader) + "\n";
  const int64_t horizon = now_seconds() - tombstone_seconds_;
  int next_fd = -1;
  int report[2] = {-1, -1};
  try {
    next_fd = ::open(next.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (next_fd < 0) throw_errno(Errc::unavailable, "creating " + next, errno);
    pwrite_all(next_fd, header, 0, next);
    if (datasync_(next_fd) != 0) throw_errno(Errc::unavailable, "fdatasync " + next, errno);
    fsync_dir(dir_);  // its name is durable before any change is acknowledged in it
    if (::pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno(Errc::internal, "pipe", errno);
  } catch (const std::exception& e) {
    spdlog::error("state: cannot compact {}: {}; the journal in use stays", dir_, e.what());
    if (next_fd >= 0) ::close(next_fd);
    ::unlink(next.c_str());
    return false;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Dies with the daemon: a snapshot left half-written is a .tmp, removed
    // at the next start.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(3);
    // The daemon's handlers would tell its own event loop (their pipe is
    // shared): a signal sent to the child stops the child alone.
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::signal(sig, SIG_DFL);
    // Behind the daemon for the CPU: on a small host the snapshot's ~80 ms
    // of encoding (10,000 endpoints) otherwise competes with the changes.
    [[maybe_unused]] int niced = ::nice(10);
    ::close(report[0]);
    int status = 0;
    try {
      write_snapshot(horizon);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      [[maybe_unused]] ssize_t n = ::write(report[1], what.data(), what.size());
      status = 1;
    } catch (...) {
      status = 1;
    }
    ::_exit(status);
  }
  ::close(report[1]);
  if (pid < 0) {
    const int err = errno;
    spdlog::error("state: cannot compact {}: fork: {}; the journal in use stays", dir_, std::strerror(err));
    ::close(report[0]);
    ::close(next_fd);
    ::unlink(next.c_str());
    return false;
  }
  compactor_ = Compactor{pid, report[0], horizon};
  // The child's snapshot holds every line of the journal: later ones go to
  // journal.next.
  ::close(journal_fd_);
  journal_fd_ = next_fd;
  journal_name_ = kNextJournal;
  journal_size_ = header.size();
  journal_lines_ = 0;
  journal_dirty_ = false;
  dir_synced_ = true;
  return true;
}

bool Store::finish_compaction(bool wait) {
  if (!compactor_) return false;
  int status = 0;
  pid_t done = -1;
  do {
    done = ::waitpid(compactor_->pid, &status, wait ? 0 : WNOHANG);
  } while (done < 0 && errno == EINTR);
  if (done == 0) return true;  // still writing
  std::string report;
  char buf[512];
  for (ssize_t n; (n = ::read(compactor_->report, buf, sizeof buf)) > 0;) report.append(buf, static_cast<size_t>(n));
  ::close(compactor_->report);
  const int64_t horizon = compactor_->horizon;
  compactor_.reset();
  if (done < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (report.empty()) {
      report = done < 0                ? std::string("lost its snapshot writer: ") + std::strerror(errno)
               : WIFSIGNALED(status) ? "its snapshot writer was killed by signal " + std::to_string(WTERMSIG(status))
                                     : "its snapshot writer failed";
    }
    spdlog::error("state: cannot compact {}: {}; the journal in use stays", dir_, report);
    compact_at_ = journal_lines_ + kCompactRetryLines;
    return false;
  }
  // The snapshot is durable and holds all of journal: journal.next takes
  // its place.
  const std::string next = dir_ + "/" + kNextJournal;
  const std::string journal = dir_ + "/journal";
  try {
    if (::rename(next.c_str(), journal.c_str()) != 0) throw_errno(Errc::unavailable, "renaming " + next, errno);
    journal_name_ = "journal";
    fsync_dir(dir_);
  } catch (const std::exception& e) {
    // Both files stay readable at start; the next compaction is in place.
    spdlog::error("state: after a compaction of {}: {}", dir_, e.what());
    dir_synced_ = false;
  }
  after_snapshot(horizon);
  return false;
}

bool Store::poll_compaction() { return finish_compaction(false); }

void Store::install_new_journal() {
  const std::string path = dir_ + "/journal";
  const std::string tmp = path + ".tmp";
  const std::string header = std::string(records::kJournalHeader) + "\n";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno(Errc::unavailable, "creating " + tmp, errno);
  try {
    pwrite_all(fd, header, 0, tmp);
    if (datasync_(fd) != 0) throw_errno(Errc::unavailable, "fdatasync " + tmp, errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno(Errc::unavailable, "renaming " + tmp, errno);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Renamed: from here the new file is the journal, whatever happens next.
  // What a failed background compaction left in journal.next is in the
  // snapshot too.
  if (journal_name_ != "journal") {
    ::unlink((dir_ + "/" + kNextJournal).c_str());
    journal_name_ = "journal";
  }
  if (journal_fd_ >= 0) ::close(journal_fd_);
  journal_fd_ = fd;
  journal_size_ = header.size();
  journal_lines_ = 0;
  journal_dirty_ = false;
  journal_unsynced_ = false;  // the durable snapshot before it holds every record
  journal_suspect_ = false;
  try {
    fsync_dir(dir_);
    dir_synced_ = true;
  } catch (const std::exception& e) {
    dir_synced_ = false;  // the next append syncs it before acknowledging
    spdlog::warn("state: {}", e.what());
  }
}

// Start-up without a compaction: appends go on at the end of the journal's
// last whole line (a torn tail is cut off before the first).
void Store::reopen_journal() {
  const std::string path = dir_ + "/" + journal_name_;
  journal_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (journal_fd_ < 0) throw_errno(Errc::internal, "opening " + path, errno);
  journal_size_ = loaded_journal_size_;
  journal_dirty_ = true;
  dir_synced_ = false;
  compact_at_ = journal_lines_ + kCompactRetryLines;
}

void Store::truncate_journal() {
  const std::string path = dir_ + "/" + journal_name_;
  if (::ftruncate(journal_fd_, static_cast<off_t>(journal_size_)) != 0) {
    throw_errno(Errc::unavailable, "cutting " + path + " back to " + std::to_string(journal_size_) + " bytes", errno);
  }
  if (auto err = datasync_journal()) throw_errno(Errc::unavailable, "fdatasync " + path, *err);
  journal_dirty_ = false;
}

void Store::append_journal(std::string text, size_t count, bool sync) {
  // A journal that may have lost records (journal_suspect_) is replaced
  // before anything more is appended to it: a lost page takes the line
  // breaks around those records with it, and a record written after them
  // could not be read back.
  if (journal_suspect_ && !compact()) {
    throw Error(Errc::unavailable, "swarmnetd cannot save the change in its state directory " + dir_ +
                                       ": a sync of its journal failed and so did writing the state afresh; "
                                       "nothing was changed, try again when the disk works");
  }
  const std::string path = dir_ + "/" + journal_name_;
  if (journal_size_ == 0) text.insert(0, std::string(records::kJournalHeader) + "\n");
  try {
    if (journal_dirty_) truncate_journal();
    if (!dir_synced_) {
      fsync_dir(dir_);
      dir_synced_ = true;
    }
    pwrite_all(journal_fd_, text, journal_size_, path);
    if (sync) {
      if (auto err = datasync_journal()) throw_errno(Errc::unavailable, "fdatasync " + path, *err);
      // The earlier unsynced records are in the same file, unless an
      // fdatasync failed since they were written (journal_suspect_).
      if (!journal_suspect_) journal_unsynced_ = false;
    } else {
      journal_unsynced_ = true;
    }
  } catch (const std::exception& e) {
    // Whatever part of the records reached the file goes: the next append
    // starts on a clean line, and a half record is never read back.
    journal_dirty_ = true;
    try {
      truncate_journal();
    } catch (const std::exception& t) {
      spdlog::error("state: {} (retried before the next write)", t.what());
    }
    spdlog::error("state: a change was refused: {}", e.what());
    throw Error(Errc::unavailable, "swarmnetd cannot save the change in its state directory " + dir_ + ": " +
                                       e.what() + "; nothing was changed, try again when the disk has room");
  }
  journal_size_ += text.size();
  journal_lines_ += count;
}

size_t Store::compaction_length_for_size() const {
  const size_t entries = networks_.size() + blocks_.size() + endpoints_.size() + cursors_.size() + services_.size();
  return std::max(kCompactAfterLines, entries);
}

void Store::maybe_compact() {
  if (finish_compaction(false) || journal_lines_ < compact_at_) return;
  compact_at_ = start_compaction() ? compaction_length_for_size() : journal_lines_ + kCompactRetryLines;
}

template <class T>
Version Store::write(const char* table, Table<T>& t, const std::string& key, const T* value, bool sync) {
  if (lamport_ >= kMaxLamport) {
    throw Error(Errc::internal, "the Lamport clock reached its bound 2^62; refusing to wrap around");
  }
  Version v{lamport_ + 1, node_id_};
  json::object line{{"table", table}, {"key", key}, {"version", to_json(v)}, {"deleted", value == nullptr}};
  int64_t deleted_at = 0;
  if (value) {
    line["value"] = to_json(*value);
  } else {
    deleted_at = now_seconds();
    line["deleted_at"] = deleted_at;
  }
  // Durable first: if the journal write fails, memory is unchanged.
  const json::value line_value = line;
  append_journal(records::encode(line_value), 1, sync);
  lamport_ = v.lamport;
  set_entry(t, key, v, value ? std::optional<T>(*value) : std::nullopt, deleted_at);
  notify(table, key, &line_value);
  maybe_compact();
  return v;
}

template <class T>
void Store::set_entry(Table<T>& t, const std::string& key, const Version& v, std::optional<T> value,
                      int64_t deleted_at) {
  const bool live = value.has_value();
  Entry<T>* entry;
  {
    // The one place the replicated tables' entries change (besides the
    // reaping of tombstones): append_replicated_lines() may be reading.
    std::lock_guard lock(replicated_mu_);
    auto& [stored_key, e] = *t.try_emplace(key).first;
    // The index points at the table's own key (ReadModel: no copies).
    index_entry(stored_key, e, false);
    e.version = v;
    e.deleted = !live;
    e.deleted_at = deleted_at;
    if (live) e.value = std::move(*value);  // a tombstone keeps the last value
    index_entry(stored_key, e, true);
    entry = &e;
  }
  if constexpr (std::is_same_v<T, EndpointRecord>) {
    if (live) note_allocation(entry->value);
  }
}

// The round-robin cursor is implied by the journal: the last address this
// node allocated in a network is the one in its latest endpoint line, so no
// separate (second fsync) write is needed per allocation.
void Store::note_allocation(const EndpointRecord& e) {
  if (e.node != node_id_) return;
  cursors_[e.network_id].value = CursorRecord{e.network_id, e.ip};
}

Version Store::put(const NetworkRecord& r) { return write("networks", networks_, r.id, &r); }
Version Store::put(const BlockRecord& r) {
  return write("blocks", blocks_, block_key(r.network_id, r.block), &r);
}
Version Store::put(const EndpointRecord& r) {
  return write("endpoints", endpoints_, endpoint_key(r.network_id, r.node, r.container_id, r.ifname), &r);
}
Version Store::put_unsynced(const EndpointRecord& r) {
  return write("endpoints", endpoints_, endpoint_key(r.network_id, r.node, r.container_id, r.ifname), &r, false);
}

void Store::sync_journal() {
  if (!journal_unsynced_) return;
  const std::string path = dir_ + "/" + journal_name_;
  if (!journal_suspect_) {
    const auto err = datasync_journal();
    if (!err) {
      journal_unsynced_ = false;
      return;
    }
    spdlog::error("state: fdatasync {}: {}; writing the state afresh", path, std::strerror(*err));
  }
  // After a failed fdatasync the kernel may have dropped the pages it could
  // not write, and a later fdatasync on the file need not say so: only a
  // fresh copy of the tables is sure to hold what the journal should.
  if (!compact()) {
    throw Error(Errc::unavailable, "swarmnetd cannot save its state in " + dir_ +
                                       ": a sync of its journal failed and so did writing the state afresh; "
                                       "try again when the disk works");
  }
}

std::optional<int> Store::datasync_journal() {
  if (datasync_(journal_fd_) == 0) return std::nullopt;
  const int err = errno;
  if (journal_unsynced_) journal_suspect_ = true;
  return err;
}

void Store::fail_syncs_for_tests(int (*datasync)(int)) { datasync_ = datasync ? datasync : ::fdatasync; }

Version Store::put(const ServiceRecord& r) { return write("services", services_, r.id, &r); }
Version Store::erase_service(const std::string& id) {
  return write<ServiceRecord>("services", services_, id, nullptr);
}
const ServiceRecord* Store::find_service(const std::string& id) const {
  auto it = services_.find(id);
  return it == services_.end() || it->second.deleted ? nullptr : &it->second.value;
}
const ServiceRecord* Store::find_service_by_name(const std::string& name) const {
  const std::string id = index_.service_named(name);
  return id.empty() ? nullptr : find_service(id);
}

template <class T>
void Store::index_entry(const std::string& key, const Entry<T>& e, bool add) {
  // A fresh entry (t[key] just made one) has a zero version: nothing to remove.
  if (e.deleted || e.version == Version{}) return;
  if constexpr (std::is_same_v<T, EndpointRecord>) {
    index_.endpoint_changed(key, add ? nullptr : &e.value, add ? &e.value : nullptr);
  } else if constexpr (std::is_same_v<T, ServiceRecord>) {
    index_.service_changed(key, add ? nullptr : &e.value, add ? &e.value : nullptr);
  }
}

Version Store::erase_network(const std::string& id) {
  return write<NetworkRecord>("networks", networks_, id, nullptr);
}
Version Store::erase_block(const std::string& key) {
  return write<BlockRecord>("blocks", blocks_, key, nullptr);
}
Version Store::erase_endpoint(const std::string& key) {
  return write<EndpointRecord>("endpoints", endpoints_, key, nullptr);
}

const NetworkRecord* Store::find_network(const std::string& id) const {
  auto it = networks_.find(id);
  return it == networks_.end() || it->second.deleted ? nullptr : &it->second.value;
}

const NetworkRecord* Store::find_network_by_name(const std::string& name) const {
  for (const auto& [id, e] : networks_) {
    if (!e.deleted && e.value.name == name) return &e.value;
  }
  return nullptr;
}

const EndpointRecord* Store::find_endpoint(const std::string& key) const {
  auto it = endpoints_.find(key);
  return it == endpoints_.end() || it->second.deleted ? nullptr : &it->second.value;
}

}  // namespace swarmnet::daemon
