// The store's index of its live entries, for the questions every part of the
// daemon asks on each change: the endpoints of a network, of a service, of a
// node; this node's attached endpoints of a network; the services on a
// network or with a name; a service's VIP reservations. Each answer costs a
// lookup, not a scan of the tables. The Store keeps it in step with every
// change (local or merged) before the change is published on its feed, so
// a subscriber always reads the index of the state it is told about.
//
// healthy_tasks() is the one rule for "the tasks that serve a service",
// used by the balancers, the routing mesh, service inspect and DNS.
#pragma once

#include <cstddef>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daemon/records.hpp"

namespace swarmnet::daemon {

// The label that marks a service's VIP reservation (an address-only
// endpoint), its value the service's name.
inline constexpr const char* kVipLabel = "swarmnet.vip";

// A sorted set of keys that holds pointers to strings owned elsewhere (the
// store's own table keys), not copies: an endpoint's key is about 110 bytes
// (network id, node id, container id, interface), and the index files each
// endpoint under three or four questions, so copies cost about 600 bytes an
// endpoint, most of swarmnetd's memory per endpoint after the store itself.
// Reads as a set of std::string (iteration in key order, size, contains).
class KeySet {
  struct Less {
    using is_transparent = void;
    bool operator()(const std::string* a, const std::string* b) const { return *a < *b; }
    bool operator()(const std::string* a, std::string_view b) const { return std::string_view(*a) < b; }
    bool operator()(std::string_view a, const std::string* b) const { return a < std::string_view(*b); }
  };
  using Set = std::set<const std::string*, Less>;

 public:
  class const_iterator {
   public:
    using iterator_category = std::bidirectional_iterator_tag;
    using value_type = std::string;
    using difference_type = std::ptrdiff_t;
    using pointer = const std::string*;
    using reference = const std::string&;
    const_iterator() = default;
    reference operator*() const { return **it_; }
    pointer operator->() const { return *it_; }
    const_iterator& operator++() { ++it_; return *this; }
    const_iterator operator++(int) { auto old = *this; ++it_; return old; }
    const_iterator& operator--() { --it_; return *this; }
    const_iterator operator--(int) { auto old = *this; --it_; return old; }
    bool operator==(const const_iterator&) const = default;

   private:
    friend class KeySet;
    explicit const_iterator(Set::const_iterator it) : it_(it) {}
    Set::const_iterator it_;
  };
  using iterator = const_iterator;
  using value_type = std::string;

  const_iterator begin() const { return const_iterator(keys_.begin()); }
  const_iterator end() const { return const_iterator(keys_.end()); }
  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }
  bool contains(std::string_view key) const { return keys_.find(key) != keys_.end(); }
  // `key` must stay where it is until erased (ReadModel's callers pass the
  // store's table key, which lives as long as the entry).
  void insert(const std::string& key) { keys_.insert(&key); }
  void erase(std::string_view key) {
    if (auto it = keys_.find(key); it != keys_.end()) keys_.erase(it);
  }
  // The keys as strings, in order (tests, and callers that need a copy).
  std::set<std::string> copy() const { return std::set<std::string>(begin(), end()); }

 private:
  Set keys_;
};

// The keys of the live endpoints of one network, or of one node on every
// network, read from the store's endpoint table itself: its keys begin with
// the network's id and then the node's (endpoint_key), so each answer is a
// range of the ordered table (for a node, one per network), tombstones
// skipped. Filing every endpoint under its network and its node in sets of
// their own cost two set nodes an endpoint (96 bytes, a tenth of the
// daemon's memory per endpoint). Reads as a forward range of std::string in
// key order; valid while the table lives (the store's changes may go on
// between two iterations, not during one that erases what it stands on).
class EndpointKeys {
 public:
  using Table = daemon::Table<EndpointRecord>;
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::string;
    using difference_type = std::ptrdiff_t;
    using pointer = const std::string*;
    using reference = const std::string&;
    const_iterator() = default;
    reference operator*() const { return it_->first; }
    pointer operator->() const { return &it_->first; }
    const_iterator& operator++() {
      ++it_;
      settle();
      return *this;
    }
    const_iterator operator++(int) {
      auto old = *this;
      ++*this;
      return old;
    }
    bool operator==(const const_iterator& o) const { return it_ == o.it_; }

