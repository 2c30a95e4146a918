// The daemon's networks and endpoints as the API sees them: it checks a
// request, then orchestrates the parts that do the work, the cluster IPAM
// (daemon/cluster_ipam.hpp: addresses, blocks) and the overlay
// (daemon/overlay.hpp: bridges, VXLAN, packet filter), over the Store
// (durable tables). Runs on the daemon's single I/O thread, so it needs no
// locks; every method either completes (journaled, kernel updated) or
// throws with nothing changed.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/api.hpp"
#include "common/error.hpp"
#include "daemon/cluster_ipam.hpp"
#include "daemon/dataplane.hpp"
#include "daemon/membership.hpp"
#include "daemon/overlay.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

class Controller {
 public:
  Controller(Store& store, Dataplane& dataplane, std::string node_name);
  ~Controller();

  // Joins the controller to a cluster (or, with nullptrs, back to one
  // node). `local_vtep` is this node's underlay address for the overlay.
  void set_membership(const Membership* membership, BlockExchange* blocks,
                      std::optional<Ipv4Address> local_vtep);
  // The cluster goes away with the daemon (shutdown, not `cluster leave`):
  // forgets it without telling anyone, so that what the kernel holds
  // (balancers' remote backends, the mesh, overlay entries) stays as it is
  // for the daemon's next start instead of being reprogrammed as if every
  // other node had died.
  void forget_membership();
  // Membership changed (a node joined, died, came back): published on the
  // store's feed, where the overlays are reprogrammed first, then the rest.
  void on_membership_change();
  // This host's kernel side of the networks (bridges, VXLAN, packet filter).
  Overlay& overlay() { return overlay_; }
  // Which addresses this node hands out, and the block protocol with the
  // other nodes (donations, reclaims, default address pools).
  ClusterIpam& ipam() { return ipam_; }
  const ClusterIpam& ipam() const { return ipam_; }
  // Takes over the address blocks of a node that has been dead longer than
  // the reclaim time (the cluster layer decides when, and that only one
  // node does it); the addresses its endpoints hold stay held. Returns the
  // number of blocks taken.
  size_t reclaim_from(const std::string& dead_node);
  // The operator says a dead node is gone for good: its blocks are taken as
  // by reclaim_from() and its endpoints released (not the service VIPs it
  // reserved). Returns the number of endpoints released.
  size_t release_node(const std::string& gone_node);

  // Asks for the block an allocation found missing (the cluster IPAM's
  // request; no-op on a single node).
  void request_block(const BlockNeeded& needed) { ipam_.request_block(needed.network_id(), needed.range()); }

  // Brings the kernel in line with the tables after a (re)start.
  void reconcile();

  api::Network create_network(const api::NetworkCreate& request);
  std::vector<api::Network> list_networks() const;
  api::Network inspect_network(const std::string& name_or_id) const;
  void remove_network(const std::string& name_or_id);

  // Returns the endpoint and whether it was created (false: it existed).
  // With `sync_later` its record is written but not fdatasync'ed before
  // this returns (already applied and published to the other parts): the
  // caller calls sync_state() before the endpoint's owner is told it exists
  // (the API's POST ...?sync=later, docs/api.md).
  std::pair<api::Endpoint, bool> create_endpoint(const std::string& network,
                                                 const api::EndpointCreate& request, bool sync_later = false);
  // Makes every change so far durable (Store::sync_journal()): what a
  // create_endpoint(..., sync_later) left to do.
  void sync_state() { store_.sync_journal(); }
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
  std::vector<Ipv4Address> underlay_peers() const { return overlay_.underlay_peers(); }
  // Called with every new endpoint of this node, and with one that changes
  // service, before it is stored: fills in what depends on the services
  // (its host ports) and may refuse it by throwing.
  void set_endpoint_completer(std::function<void(EndpointRecord&)> completer) {
    endpoint_completer_ = std::move(completer);
  }
  // Where encrypted networks' ESP is programmed; without one (or with one
  // whose kernel lacks ESP) encrypted networks are refused here.
  void set_encryption(const Encryption* encryption) { overlay_.set_encryption(encryption); }

  // Whether endpoints are told to resolve through swarmnetd's DNS.
  void set_dns_enabled(bool enabled) { dns_enabled_ = enabled; }

  // The host bridge name of a network ("swn-" + 11 characters of its id).
  static std::string bridge_name(const std::string& network_id);

 private:
  const NetworkRecord& resolve(const std::string& name_or_id) const;
  bool alive(const std::string& node_id) const;
  void on_store_change(TableId table, const std::string& key);
  void delete_endpoint_record(const NetworkRecord& network, const EndpointRecord& endpoint);
  api::Network to_api(const NetworkRecord& n) const;
  api::Endpoint to_api(const NetworkRecord& n, const EndpointRecord& e) const;

  Store& store_;
  Overlay overlay_;
  ClusterIpam ipam_;
  std::string node_name_;
  ChangeFeed::Subscription subscription_;
  const Membership* membership_ = nullptr;
  bool dns_enabled_ = false;
  std::function<void(EndpointRecord&)> endpoint_completer_;
};

}  // namespace swarmnet::daemon
