#include "daemon/gossip/broadcast_queue.hpp"

namespace swarmnet::gossip {

void BroadcastQueue::queue(const std::string& key, Bytes msg) {
  if (!key.empty()) {
    auto it = by_key_.find(key);
    if (it != by_key_.end()) erase(it->second);
  }
  uint64_t id = next_id_++;
  Item item{key, std::move(msg), 0};
  order_.insert(order_key(id, item));
  if (!key.empty()) by_key_[key] = id;
  items_.emplace(id, std::move(item));
}

void BroadcastQueue::erase(uint64_t id) {
  auto it = items_.find(id);
  if (it == items_.end()) return;
  order_.erase(order_key(id, it->second));
  if (!it->second.key.empty()) by_key_.erase(it->second.key);
  items_.erase(it);
}

std::vector<Bytes> BroadcastQueue::take(size_t per_message_overhead, size_t budget, unsigned limit,
                                        size_t max_messages) {
  std::vector<Bytes> out;
  std::vector<uint64_t> taken;
  // Skipping is bounded: with thousands queued (a large cluster settling)
  // scanning all of them for one that fits the last few bytes costs more
  // than the bytes are worth.
  size_t skipped = 0;
  for (auto it = order_.begin(); it != order_.end() && out.size() < max_messages; ++it) {
    uint64_t id = static_cast<uint64_t>(-std::get<2>(*it));
    size_t cost = static_cast<size_t>(-std::get<1>(*it)) + per_message_overhead;
    if (cost > budget) {  // a smaller one further on may still fit
      if (++skipped > 64) break;
      continue;
    }
    budget -= cost;
    out.push_back(items_.at(id).msg);
    taken.push_back(id);
  }
  for (uint64_t id : taken) {
    auto& item = items_.at(id);
    order_.erase(order_key(id, item));
    if (++item.transmits >= limit) {
      if (!item.key.empty()) by_key_.erase(item.key);
      items_.erase(id);
    } else {
      order_.insert(order_key(id, item));
    }
  }
  return out;
}

int BroadcastQueue::transmits(const std::string& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return -1;
  return static_cast<int>(items_.at(it->second).transmits);
}

void BroadcastQueue::clear() {
  order_.clear();
  items_.clear();
  by_key_.clear();
}

}  // namespace swarmnet::gossip
