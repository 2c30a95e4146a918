// The daemon's event stream (GET /v1/events, `swarmnetctl events`).
//
// StateEvents turns what this daemon applies into typed events: changes of
// the replicated tables (its own writes and those merged from other nodes)
// and membership changes, from the store's feed (daemon/change_feed.hpp,
// where it is told last, after this host applied the change), and new
// keyrings, told by the Cluster. EventBus hands
// each to every subscriber whose filter it matches.
//
// Ordering: events come in the order this daemon applied the changes, on its
// one thread. Changes of one entry therefore come in the order of their
// versions (an older version is never applied after a newer one), but two
// nodes' changes may be seen in different orders on different nodes, and a
// change superseded before it arrived here (a network made and removed
// while this node was cut off) is never seen at all.
//
// A subscriber never slows the daemon: publish() only appends to the
// subscriber's queue. A subscriber with kDefaultQueueLimit events waiting is
// cut off: its queue ends with one last event (type "events", action
// "lost") and takes nothing more; the API server writes what is queued and
// closes the stream.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/event.hpp"
#include "common/key_digest.hpp"
#include "common/shared_string.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

class EventBus {
 public:
  static constexpr size_t kDefaultQueueLimit = 1024;
  explicit EventBus(size_t queue_limit = kDefaultQueueLimit) : queue_limit_(queue_limit) {}

  class Subscription {
   public:
    // The queued events as JSON lines (each ending in '\n'), oldest first;
    // empties the queue.
    std::string take();
    bool has_pending() const { return !pending_.empty(); }
    // Cut off for being too slow: the queue ends with the "lost" event and
    // nothing is added any more.
    bool lost() const { return lost_; }

   private:
    friend class EventBus;
    EventFilter filter_;
    std::function<void()> wake_;
    std::string pending_;
    size_t count_ = 0;
    bool lost_ = false;
  };

  // `wake` is called (from publish) when events are queued for it. The
  // subscription ends when the returned pointer is released.
  std::shared_ptr<Subscription> subscribe(EventFilter filter, std::function<void()> wake);
  // Stamps the event with the current time if it has none and queues it.
  void publish(Event event);
  size_t subscribers();

 private:
  size_t queue_limit_;
  std::vector<std::weak_ptr<Subscription>> subscribers_;
};

class StateEvents {
 public:
  // Subscribes to the store's feed. The entries already there are what the
  // stream starts from: they make no events.
  StateEvents(Store& store, EventBus& bus);
  ~StateEvents();
  StateEvents(const StateEvents&) = delete;
  StateEvents& operator=(const StateEvents&) = delete;

  // Node names for the events' attributes (the cluster knows them); without
  // one, or for an unknown node, the first 12 characters of its id.
  void set_node_names(std::function<std::optional<std::string>(const std::string& node_id)> names) {
    node_names_ = std::move(names);
  }
  // A member's state changed; `before` is "" for a node first seen.
  // States: alive, suspect, dead, left.
  void member_changed(const std::string& id, const std::string& name, const std::string& address,
                      const std::string& status, const std::string& before);
  // A new keyring version is in use (a step of `cluster rotate-key`).
  // `step`: distribute (a new key is known), primary (it seals now),
  // retire (the old key is gone).
  void keyring_changed(uint64_t version, size_t keys, const std::string& step);

 private:
  // What an entry looks like, as its events describe it.
  struct Described {
    std::map<std::string, std::string> attributes;
    std::string id;
    bool healthy = true;
  };
  // What an entry looked like when last seen: enough to tell create from
  // update and to notice that its attributes changed, not the attributes
  // themselves. A removal is described from the store's tombstone, which
  // keeps the entry's last value (daemon/store.hpp). Holding the attributes
  // here cost about 180 bytes an endpoint, a tenth of the daemon's memory
  // per endpoint; a digest of them costs 16.
  // Except the attributes that name other things (an endpoint's network and
  // node, a service's networks and VIPs): kept as last seen, so a removal
  // names them as its creation did even when that node has been forgotten
  // or that network's tombstone reaped since. Few distinct texts for
  // thousands of entries: SharedStrings.
  struct Seen {
    KeyDigest attributes;  // of the attributes, packed (see seen_of)
    bool healthy = true;
    SharedString names[2];  // the values of its table's naming_attributes (events.cpp)
  };
  static Seen seen_of(TableId table, const Described& d);
  void on_change(TableId table, const std::string& key);
  // The entry at `key` as it is now; with `tombstone`, also as a tombstone
  // left it (its last value). nullopt when there is none.
  std::optional<Described> describe(TableId table, const std::string& key, bool tombstone = false) const;
  std::string node_name(const std::string& node_id) const;
  std::string network_name(const std::string& network_id) const;

  Store& store_;
  EventBus& bus_;
  ChangeFeed::Subscription subscription_;
  std::function<std::optional<std::string>(const std::string&)> node_names_;
  // table -> key (its digest: an endpoint key is about 110 bytes) -> last live state
  std::map<TableId, std::map<KeyDigest, Seen>> seen_;
};

}  // namespace swarmnet::daemon
