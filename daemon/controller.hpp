// The daemon's logic: networks, endpoints and their addresses, on top of the
// Store (durable tables) and the Dataplane (this host's kernel state). Runs
// on the daemon's single I/O thread, so it needs no locks; every method
// either completes (journaled, kernel updated) or throws with nothing changed.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/api.hpp"
#include "common/error.hpp"
#include "daemon/dataplane.hpp"
#include "daemon/encryption.hpp"
#include "daemon/store.hpp"
#include "ipam/address_space.hpp"
#include "ipam/subnet_pool.hpp"

namespace swarmnet::daemon {

// What the controller needs to know of the cluster. Without one (a node that
// never joined a cluster) only this node exists and is alive.
class Membership {
 public:
  virtual ~Membership() = default;
  virtual bool is_alive(const std::string& node_id) const = 0;
  // The node's underlay address (its VXLAN tunnel endpoint).
  virtual std::optional<Ipv4Address> address_of(const std::string& node_id) const = 0;
  // Asks the nodes that own address blocks of a network to give one to us.
  virtual void request_block(const std::string& network_id) = 0;
  // False once this node has been cut off from a majority of the cluster
  // for longer than its lease: the majority may then reclaim its blocks, so
  // it must stop handing out addresses from them.
  virtual bool may_allocate() const { return true; }
  // The underlay addresses VXLAN may come from: every member's advertise
  // address, this node's included, a dead member's until it is reclaimed
  // (a healing partition is not cut off), not one that left.
  virtual std::vector<Ipv4Address> underlay_peers() const { return {}; }
};

// Thrown when this node owns no free address in a network but other nodes
// own blocks with room: the caller asks them for a block and retries.
class BlockNeeded : public Error {
 public:
  explicit BlockNeeded(std::string network_id, const std::string& message)
      : Error(Errc::exhausted, message), network_id_(std::move(network_id)) {}
  const std::string& network_id() const { return network_id_; }

 private:
  std::string network_id_;
};

class Controller {
 public:
  Controller(Store& store, Dataplane& dataplane, std::string node_name);
  ~Controller();

  // Joins the controller to a cluster (or, with nullptr, back to one node).
  // `local_vtep` is this node's underlay address for the overlay.
  void set_membership(Membership* membership, std::optional<Ipv4Address> local_vtep);
  // The cluster goes away with the daemon (shutdown, not `cluster leave`):
  // forgets it without telling anyone, so that what the kernel holds
  // (balancers' remote backends, the mesh, overlay entries) stays as it is
  // for the daemon's next start instead of being reprogrammed as if every
  // other node had died.
  void forget_membership();
  // Membership changed (a node joined, died, came back): reprogram overlays.
  void on_membership_change();
  // Hands membership's underlay_peers() to the packet filter when they
  // changed (the first call always does; an empty list without a
  // membership). on_membership_change() calls it while there is one.
  void sync_underlay_peers();
  // Another node asks for an address block of a network. If this node owns
  // a block with no address in use, it hands it over (writes the new owner)
  // and returns true.
  bool donate_block(const std::string& network_id, const std::string& requester);
  // Takes over the address blocks of a node that has been dead longer than
  // the reclaim time (the cluster layer decides when, and that only one
  // node does it); the addresses its endpoints hold stay held. Returns the
  // number of blocks taken.
  size_t reclaim_from(const std::string& dead_node);
  // The operator says a dead node is gone for good: its blocks are taken as
  // by reclaim_from() and its endpoints released (not the service VIPs it
  // reserved). Returns the number of endpoints released.
  size_t release_node(const std::string& gone_node);

  // Forwards to the membership (no-op on a single node).
  void request_block(const std::string& network_id) {
    if (membership_) membership_->request_block(network_id);
  }

  // Brings the kernel in line with the tables after a (re)start: bridges for
  // networks with local endpoints, none for the others.
  void reconcile();

  api::Network create_network(const api::NetworkCreate& request);
  std::vector<api::Network> list_networks() const;
  api::Network inspect_network(const std::string& name_or_id) const;
  void remove_network(const std::string& name_or_id);

