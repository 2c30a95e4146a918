// The daemon's tables and their durability (docs/state.md).
//
// Every change is one journal record, written and fdatasync'ed before
// memory changes and before the caller goes on (so before any API reply that
// depends on it). A failed write (full disk, I/O error, short write) cuts the
// journal back to where the write began, leaves memory unchanged and throws
// Error(unavailable) (CNI code 11: try again later); once there is room the
// next write succeeds. Each record carries a CRC32C: at start the last
// snapshot is loaded and the journal replayed, skipping (and logging with
// file, line and reason) every record that fails its checksum or does not
// decode, and ignoring a torn last line; then both are compacted into a new
// snapshot (temp file, fsync, rename, fsync of the directory) and a new
// journal put in place the same way before the old one is closed. A SIGKILL
// at any moment therefore loses at most the change whose reply was never
// sent, and damage to the files costs only the damaged records. State
// written before the checksums (state.json, bare JSON lines) still loads.
//
// Threads: the daemon's thread alone writes and reads, except that
// append_replicated_lines() may be called from any thread (the gossip
// thread's push/pull) while it goes on; every change of the replicated
// tables takes replicated_mu_ for the moment it touches them.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "daemon/change_feed.hpp"
#include "daemon/read_model.hpp"
#include "daemon/records.hpp"

namespace swarmnet::daemon {

class Store {
 public:
  // Opens (creating if needed) the state directory, loads and compacts.
  // Damaged records are dropped and logged; throws Error(internal) with the
  // file and reason only if a state file exists but cannot be read at all.
  // Tombstones are kept this long (so a node that was away still learns of a
  // deletion by push/pull), then dropped at compaction.
  static constexpr int64_t kDefaultTombstoneSeconds = 3600;
  // A Lamport value above this is refused, received or loaded: at a million
  // writes a second a cluster needs 146,000 years to reach it, so only a
  // corrupt or forged version gets there, and the local clock (at most this
  // plus one) can never wrap around to 0.
  static constexpr uint64_t kMaxLamport = uint64_t{1} << 62;
  explicit Store(std::string state_dir, int64_t tombstone_seconds = kDefaultTombstoneSeconds);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& node_id() const { return node_id_; }

  const Table<NetworkRecord>& networks() const { return networks_; }
  const Table<BlockRecord>& blocks() const { return blocks_; }
  const Table<EndpointRecord>& endpoints() const { return endpoints_; }
  // Where round-robin allocation resumes, per network (local, derived from
  // this node's endpoint writes; saved in snapshots).
  const Table<CursorRecord>& cursors() const { return cursors_; }
  const Table<ServiceRecord>& services() const { return services_; }
  // The index of the live endpoints and services (daemon/read_model.hpp),
  // up to date whenever a change is published on feed().
  const ReadModel& index() const { return index_; }

  // Local writes: stamp a new version (Lamport clock + this node), journal,
  // then apply. Return the version written. Throw Error(unavailable) if the
  // journal cannot be written, with nothing changed.
  Version put(const NetworkRecord& r);
  Version put(const BlockRecord& r);
  Version put(const EndpointRecord& r);
  // The same, except that the journal's fdatasync is left to sync_journal():
  // the record is written to the file (so a killed daemon keeps it) and
  // applied, but not yet safe from a crash of the machine. For a caller
  // that overlaps the sync with work of its own and acknowledges only after
  // sync_journal() (the CNI plugin's ADD: POST ...?sync=later, whose reply
  // is followed by a line once synced, docs/api.md).
  Version put_unsynced(const EndpointRecord& r);
  // Makes every change written so far durable: nothing to do unless a
  // put_unsynced() is not yet synced. Once an fdatasync of the journal has
  // failed after such a record was written (here or in any other write),
  // the journal cannot say whether the record is on the disk, and the
  // tables are written afresh instead (a compaction in place: snapshot and
  // new journal), which holds them all; throws Error(unavailable) if that
  // fails, and the next call writes them afresh again.
  void sync_journal();
  // Tests: the fdatasync the journal and its replacement use (nullptr: the
  // real one), to make it fail.
  void fail_syncs_for_tests(int (*datasync)(int));
  // True while a put_unsynced() waits for sync_journal().
  bool journal_unsynced() const { return journal_unsynced_; }
  Version put(const ServiceRecord& r);
  Version erase_service(const std::string& id);
  const ServiceRecord* find_service(const std::string& id) const;
  const ServiceRecord* find_service_by_name(const std::string& name) const;
  Version erase_network(const std::string& id);
  Version erase_block(const std::string& key);
  Version erase_endpoint(const std::string& key);

