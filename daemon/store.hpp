// The daemon's tables and their durability.
//
// Every change is one journal line, appended and fdatasync'ed before the
// caller goes on (so before any API reply that depends on it). At start the
// last snapshot is loaded, the journal replayed, and both are compacted into
// a new snapshot (temp file, fsync, rename, fsync of the directory). A
// SIGKILL at any moment therefore loses at most the change whose reply was
// never sent; a torn last journal line (power loss) is ignored with a warning.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "daemon/records.hpp"

namespace swarmnet::daemon {

template <class T>
using Table = std::map<std::string, Entry<T>>;

class Store {
 public:
  // Opens (creating if needed) the state directory, loads and compacts.
  // Throws Error(internal) with the file and reason if the state is unreadable.
  // Tombstones are kept this long (so a node that was away still learns of a
  // deletion by push/pull), then dropped at compaction.
  static constexpr int64_t kDefaultTombstoneSeconds = 3600;
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

  // Local writes: stamp a new version (Lamport clock + this node), journal,
  // then apply. Return the version written.
  Version put(const NetworkRecord& r);
  Version put(const BlockRecord& r);
  Version put(const EndpointRecord& r);
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
  // The routing mesh's network (NetworkRecord::ingress), if the cluster has one.
  const NetworkRecord* find_ingress_network() const;
  const EndpointRecord* find_endpoint(const std::string& key) const;

  // ---- Replication (gossip) ----
  // An entry change as it travels between nodes: the journal line format,
  // {"table", "key", "version", "deleted", "deleted_at", "value"}.
  using Line = json::value;

  // Called after every change to a replicated table (networks, blocks,
  // endpoints, services), local or merged, with the table name and key. Local writes
  // also pass the line so the caller can broadcast it.
  using ChangeListener =
      std::function<void(const std::string& table, const std::string& key, const Line* local)>;
  // Several parts listen (the controller, the gossip layer); the id removes one.
  size_t add_change_listener(ChangeListener listener);
  void remove_change_listener(size_t id);

  // Merges entries from another node: each is applied only if its version
  // is higher than ours (last writer wins, ties broken by node id, so every
  // node picks the same winner). Journaled with one fdatasync for the batch.
  // Returns how many entries changed; malformed lines throw
  // Error(invalid_argument) and nothing of the batch is applied.
  size_t merge(const std::vector<Line>& lines);

  // Every replicated entry (tombstones included), for a push/pull exchange.
  std::vector<Line> replicated_entries() const;

  // Number of journal lines since the last snapshot.
  size_t journal_length() const { return journal_lines_; }
  // Writes a snapshot and empties the journal.
  void compact();

 private:
  template <class T>
  Version write(const char* table, Table<T>& t, const std::string& key, const T* value);
  void append_journal(const json::value& line);
  void apply_line(const json::value& line);
  void note_allocation(const EndpointRecord& e);
  bool apply_if_newer(const json::value& line, bool validate_only);
  void notify(const std::string& table, const std::string& key, const Line* local);
  void load();
  json::value snapshot() const;

  std::string dir_;
  int64_t tombstone_seconds_;
  std::string node_id_;
  uint64_t lamport_ = 0;
  int journal_fd_ = -1;
  size_t journal_lines_ = 0;
  Table<NetworkRecord> networks_;
  Table<BlockRecord> blocks_;
  Table<EndpointRecord> endpoints_;
  Table<CursorRecord> cursors_;
  Table<ServiceRecord> services_;
  std::map<size_t, ChangeListener> listeners_;
  size_t next_listener_ = 0;
};

}  // namespace swarmnet::daemon
