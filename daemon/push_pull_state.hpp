// What this node sends in a gossip push/pull: every replicated entry
// (tombstones included) and the cluster's own records (keyring, address
// pools, node records). The gossip thread reads it while the daemon's thread
// goes on changing the tables, so it is a copy of its own, kept entry by
// entry as the store's feed reports changes (O(log n) per change), and put
// together into one message only when a push/pull asks for it.
//
// The copy is held compressed, line by line: an endpoint's line is about 700
// bytes of JSON, most of it field names and ids it shares with the other
// lines of its table (its network's, its node's), and this copy was a third
// of a cluster daemon's memory per endpoint. Each table's lines are
// compressed (zstd) against one dictionary: the first line that table got,
// which holds the field names and, in most clusters, the network and node ids
// its other lines repeat. Entries are found by their key's digest, so the key
// is not held either (bench/README.md, daemon_memory.sh, has the figures).
//
// Thread-safe: written on the daemon's thread (put, reset, set_records), read
// on the gossip thread (bytes); the lines are decompressed there, outside the
// lock, so a change never waits for a push/pull to be put together.
#pragma once

#include <array>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/key_digest.hpp"
#include "daemon/change_feed.hpp"

namespace swarmnet::daemon {

class PushPullState {
 public:
  PushPullState();
  ~PushPullState();
  PushPullState(const PushPullState&) = delete;
  PushPullState& operator=(const PushPullState&) = delete;

  // One entry's line as the store has it (Store::replicated_entry); nullopt:
  // the store holds no such key any more.
  void put(TableId table, const std::string& key, const std::optional<boost::json::value>& line);
  // Every entry at once (on joining a cluster, and after a compaction
  // dropped tombstones unseen). Each table's dictionary is chosen again.
  void reset(const std::vector<boost::json::value>& lines);
  // The fields beside "entries" (keyring, address_pools, nodes).
  void set_records(const boost::json::object& records);
  // {"entries": [...], <records>}, serialized. Tables in their order (a
  // network's line before its blocks' and endpoints'), entries within a
  // table in no particular order.
  std::vector<uint8_t> bytes() const;
  size_t entries() const;
  // Heap bytes the entries take (the compressed lines, their set's nodes and
  // the dictionaries), as malloc counts them: for the tests and the bench.
  size_t held_bytes() const;

 private:
  struct Dictionary;  // zstd's prepared dictionaries, both ways
  struct Line {
    TableId table;
    bool with_dictionary;  // false: compressed before the table had one
    uint32_t size;         // of packed
    KeyDigest key;
    // The zstd frame of the serialized line: a block of its exact size (a
    // std::string's 32 bytes and its terminator were 20,000 endpoints' 1 MB).
    std::unique_ptr<char[]> packed;
    std::string_view frame() const { return {packed.get(), size}; }
  };
  struct ByKey {
    using is_transparent = void;
    using Id = std::pair<TableId, KeyDigest>;
    static Id id(const Line& l) { return {l.table, l.key}; }
    static const Id& id(const Id& i) { return i; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const { return id(a) < id(b); }
  };
  static constexpr size_t kTables = static_cast<size_t>(TableId::cursors) + 1;
  using Dictionaries = std::array<std::shared_ptr<const Dictionary>, kTables>;

  // The daemon's thread only: compresses the serialized `text` of `table`'s
  // entry `key` with the table's dictionary in `dicts`, first making it from
  // `text` if the table has none and the line has a value (a tombstone's
  // line is too short to be a good one).
  Line pack(TableId table, std::string_view key, const std::string& text, bool has_value, Dictionaries& dicts);

  struct Compressor;  // zstd's compression context, reused (daemon's thread only)
  std::unique_ptr<Compressor> compressor_;

  mutable std::mutex mu_;
  std::set<Line, ByKey> lines_;
  Dictionaries dicts_;   // written under mu_ (daemon's thread), read by bytes()
  std::string records_;  // serialized fields, without the braces
};

}  // namespace swarmnet::daemon