  // Live (non-deleted) entries only.
  const NetworkRecord* find_network(const std::string& id) const;
  const NetworkRecord* find_network_by_name(const std::string& name) const;
  const EndpointRecord* find_endpoint(const std::string& key) const;

  // ---- Replication (gossip) ----
  // An entry change as it travels between nodes: the journal line format,
  // {"table", "key", "version", "deleted", "deleted_at", "value"}.
  using Line = json::value;

  // Every change of a table (networks, blocks, endpoints, services; local
  // or merged) is published here after it is applied, with the journal line
  // of a local write for the broadcast (daemon/change_feed.hpp). The cluster
  // publishes membership changes on the same feed.
  ChangeFeed& feed() { return feed_; }

  // Merges entries from another node: each is applied only if its version
  // is higher than ours (last writer wins, ties broken by node id, so every
  // node picks the same winner). Journaled with one fdatasync for the batch.
  // Returns how many entries changed; malformed lines (a Lamport value above
  // kMaxLamport included) throw Error(invalid_argument) and nothing of the
  // batch is applied; a journal that cannot be written throws
  // Error(unavailable), also with nothing applied.
  size_t merge(const std::vector<Line>& lines);

  // Every replicated entry (tombstones included).
  std::vector<Line> replicated_entries() const;
  // The same, serialized and comma-separated (the inside of a JSON array,
  // no comma before the first), handed to `append` piece by piece: what a
  // push/pull sends.
  // Safe to call from another thread while the daemon's thread writes: it
  // copies `per_hold` entries at a time under replicated_mu_ (a write waits
  // for at most that many copied), serializes them after it, and resumes
  // after the last key it read, so an entry changed meanwhile is sent as it
  // was or as it is, each entry whole. Tables in their order (networks,
  // blocks, endpoints, services), each read at its own moment: an endpoint
  // may come without the network made after the networks were read, as a
  // broadcast may overtake another (the next broadcast or push/pull brings
  // it).
  static constexpr size_t kEntriesPerHold = 128;
  void append_replicated_lines(const std::function<void(std::string_view)>& append,
                               size_t per_hold = kEntriesPerHold) const;
  // One of them, as replicated_entries() has it; nullopt if the table holds
  // no such key (never written, or a tombstone dropped at compaction).
  std::optional<Line> replicated_entry(TableId table, const std::string& key) const;

  // Number of journal lines since the last snapshot.
  size_t journal_length() const { return journal_lines_; }
  // The journal's length at which the next compaction starts (store.cpp's
  // kCompactAfterLines, or the store's entries when there are more).
  size_t compaction_length() const { return compact_at_; }
  // Writes a snapshot and puts an empty journal in place, here and now
  // (waiting for a background one first). On failure (logged) returns false
  // and the snapshot and journal in use stay as they were.
  bool compact();
  // Changes themselves compact in the background (store.cpp says how): once
  // the journal reaches its length, a child process writes the snapshot.
  // This finishes one whose child has exited, without waiting; true while
  // one is still being written. The daemon calls it now and then, so no
  // finished child waits long for the next change.
  bool poll_compaction();

