// What this node sends in a gossip push/pull: every replicated entry
// (tombstones included) and the cluster's own records (keyring, address
// pools, node records), as one JSON object.
//
// The entries are read from the store itself when a push/pull asks for them,
// on the gossip thread, while the daemon's thread goes on changing the
// tables (Store::append_replicated_lines takes the store's lock for a few
// hundred entries at a time, so a change waits for at most that, and the
// gossip thread never waits for the daemon's thread's queue, or a kernel
// transaction on it). An earlier design kept a copy of every entry for the
// gossip thread, compressed; it was a sixth of a cluster daemon's memory
// per endpoint (bench/README.md, daemon_memory.sh).
//
// Thread-safe: set_records on the daemon's thread, bytes on any.
#pragma once

#include <atomic>
#include <boost/json/object.hpp>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace swarmnet::daemon {

class Store;

class PushPullState {
 public:
  explicit PushPullState(const Store& store) : store_(store) {}

  // The fields beside "entries" (keyring, address_pools, nodes).
  void set_records(const boost::json::object& records);
  // {"entries": [...], <records>}, serialized.
  std::vector<uint8_t> bytes() const;

 private:
  const Store& store_;
  mutable std::mutex mu_;
  std::string records_;  // serialized fields, without the braces
  mutable std::atomic<size_t> last_size_{0};  // of the last message, to reserve the next
};

}  // namespace swarmnet::daemon
