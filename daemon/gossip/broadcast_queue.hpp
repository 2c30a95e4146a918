// The broadcast queue: what a node still has to tell its peers, and which
// peer has already been told what.
//
// Every message remembers the peers it went to in the current round; a
// packet for peer P only carries messages not yet sent to P, and once a
// message has been to every live peer a new round begins (retransmissions
// for loss then go round again). memberlist counted transmits per packet,
// and with 3 nodes all 4 could go to the same peer (pings and acks
// piggyback too), so a peer could miss a broadcast at 0% loss.
//
// When a message is done:
//   - relayed news and membership news: after `limit` transmits;
//   - our own, in a small cluster (Target::cover): also not before it has
//     been to every peer at least once;
//   - our own, where the caller confirms by stream (Target::confirm): only
//     once it has gone to every peer over a stream (reliable), whatever the
//     datagrams did;
//   - any user message that reached every peer over a stream.
//
// Three kinds: membership news (keyed by node id; newer news about a node
// replaces older), our own user messages, and user messages we relay. A
// message too large for a packet ("large") only goes by stream.
//
// Bounded: at most `max_items` messages. Past that, the oldest relayed
// message goes first, then the oldest of our own; the caller learns how
// many went and makes up for them with a full state exchange (the
// application's state carries every user message, see Delegate).
// Membership news is never dropped (one per node).
#pragma once

#include <cstdint>
#include <map>
#include <tuple>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/gossip/types.hpp"

namespace swarmnet::gossip {

class BroadcastQueue {
 public:
  enum class Kind : uint8_t { membership, own, relay };

  // Where a batch of messages is going and what counts as done.
  struct Target {
    std::string id;   // the peer's member id; empty: not tracked (a dead peer)
    size_t peers = 1;  // live peers now (a round is complete at this many)
    unsigned limit = 1;  // transmits before a message is done
    bool cover = false;  // own messages must reach every peer first (small cluster)
    bool confirm = false;  // own messages are done only once streamed to every peer
  };

  explicit BroadcastQueue(size_t max_items = 4096) : max_items_(max_items) {}

  // key: node id for membership news, empty otherwise. Returns how many
  // older messages were dropped to stay within max_items.
  size_t queue(const std::string& key, Bytes msg, Kind kind = Kind::membership, bool large = false,
               TimePoint now = {});
  // For a datagram to t.id: messages (not large) not yet sent to it this
  // round whose (size + per_message_overhead) fit in budget, in datagram
  // order (below). Each counts one transmit.
  std::vector<Bytes> take(const Target& t, size_t per_message_overhead, size_t budget,
                          size_t max_messages);
  // For a stream to t.id: the large messages not yet streamed to it, and
  // with `own` also every message of our own not yet streamed to it; oldest
  // first, up to max_bytes (at least one) and max_messages. They are in
  // flight to t.id until stream_answered() (delivered) or stream_lost()
  // (taken again by the next stream): a stream that times out or is
  // refused must not count as a delivery.
  std::vector<Bytes> take_stream(const Target& t, bool own, size_t max_bytes, size_t max_messages);
  // t.id answered the stream in flight to it: what it carried is delivered.
  void stream_answered(const Target& t);
  // The stream in flight to peer failed or went unanswered.
  void stream_lost(const std::string& peer);

  // Transmits so far of the message under key; -1 if none is queued.
  int transmits(const std::string& key) const;
  size_t size() const { return items_.size(); }
  size_t own_count() const { return own_.size(); }
  size_t large_count() const { return large_.size(); }
  // When the oldest message of our own still waiting was queued (nullopt:
  // none): any (confirm: all wait for a stream), one not yet sent to every
  // peer (cover), or one not yet sent to any.
  std::optional<TimePoint> oldest_waiting_own(bool confirm, bool cover) const;
  void clear();

 private:
  struct Item {
    std::string key;
    Bytes msg;
    Kind kind = Kind::membership;
    bool large = false;
    TimePoint queued{};
    uint32_t transmits = 0;
    uint32_t rounds = 0;    // completed rounds (sent to every peer)
    std::vector<std::string> sent_to;   // this round
    std::vector<std::string> streamed;  // peers reached over a stream (reliably)
    std::vector<std::string> in_flight;  // peers a stream carrying it is going to
  };
  // Datagram order: membership news, then our own, then relayed ones (the
  // origin of those covers every peer itself; relays add only redundancy);
  // within each, fewest transmits, then oldest (ids grow).
  using OrderKey = std::tuple<Kind, uint32_t, uint64_t>;
  static OrderKey order_key(uint64_t id, const Item& it) { return {it.kind, it.transmits, id}; }
  void erase(uint64_t id);
  // Counts a transmit of item id to t; removes the item when done.
  void sent(uint64_t id, const Target& t);
  // Removes item id if it has reached enough peers; true if it did.
  bool finish_if_done(uint64_t id, const Target& t);
  static bool has(const std::vector<std::string>& peers, const std::string& peer);

  size_t max_items_;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Item> items_;  // by id: oldest first
  std::set<OrderKey> order_;        // items that may go in a datagram
  std::set<uint64_t> own_, relay_, large_;
  std::unordered_map<std::string, uint64_t> by_key_;
};

}  // namespace swarmnet::gossip