   private:
    friend class EndpointKeys;
    explicit const_iterator(const EndpointKeys* keys);  // begin
    const_iterator(const EndpointKeys* keys, Table::const_iterator end) : keys_(keys), it_(end) {}
    // On to the first key at or after it_ that is asked for, or the end.
    void settle();
    // The range of the node's keys in the network whose first key is `at`.
    void enter_network(Table::const_iterator at);
    const EndpointKeys* keys_ = nullptr;
    Table::const_iterator it_, range_end_, next_network_;
  };
  using iterator = const_iterator;
  using value_type = std::string;

  static EndpointKeys on_network(const Table& table, std::string network_id) {
    return EndpointKeys(table, Of::network, std::move(network_id));
  }
  static EndpointKeys of_node(const Table& table, std::string node_id) {
    return EndpointKeys(table, Of::node, std::move(node_id));
  }
  const_iterator begin() const { return const_iterator(this); }
  const_iterator end() const { return const_iterator(this, table_->end()); }
  bool empty() const { return begin() == end(); }
  // Counts them: a walk of the range.
  size_t size() const { return static_cast<size_t>(std::distance(begin(), end())); }
  std::set<std::string> copy() const { return std::set<std::string>(begin(), end()); }

 private:
  enum class Of { network, node };
  EndpointKeys(const Table& table, Of of, std::string id) : table_(&table), of_(of), id_(std::move(id)) {}
  bool asked(const Entry<EndpointRecord>& e) const {
    return !e.deleted && (of_ == Of::network ? e.value.network_id == id_ : e.value.node == id_);
  }
  const Table* table_;
  Of of_;
  std::string id_;  // the network's or the node's
};

class ReadModel {
 public:
  using Keys = KeySet;

  // `endpoints`: the store's endpoint table, read for the endpoints of a
  // network and of a node (EndpointKeys).
  ReadModel(std::string node_id, const EndpointKeys::Table& endpoints)
      : node_id_(std::move(node_id)), endpoints_(&endpoints) {}

  // An entry's live value before and after a change (nullptr: absent or a
  // tombstone). The index keeps a pointer to `key`, not a copy (KeySet): it
  // must stay valid, unchanged, until the entry leaves the index (the Store
  // passes its table's own key, stable in its std::map node).
  void endpoint_changed(const std::string& key, const EndpointRecord* before, const EndpointRecord* after);
  void service_changed(const std::string& id, const ServiceRecord* before, const ServiceRecord* after);

  // Endpoint keys.
  EndpointKeys endpoints_on_network(const std::string& network_id) const {
    return EndpointKeys::on_network(*endpoints_, network_id);
  }
  // The endpoints whose `service` is this name (its tasks, on any network
  // and node, healthy or not).
  const Keys& endpoints_of_service(const std::string& service_name) const { return get(by_service_, service_name); }
  EndpointKeys endpoints_of_node(const std::string& node_id) const { return EndpointKeys::of_node(*endpoints_, node_id); }
  // This node's endpoints with a container attached (attach: true; not the
  // node's own address) on the network: while there is one, the network's
  // bridge is on this host.
  const Keys& local_attachments(const std::string& network_id) const { return get(local_attached_, network_id); }
  // The network's containers on the other nodes (attached, not a node's
  // own address): with one here too, this node needs an address of its own
  // on the network (load_balancing.hpp).
  const Keys& remote_containers(const std::string& network_id) const { return get(remote_containers_, network_id); }
  // The VIP reservations made for a service (label swarmnet.vip), any network.
  const Keys& vip_reservations_of(const std::string& service_name) const { return get(vips_of_, service_name); }

  // Service ids.
  const Keys& services_on_network(const std::string& network_id) const { return get(services_on_, network_id); }
  // The live service with this name (the smallest id if two nodes made one
  // each while cut off); "" if none.
  std::string service_named(const std::string& name) const;
  // Every live service with this name: more than one while gossip has not
  // yet brought the removal of one re-created under the same name, or when
  // two nodes made one each while cut off. Each has the same tasks.
  const Keys& services_named(const std::string& name) const { return get(service_by_name_, name); }

  // How many live endpoints of the network hold the address: more than one
  // only after a clash (two nodes handed it out across a partition). The
  // cluster IPAM frees an address when its last holder goes, without
  // rebuilding its address space from every endpoint.
  uint32_t holders(const std::string& network_id, Ipv4Address ip) const;

 private:
  static const Keys& get(const std::map<std::string, Keys>& m, const std::string& k);
  static void unlink(std::map<std::string, Keys>& m, const std::string& k, std::string_view key);

  std::string node_id_;
  const EndpointKeys::Table* endpoints_;
  std::map<std::string, Keys> by_service_, local_attached_, remote_containers_, vips_of_, services_on_,
      service_by_name_;
  // holders(): counts by holder_key(network, address). Two networks whose
  // ids share the key's hash bits share counts: that can only keep an
  // address held longer, never free it while held.
  static uint64_t holder_key(const std::string& network_id, Ipv4Address ip);
  std::unordered_map<uint64_t, uint32_t> holders_;
};

class Store;

// Whether a node is alive (the membership's answer; this node always is).
using Liveness = std::function<bool(const std::string& node_id)>;

// Whether a task serves: a container attached (an address-only reservation
// is no task) of a service, healthy (a failing health check takes it out; a
// service without one keeps its tasks healthy), on a live node.
bool is_healthy_task(const EndpointRecord& e, const Liveness& alive);

// The tasks of `service_name` on `network_id` that serve (is_healthy_task),
// sorted by endpoint key.
std::vector<const EndpointRecord*> healthy_tasks(const Store& store, const std::string& service_name,
                                                 const std::string& network_id, const Liveness& alive);

}  // namespace swarmnet::daemon
