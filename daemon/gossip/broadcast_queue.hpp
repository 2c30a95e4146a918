// Transmit-limited broadcast queue: what a node piggybacks on its packets.
// Each message is sent at most `limit` times (to different random members);
// the least-transmitted go first, so fresh news overtakes old. A message
// about a node replaces any older one about the same node (key), since the
// newer one supersedes it.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "daemon/gossip/types.hpp"

namespace swarmnet::gossip {

class BroadcastQueue {
 public:
  // key: node id for membership messages, empty for messages that never
  // supersede each other (user messages).
  void queue(const std::string& key, Bytes msg);
  // Takes messages whose (size + per_message_overhead) fit in budget; each
  // taken message counts one transmit and leaves the queue at `limit`.
  std::vector<Bytes> take(size_t per_message_overhead, size_t budget, unsigned limit,
                          size_t max_messages);
  // Transmits so far of the message under key; -1 if none is queued.
  int transmits(const std::string& key) const;
  size_t size() const { return items_.size(); }
  void clear();

 private:
  struct Item {
    std::string key;
    Bytes msg;
    uint32_t transmits = 0;
  };
  // Order: fewest transmits, then largest (fills packets well), then newest.
  using OrderKey = std::tuple<uint32_t, int64_t, int64_t>;
  static OrderKey order_key(uint64_t id, const Item& it) {
    return {it.transmits, -static_cast<int64_t>(it.msg.size()), -static_cast<int64_t>(id)};
  }
  void erase(uint64_t id);

  uint64_t next_id_ = 0;
  std::set<OrderKey> order_;
  std::unordered_map<uint64_t, Item> items_;
  std::unordered_map<std::string, uint64_t> by_key_;
};

}  // namespace swarmnet::gossip
