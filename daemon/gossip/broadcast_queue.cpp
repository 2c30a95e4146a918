#include "daemon/gossip/broadcast_queue.hpp"

#include <algorithm>
#include <cstdint>

namespace swarmnet::gossip {

size_t BroadcastQueue::queue(const std::string& key, Bytes msg, Kind kind, bool large,
                             TimePoint now) {
  if (!key.empty()) {
    auto it = by_key_.find(key);
    if (it != by_key_.end()) erase(it->second);
  }
  uint64_t id = next_id_++;
  Item item;
  item.key = key;
  item.msg = std::move(msg);
  item.kind = kind;
  item.large = large;
  item.queued = now;
  if (large)
    large_.insert(id);
  else
    order_.insert(order_key(id, item));
  if (kind == Kind::own) own_.insert(id);
  if (kind == Kind::relay) relay_.insert(id);
  if (!key.empty()) by_key_[key] = id;
  items_.emplace(id, std::move(item));

  size_t dropped = 0;
  while (items_.size() > max_items_) {
    // Relayed news first: its origin tells every peer itself.
    std::set<uint64_t>& from = !relay_.empty() ? relay_ : own_;
    if (from.empty()) break;  // membership news only: one per node, never dropped
    erase(*from.begin());
    dropped++;
  }
  return dropped;
}

void BroadcastQueue::erase(uint64_t id) {
  auto it = items_.find(id);
  if (it == items_.end()) return;
  order_.erase(order_key(id, it->second));
  own_.erase(id);
  relay_.erase(id);
  large_.erase(id);
  if (!it->second.key.empty()) by_key_.erase(it->second.key);
  items_.erase(it);
}

bool BroadcastQueue::has(const std::vector<std::string>& peers, const std::string& peer) {
  return !peer.empty() && std::find(peers.begin(), peers.end(), peer) != peers.end();
}

void BroadcastQueue::sent(uint64_t id, const Target& t) {
  Item& item = items_.at(id);
  if (!item.large) order_.erase(order_key(id, item));
  item.transmits++;
  if (!t.id.empty()) {
    if (!has(item.sent_to, t.id)) item.sent_to.push_back(t.id);
    if (item.sent_to.size() >= t.peers) {
      item.rounds++;
      item.sent_to.clear();
    }
  }
  if (!finish_if_done(id, t) && !item.large) order_.insert(order_key(id, item));
}

bool BroadcastQueue::finish_if_done(uint64_t id, const Target& t) {
  const Item& item = items_.at(id);
  bool done;
  if (item.kind == Kind::own && t.confirm) {
    done = item.streamed.size() >= t.peers;
  } else {
    bool must_cover = t.cover && item.kind == Kind::own;
    done = (item.transmits >= t.limit && (!must_cover || item.rounds > 0)) ||
           (item.streamed.size() >= t.peers && item.kind != Kind::membership);
  }
  if (done) erase(id);
  return done;
}

std::vector<Bytes> BroadcastQueue::take(const Target& t, size_t per_message_overhead,
                                        size_t budget, size_t max_messages) {
  std::vector<Bytes> out;
  std::vector<uint64_t> taken;
  // Skipping for size is bounded: with thousands queued, scanning all of
  // them for one that fits the last few bytes costs more than the bytes are
  // worth. Skipping what the target already has is not (it must not starve
  // the others).
  size_t skipped = 0;
  for (auto it = order_.begin(); it != order_.end() && out.size() < max_messages; ++it) {
    const Item& item = items_.at(std::get<2>(*it));
    if (has(item.sent_to, t.id)) continue;
    size_t cost = item.msg.size() + per_message_overhead;
    if (cost > budget) {  // a smaller one further on may still fit
      if (++skipped > 64) break;
      continue;
    }
    budget -= cost;
    out.push_back(item.msg);
    taken.push_back(std::get<2>(*it));
  }
  for (uint64_t id : taken) sent(id, t);
  return out;
}

std::vector<Bytes> BroadcastQueue::take_stream(const Target& t, bool own, size_t max_bytes,
                                               size_t max_messages) {
  std::vector<Bytes> out;
  std::vector<uint64_t> taken;
  size_t bytes = 0;
  for (const auto& [id, item] : items_) {
    if (out.size() >= max_messages) break;
    if (!(item.large || (own && item.kind == Kind::own)) || has(item.streamed, t.id) ||
        has(item.in_flight, t.id))
      continue;
    // One longer than a compound part may be goes alone.
    bool alone = item.msg.size() > UINT16_MAX;
    if (!out.empty() && (alone || bytes + item.msg.size() > max_bytes)) break;
    bytes += item.msg.size();
    out.push_back(item.msg);
    taken.push_back(id);
    if (alone) break;
  }
  for (uint64_t id : taken) {
    sent(id, t);  // a transmit, not yet a delivery
    if (auto it = items_.find(id); it != items_.end() && !t.id.empty()) it->second.in_flight.push_back(t.id);
  }
  return out;
}

void BroadcastQueue::stream_answered(const Target& t) {
  std::vector<uint64_t> carried;
  for (const auto& [id, item] : items_)
    if (has(item.in_flight, t.id)) carried.push_back(id);
  for (uint64_t id : carried) {
    Item& item = items_.at(id);
    std::erase(item.in_flight, t.id);
    if (!has(item.streamed, t.id)) item.streamed.push_back(t.id);
    if (!item.large) order_.erase(order_key(id, item));
    if (!finish_if_done(id, t) && !item.large) order_.insert(order_key(id, item));
  }
}

void BroadcastQueue::stream_lost(const std::string& peer) {
  for (auto& [id, item] : items_) std::erase(item.in_flight, peer);
}

std::optional<TimePoint> BroadcastQueue::oldest_waiting_own(bool confirm, bool cover) const {
  if (own_.empty()) return std::nullopt;
  if (confirm) return items_.at(*own_.begin()).queued;
  // Oldest first; those before the first waiting one are only waiting for
  // retransmissions, and the caller asks only while there are few.
  for (uint64_t id : own_) {
    const Item& item = items_.at(id);
    if (cover ? item.rounds == 0 : item.transmits == 0) return item.queued;
  }
  return std::nullopt;
}

int BroadcastQueue::transmits(const std::string& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return -1;
  return static_cast<int>(items_.at(it->second).transmits);
}

void BroadcastQueue::clear() {
  order_.clear();
  items_.clear();
  own_.clear();
  relay_.clear();
  large_.clear();
  by_key_.clear();
}

}  // namespace swarmnet::gossip