  // Returns the endpoint and whether it was created (false: it existed).
  std::pair<api::Endpoint, bool> create_endpoint(const std::string& network,
                                                 const api::EndpointCreate& request);
  std::vector<api::Endpoint> list_endpoints(const std::string& network) const;
  api::Endpoint get_endpoint(const std::string& network, const std::string& container_id,
                             const std::string& ifname) const;
  // Sets the names of an existing endpoint of this node (Error(not_found)
  // otherwise); the change is replicated like any other.
  api::Endpoint update_endpoint(const std::string& network, const std::string& container_id,
                                const std::string& ifname, const api::EndpointUpdate& update);
  // False when there was nothing to delete (DEL may repeat).
  bool delete_endpoint(const std::string& network, const std::string& container_id,
                       const std::string& ifname);
  api::GcResult gc(const std::string& network, const api::GcRequest& request);
  // Deletes an endpoint record by its key, whichever node wrote it (a
  // service's VIP reservation); its address is released if this node owns it.
  void release_endpoint(const std::string& key);

  api::Status status() const;

  // Whether a node is alive (this node always is).
  bool is_alive(const std::string& node_id) const { return alive(node_id); }
  // The members' underlay addresses, as last given to the packet filter.
  std::vector<Ipv4Address> underlay_peers() const { return underlay_peers_.value_or(std::vector<Ipv4Address>{}); }
  // Called after every membership change (after the overlays are updated).
  void add_membership_listener(std::function<void()> listener) {
    membership_listeners_.push_back(std::move(listener));
  }
  // Called with every new endpoint of this node, and with one that changes
  // service, before it is stored: fills in what depends on the services
  // (its host ports) and may refuse it by throwing.
  void set_endpoint_completer(std::function<void(EndpointRecord&)> completer) {
    endpoint_completer_ = std::move(completer);
  }
  // Where networks created without a subnet come from: the cluster's
  // default address pools (swarm's 10.0.0.0/8 in /24s outside a cluster).
  void set_address_pools(ipam::AddressPools pools) { pools_ = std::move(pools); }
  const ipam::AddressPools& address_pools() const { return pools_; }
  // Pools against this host's routes: Error(invalid_argument) naming the
  // route when a pool has no subnet clear of them; else one warning per pool
  // that overlaps a route (its subnets overlapping one are skipped).
  std::vector<std::string> check_pools_against_routes(const ipam::AddressPools& pools);

  // Where encrypted networks' ESP is programmed; without one (or with one
  // whose kernel lacks ESP) encrypted networks are refused here.
  void set_encryption(const Encryption* encryption) { encryption_ = encryption; }
  // Why this node cannot carry encrypted networks; nullopt: it can.
  std::optional<std::string> encryption_missing() const;

  // Whether endpoints are told to resolve through swarmnetd's DNS.
  void set_dns_enabled(bool enabled) { dns_enabled_ = enabled; }

  // The host bridge name of a network ("swn-" + 11 characters of its id).
  static std::string bridge_name(const std::string& network_id);

 private:
  const NetworkRecord& resolve(const std::string& name_or_id) const;
  ipam::AddressSpace& space_of(const NetworkRecord& network);
  Ipv4Address allocate(const NetworkRecord& network, const api::EndpointCreate& request);
  void claim_block(const NetworkRecord& network, ipam::AddressSpace& space,
                   const Ipv4Prefix& block);
  size_t local_attached_endpoints(const std::string& network_id) const;
  const std::string& owner_of(const NetworkRecord& network, const Ipv4Prefix& block) const;
  bool alive(const std::string& node_id) const;
  void on_store_change(const std::string& table, const std::string& key);
  // Programs this host's kernel for one network from the tables.
  void sync_network(const std::string& network_id);
  // The packet filter for every network of the cluster.
  void sync_firewall();
  void warn_conflicts(const NetworkRecord& network) const;
  void delete_endpoint_record(const NetworkRecord& network, const EndpointRecord& endpoint);
  api::Network to_api(const NetworkRecord& n) const;
  api::Endpoint to_api(const NetworkRecord& n, const EndpointRecord& e) const;

  Store& store_;
  Dataplane& dataplane_;
  std::string node_name_;
  std::map<std::string, ipam::AddressSpace> spaces_;  // network id -> its addresses
  size_t listener_id_ = 0;
  Membership* membership_ = nullptr;
  std::optional<Ipv4Address> local_vtep_;
  std::optional<std::vector<Ipv4Address>> underlay_peers_;  // as last given to the filter
  std::vector<std::function<void()>> membership_listeners_;
  bool dns_enabled_ = false;
  const Encryption* encryption_ = nullptr;
  std::function<void(EndpointRecord&)> endpoint_completer_;
  ipam::AddressPools pools_ = ipam::default_address_pools();
};

}  // namespace swarmnet::daemon