 private:
  template <class T>
  Version write(const char* table, Table<T>& t, const std::string& key, const T* value, bool sync = true);
  template <class F>
  decltype(auto) with_table(const std::string& table, F&& f);
  void append_journal(std::string records, size_t count, bool sync = true);
  void truncate_journal();
  // fdatasync of the journal in use: nullopt, or the errno of a failure,
  // which makes the journal suspect if unsynced records are in it.
  std::optional<int> datasync_journal();
  void install_new_journal();
  void write_snapshot(int64_t horizon) const;
  void after_snapshot(int64_t horizon);
  bool start_compaction();
  // True while the child still writes (never with `wait`).
  bool finish_compaction(bool wait);
  void reopen_journal();
  void maybe_compact();
  // The journal's length for the next compaction, from the tables' size
  // (entries and tombstones).
  size_t compaction_length_for_size() const;
  void apply_line(const json::value& line);
  void note_allocation(const EndpointRecord& e);
  bool apply_if_newer(const json::value& line, bool validate_only);
  std::optional<Version> version_of(const std::string& table, const std::string& key);
  template <class T>
  void index_entry(const std::string& key, const Entry<T>& e, bool add);
  // Puts an entry's new version (no value: a tombstone) in its table and
  // the index, under replicated_mu_.
  template <class T>
  void set_entry(Table<T>& t, const std::string& key, const Version& v, std::optional<T> value,
                 int64_t deleted_at);
  void notify(const std::string& table, const std::string& key, const Line* local);
  static std::optional<std::string> read_state_file(const std::string& path);
  void load();
  void load_snapshot(const std::string& path, const std::string& text);
  void load_legacy_snapshot(const std::string& path, const std::string& text);
  void load_journal(const std::string& path, const std::string& text);
  void apply_loaded(const json::value& record, size_t line, std::vector<std::string>& dropped);
  void report_dropped(const std::string& path, const std::vector<std::string>& dropped);

  std::string dir_;
  int64_t tombstone_seconds_;
  std::string node_id_;
  uint64_t lamport_ = 0;
  int journal_fd_ = -1;
  size_t journal_lines_ = 0;
  // Bytes of the journal known to hold whole records: every append writes
  // here, and a failed one is cut back to it.
  uint64_t journal_size_ = 0;
  // A failed append whose cut-back failed too: cut back before the next.
  bool journal_dirty_ = false;
  // The journal holds records not yet fdatasync'ed (put_unsynced). Only the
  // journal in use can: it is synced before a background compaction
  // replaces it, and a compaction in place writes everything afresh.
  bool journal_unsynced_ = false;
  // An fdatasync failed while unsynced records were in the journal: the
  // kernel may have dropped their pages, and no later fdatasync of the file
  // would say so. Only a compaction in place clears it; the next sync or
  // append makes one.
  bool journal_suspect_ = false;
  int (*datasync_)(int) = ::fdatasync;
  // The journal's directory entry may not be durable yet (its fsync failed):
  // synced before the next append is acknowledged.
  bool dir_synced_ = true;
  // Where the journal read at start ends intact (a torn last line excluded).
  uint64_t loaded_journal_size_ = 0;
  size_t compact_at_;
  // The file appends go to: "journal", or "journal.next" from the start of
  // a background compaction until its snapshot is in place (or, after one
  // that failed, until the next compaction).
  std::string journal_name_ = "journal";
  // The background compaction's child: its pid, the read end of the pipe
  // it reports a failure on, and the tombstone horizon it used.
  struct Compactor {
    pid_t pid;
    int report;
    int64_t horizon;
  };
  std::optional<Compactor> compactor_;
  // Held by every change of the four replicated tables below (exclusive)
  // and by append_replicated_lines() (shared), the one reader on another
  // thread. The daemon's thread reads them without it: it is their only
  // writer. The compaction's child never takes it (it may have been forked
  // while the gossip thread held it).
  mutable std::shared_mutex replicated_mu_;
  Table<NetworkRecord> networks_;
  Table<BlockRecord> blocks_;
  Table<EndpointRecord> endpoints_;
  Table<CursorRecord> cursors_;
  Table<ServiceRecord> services_;
  ReadModel index_{"", endpoints_};  // given the node id once it is known
  ChangeFeed feed_;
};

}  // namespace swarmnet::daemon
