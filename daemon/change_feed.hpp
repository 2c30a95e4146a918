// The daemon's one stream of changes: every change of a replicated table
// (this node's writes and those merged from others) and every change of the
// cluster's membership, delivered to the daemon's parts in one stated order.
//
// Ordering, in one place:
//   - Changes are delivered in the order they happened (were applied to the
//     store, or reported by the cluster), one at a time: every subscriber
//     has seen a change before any subscriber sees the next.
//   - For one change, subscribers are called in the order of Stage below,
//     then in the order they subscribed. The overlay comes first so that a
//     task's network is on this host before a balancer, the mesh or DNS
//     points at it; the broadcast comes after this host has applied the
//     change; the event feed (`swarmnetctl events`) comes last, so an event
//     seen there is already in effect on this host.
//   - A change made while changes are being delivered (a subscriber writes
//     to the store) is queued and delivered after the current one has
//     reached every subscriber: nobody is called back in the middle of its
//     own work, so no re-entrancy guards. The change that started the
//     delivery returns to its writer only when the queue is empty, so an API
//     reply still follows the kernel programming it caused.
//   - hold() defers delivery the same way for work started outside a
//     delivery (a part's start-up that writes the store and programs what it
//     wrote).
// A subscriber that throws is logged and the others still get the change.
// Single-threaded: publish and subscribe on the daemon's thread only.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace swarmnet::daemon {

// The replicated tables (cursors are local to a node but journaled alike).
enum class TableId : uint8_t { networks, blocks, endpoints, services, cursors };
// The name a table has in the journal and on the wire.
std::string_view table_name(TableId t);
// The table a journal or wire name stands for; nullopt for any other name.
std::optional<TableId> parse_table(std::string_view name);

// One member's new state, as gossip reported it.
struct MemberChange {
  std::string id, name, address;
  std::string status;  // alive, suspect, dead, left
  std::string before;  // "" for a node first seen
};

struct Change {
  enum class Kind : uint8_t { entry, membership };
  Kind kind = Kind::entry;
  // kind == entry: the table and key of the entry that changed.
  TableId table = TableId::networks;
  std::string key;
  // An entry this node wrote: its journal line, to broadcast. nullopt for a
  // change merged from another node.
  std::optional<boost::json::value> local;
  // kind == membership: the member whose state changed; nullopt when the
  // membership as a whole changed (this node joined or left a cluster).
  std::optional<MemberChange> member;

  static Change entry(TableId table, std::string key, std::optional<boost::json::value> local = std::nullopt) {
    Change c;
    c.table = table;
    c.key = std::move(key);
    c.local = std::move(local);
    return c;
  }
  static Change membership(std::optional<MemberChange> member = std::nullopt) {
    Change c;
    c.kind = Kind::membership;
    c.member = std::move(member);
    return c;
  }
  bool is(TableId t) const { return kind == Kind::entry && table == t; }
};

// Who is told, in this order (see above).
enum class Stage : uint8_t {
  overlay,         // bridges, VXLAN, FDB and neighbours, packet filter (the controller)
  discovery,       // DNS names and listeners
  host_ports,      // host-mode published ports
  load_balancing,  // service VIPs in this host's balancer
  routing_mesh,    // ingress sandbox and ports
  replication,     // gossip broadcast of this node's writes
  observers,       // the event feed, metrics, tests
};

class ChangeFeed {
 public:
  using Handler = std::function<void(const Change&)>;

  ChangeFeed() = default;
  ChangeFeed(const ChangeFeed&) = delete;
  ChangeFeed& operator=(const ChangeFeed&) = delete;

  // Ends the subscription when destroyed. Must not outlive the feed.
  class Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&& o) noexcept : feed_(o.feed_), id_(o.id_) { o.feed_ = nullptr; }
    Subscription& operator=(Subscription&& o) noexcept;
    ~Subscription() { reset(); }
    void reset();

   private:
    friend class ChangeFeed;
    Subscription(ChangeFeed* feed, uint64_t id) : feed_(feed), id_(id) {}
    ChangeFeed* feed_ = nullptr;
    uint64_t id_ = 0;
  };
  [[nodiscard]] Subscription subscribe(Stage stage, Handler handler);

  // Delivers the change to every subscriber, or queues it while a delivery
  // or a hold is under way (see above).
  void publish(Change change);

  // Defers delivery while it lives; what was published meanwhile is
  // delivered when the outermost hold ends.
  class Hold {
   public:
    explicit Hold(ChangeFeed& feed) : feed_(feed) { ++feed_.holds_; }
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    ChangeFeed& feed_;
  };
  [[nodiscard]] Hold hold() { return Hold(*this); }

 private:
  void drain();

  // By (stage, subscription order): the delivery order.
  std::map<std::pair<Stage, uint64_t>, Handler> handlers_;
  uint64_t next_id_ = 0;
  std::deque<Change> queue_;
  bool delivering_ = false;
  int holds_ = 0;
};

}  // namespace swarmnet::daemon
