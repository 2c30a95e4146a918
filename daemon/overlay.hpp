// This host's share of the cluster's networks, as the kernel holds it: a
// bridge for each network with a local container, its VXLAN device and the
// static entries of the other hosts' containers on it, and the packet filter
// for every network of the cluster. It reads the tables (Store) and the
// membership and programs the Dataplane; the controller tells it when a
// local container comes or goes and when the tables or the membership
// changed. Runs on the daemon's thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "daemon/dataplane.hpp"
#include "daemon/membership.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

class Encryption;

class Overlay {
 public:
  // The smallest MTU a network may have (IPv4's minimum datagram).
  static constexpr unsigned kMinMtu = 576;

  Overlay(Store& store, Dataplane& dataplane);

  // The cluster (nullptr: this node alone) and this node's underlay address,
  // the local end of every VXLAN tunnel. Programs nothing by itself.
  void set_membership(const Membership* membership, std::optional<Ipv4Address> local_vtep);
  // Where encrypted networks' ESP is programmed; without one (or with one
  // whose kernel lacks ESP) encrypted networks cannot be carried here.
  void set_encryption(const Encryption* encryption) { encryption_ = encryption; }
  // Why this node cannot carry encrypted networks; nullopt: it can.
  std::optional<std::string> encryption_missing() const;
  // The cluster key's generation encrypted networks use (0 without one).
  uint32_t key_generation() const;

  // The host bridge name of a network ("swn-" + 11 characters of its id).
  static std::string bridge_name(const std::string& network_id);

  // Brings the kernel in line with the tables after a (re)start: bridges for
  // networks with local endpoints, none for the others, no host end of an
  // endpoint deleted meanwhile.
  void reconcile();
  // The membership changed: the packet filter's underlay peers, and every
  // local network's remote entries.
  void membership_changed();
  // Hands membership's underlay_peers() to the packet filter when they
  // changed (the first call always does; an empty list without a
  // membership).
  void sync_underlay_peers();
  // The members' underlay addresses, as last given to the packet filter.
  std::vector<Ipv4Address> underlay_peers() const {
    return underlay_peers_.value_or(std::vector<Ipv4Address>{});
  }
  // The packet filter for every network of the cluster.
  void sync_firewall();
  // Programs this host's kernel for one network from the tables (nothing
  // unless a local container is attached to it): the full diff, O(the
  // network's endpoints), reading the kernel's entries back.
  void sync_network(const std::string& network_id);
  // Another node's endpoint record changed (added, changed or deleted): only
  // that endpoint's kernel entries change, against what this host last
  // programmed, without walking the network or reading the kernel, so each
  // change costs every node O(1) whatever the network's size. A network not
  // programmed here (yet) gets sync_network.
  void endpoint_changed(const std::string& network_id, const std::string& endpoint_key);
  // A network record changed on another node (created, changed or deleted).
  void network_changed(const std::string& network_id);

  // Before a local container's record is stored: its network's bridge
  // exists (the record's listeners act on it at once). Throws with nothing
  // left behind.
  void prepare_attach(const NetworkRecord& network);
  // After it is stored: a network brought to this host by its first
  // container gets its overlay; otherwise the bridge is checked.
  void attached(const NetworkRecord& network);
  // After a local container's record is deleted: its host link goes, and
  // the network's bridge with the network's last local container.
  void detached(const NetworkRecord& network, const std::string& host_ifname);
  // A repeated ADD: repairs the bridge.
  void repair(const NetworkRecord& network);
  // The network is gone: its bridge (and VXLAN device) goes.
  void remove(const std::string& network_id);

  // Local endpoints attached to a network (those that need its bridge).
  size_t local_attached_endpoints(const std::string& network_id) const;
  // A new network's MTU: the underlay's less the tunnel's (and ESP's) overhead.
  unsigned default_mtu(bool encrypted);
  // The subnets a network picked from the default pools keeps clear of.
  std::vector<HostRoute> host_routes() { return dataplane_.host_routes(); }
  // A VNI for a new network: drawn from its random id, skipping those in use.
  // Error(exhausted) when none is left.
  uint32_t pick_vni(const std::string& network_id) const;

 private:
  // What sync_network and endpoint_changed last programmed for a network
  // with a local bridge: the remote endpoints by key, and who holds each
  // address. Two endpoints can hold the same one (a clash across nodes): the
  // kernel entry serves the smallest holder (remote_entries()), and removing
  // one holder must leave the entry to the others.
  // The holders point at `endpoints`' own entries rather than copy them: a
  // node keeps this for every remote endpoint of its networks, and copies of
  // the 110-byte keys and the entries, twice more, cost about 400 bytes each.
  // So it moves but never copies (a copy's holders would point at the
  // original's entries).
  struct Programmed {
    using Entry = std::map<std::string, RemoteEndpoint>::value_type;
    struct SmallestFirst {
      bool operator()(const Entry* a, const Entry* b) const {
        return std::tie(a->second, a->first) < std::tie(b->second, b->first);
      }
    };
    using Holders = std::set<const Entry*, SmallestFirst>;
    std::map<std::string, RemoteEndpoint> endpoints;  // endpoint key -> its entries
    std::map<std::string, Holders> by_mac;
    std::map<Ipv4Address, Holders> by_ip;

    Programmed() = default;
    Programmed(Programmed&&) = default;
    Programmed& operator=(Programmed&&) = default;
    Programmed(const Programmed&) = delete;
    Programmed& operator=(const Programmed&) = delete;

    void add(const std::string& key, const RemoteEndpoint& r);
    void remove(const std::string& key);
    // The kernel entry of an address as remote_entries() makes it; nullopt:
    // none.
    std::optional<Ipv4Address> fdb_of(const std::string& mac) const;
    std::optional<std::string> neighbor_of(Ipv4Address ip) const;
  };

  bool alive(const std::string& node_id) const;
  void warn_conflicts(const NetworkRecord& network) const;
  // The entries an endpoint needs on this host; nullopt: none (local, not
  // attached, its node dead or without an address). Needs a membership.
  std::optional<RemoteEndpoint> remote_endpoint(const EndpointRecord& ep) const;
  // The kernel's entries for the network may no longer be what programmed_
  // says (removed, failed half-way, not synced): the next change syncs fully.
  void forget(const std::string& network_id) { programmed_.erase(network_id); }

  Store& store_;
  Dataplane& dataplane_;
  const Membership* membership_ = nullptr;
  std::optional<Ipv4Address> local_vtep_;
  std::optional<std::vector<Ipv4Address>> underlay_peers_;  // as last given to the filter
  const Encryption* encryption_ = nullptr;
  std::map<std::string, Programmed> programmed_;  // network id -> what its overlay holds
};

}  // namespace swarmnet::daemon
