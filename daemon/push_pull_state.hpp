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
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
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
  // One entry: its key and its serialized line in one string, sized to fit.
  // A map from (table, key) to the line held the key twice (the line has it
  // too) and the line with the slack of its serializer's growth: about 180
  // bytes an entry more, for every endpoint of the cluster.
  struct Line {
    TableId table;
    uint32_t key_size;
    std::string text;  // key, then line
    std::string_view key() const { return std::string_view(text).substr(0, key_size); }
    std::string_view line() const { return std::string_view(text).substr(key_size); }
  };
  struct ByKey {
    using is_transparent = void;
    using Id = std::pair<TableId, std::string_view>;
    static Id id(const Line& l) { return {l.table, l.key()}; }
    static const Id& id(const Id& i) { return i; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const { return id(a) < id(b); }
  };
  static Line make_line(TableId table, std::string_view key, const boost::json::value& line);

  mutable std::mutex mu_;
  std::set<Line, ByKey> lines_;  // in (table, key) order, as the map was
  std::string records_;  // serialized fields, without the braces
};

}  // namespace swarmnet::daemon
