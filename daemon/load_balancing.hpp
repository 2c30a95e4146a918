// Keeps this host's kernel balancer (lb::Balancer: nftables or IPVS) in line
// with the services: every VIP of a vip-mode service, on every network that
// has a bridge on this host, balanced across the service's healthy tasks on
// live nodes, wherever they run (east-west balancing at the source host, as
// swarm does). Follows the store's feed (services, endpoints, membership);
// programs only the VIPs a change touches, found through the store's index.
//
// Node-local access: the host's own processes reach the VIPs too (the
// balancer DNATs in the output hook). A task on another node must be able to
// answer them, and the gateway address is every node's, so each node gets an
// address of its own on each network it has (swarm's per-node load-balancer
// endpoint): an endpoint of owner "node" from the cluster IPAM, so unique
// cluster-wide, whose record gives the other nodes their neighbour and FDB
// entries to it like a container's. It lives on the network's bridge (whose
// MAC becomes the endpoint's), the firewall SNATs the host's DNATed flows
// into the bridge to it (map node-addresses), and it is released when the
// network leaves the node. Only while the network has an endpoint on another
// node: a network of one node needs none (and keeps its addresses).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/controller.hpp"
#include "common/key_digest.hpp"
#include "daemon/store.hpp"
#include "kernel/netlink.hpp"
#include "kernel/nftables.hpp"
#include "lb/balancer.hpp"

namespace swarmnet::daemon {

class LoadBalancing {
 public:
  // This node's own address on a network: on the network's bridge and in
  // the firewall's node-addresses map; nullopt takes it away. Throws
  // swarmnet::Error. The kernel's unless given (tests give a fake).
  struct NodeAddress {
    Ipv4Address ip;
    std::string mac;
  };
  using NodeAddressKernel = std::function<void(const std::string& bridge, const std::optional<NodeAddress>& address)>;
  LoadBalancing(Store& store, Controller& controller, lb::Balancer& balancer, NodeAddressKernel kernel = {});
  ~LoadBalancing();
  LoadBalancing(const LoadBalancing&) = delete;
  LoadBalancing& operator=(const LoadBalancing&) = delete;

  // Makes the kernel hold exactly the intended VIPs (at start).
  void resync();
  // What this host's kernel should hold, sorted by key.
  std::vector<lb::VirtualIp> intended() const;
  // "" when the kernel matches; else one line per difference.
  std::string check();
  std::string_view backend_name() const { return balancer_.name(); }
  // The VIPs this host's balancer was given, by key.
  const std::map<std::string, lb::VirtualIp>& programmed() const { return programmed_; }
  // Told how long each change of one VIP took the balancer ("upsert" or
  // "remove"), and whether it failed (for metrics).
  using ProgramObserver = std::function<void(const char* operation, double seconds, bool failed)>;
  void set_program_observer(ProgramObserver observer) { observer_ = std::move(observer); }

 private:
  void on_change(const Change& c);
  void update_service(const ServiceRecord& service);
  void update_services_on(const std::string& network_id);
  void update_services_of_node(const std::string& node_id);
  // Every service with this name (ReadModel::services_named): the tasks of
  // a name serve each.
  void update_services_named(const std::string& name);
  void program(const std::string& key, const std::optional<lb::VirtualIp>& want);
  // Creates, programs or releases this node's own address on the network.
  void sync_node_address(const std::string& network_id);
  void set_node_address_element(const std::string& bridge, std::optional<Ipv4Address> address);
  std::optional<lb::VirtualIp> vip_of(const ServiceRecord& s, const std::string& network_id) const;

  Store& store_;
  Controller& controller_;
  Liveness alive_;  // the controller's
  lb::Balancer& balancer_;
  ChangeFeed::Subscription subscription_;
  std::map<std::string, lb::VirtualIp> programmed_;  // by key
  // The service each endpoint was last seen in (by endpoint key), so a
  // task that moves to another service, or to none, also leaves the old one.
  // By the key's digest (common/key_digest.hpp): not a copy of each key.
  std::map<KeyDigest, std::string> service_of_;
  ProgramObserver observer_;
  std::map<std::string, Ipv4Address> node_addresses_;  // programmed, by network id
  NodeAddressKernel node_address_kernel_;
  std::unique_ptr<kernel::NetlinkSocket> nl_;
  std::unique_ptr<kernel::NftContext> nft_;
};

inline constexpr const char* kNodeContainerId = "swarmnet-node";
inline constexpr const char* kNodeIfname = "node0";

// The balancer --lb-backend asks for: "ipvs", "nftables", or "auto" (IPVS
// where the kernel has it, nftables otherwise). Logs which.
std::unique_ptr<lb::Balancer> choose_balancer(const std::string& wanted);

}  // namespace swarmnet::daemon
