// The daemon's logic: networks, endpoints and their addresses, on top of the
// Store (durable tables) and the Dataplane (this host's kernel state). Runs
// on the daemon's single I/O thread, so it needs no locks; every method
// either completes (journaled, kernel updated) or throws with nothing changed.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/api.hpp"
#include "daemon/dataplane.hpp"
#include "daemon/store.hpp"
#include "ipam/address_space.hpp"

namespace swarmnet::daemon {

class Controller {
 public:
  Controller(Store& store, Dataplane& dataplane, std::string node_name);

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
  // False when there was nothing to delete (DEL may repeat).
  bool delete_endpoint(const std::string& network, const std::string& container_id,
                       const std::string& ifname);
  api::GcResult gc(const std::string& network, const api::GcRequest& request);

  api::Status status() const;

  // The host bridge name of a network ("swn-" + 11 characters of its id).
  static std::string bridge_name(const std::string& network_id);

 private:
  const NetworkRecord& resolve(const std::string& name_or_id) const;
  ipam::AddressSpace& space_of(const NetworkRecord& network);
  Ipv4Address allocate(const NetworkRecord& network, const api::EndpointCreate& request);
  void claim_block(const NetworkRecord& network, ipam::AddressSpace& space,
                   const Ipv4Prefix& block);
  size_t local_attached_endpoints(const std::string& network_id) const;
  void delete_endpoint_record(const NetworkRecord& network, const EndpointRecord& endpoint);
  api::Network to_api(const NetworkRecord& n) const;
  api::Endpoint to_api(const NetworkRecord& n, const EndpointRecord& e) const;

  Store& store_;
  Dataplane& dataplane_;
  std::string node_name_;
  std::map<std::string, ipam::AddressSpace> spaces_;  // network id -> its addresses
};

}  // namespace swarmnet::daemon
