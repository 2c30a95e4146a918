// What this node sends in a gossip push/pull: every replicated entry
// (tombstones included) and the cluster's own records (keyring, address
// pools, node records). The gossip thread reads it while the daemon's thread
// goes on changing the tables, so it is a copy of its own, kept entry by
// entry as the store's feed reports changes (O(log n) per change), and put
// together into one message only when a push/pull asks for it.
// Thread-safe: written on the daemon's thread, read on the gossip thread.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/change_feed.hpp"

namespace swarmnet::daemon {

class PushPullState {
 public:
  // One entry's line as the store has it (Store::replicated_entry); nullopt:
  // the store holds no such key any more.
  void put(TableId table, const std::string& key, const std::optional<boost::json::value>& line);
  // Every entry at once (on joining a cluster, and after a compaction
  // dropped tombstones unseen).
  void reset(const std::vector<boost::json::value>& lines);
  // The fields beside "entries" (keyring, address_pools, nodes).
  void set_records(const boost::json::object& records);
  // {"entries": [...], <records>}, serialized.
  std::vector<uint8_t> bytes() const;
  size_t entries() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<TableId, std::string>, std::string> lines_;  // serialized
  std::string records_;  // serialized fields, without the braces
};

}  // namespace swarmnet::daemon
