// The cluster's ingress, in one place: what publishing a service's port in
// ingress mode means, and the rules of the network that carries it. The
// rest of the daemon asks here; the kernel side lives beside this file
// (routing_mesh.hpp keeps it in line with the tables, ingress_sandbox.hpp
// and mesh_kernel.hpp are the kernel's part).
//   - The network: `cluster init` makes one network named "ingress"
//     (NetworkRecord::ingress) unless the tables hold one. No container
//     joins it: only each node's sandbox (its endpoint "ingress-sandbox")
//     and the services' ingress VIPs hold addresses there.
//   - The ports: a service's ingress ports are the cluster's, every node
//     answers on them, so one number serves one service (and no host-mode
//     port may take it). A port without a number gets the first free one of
//     30000-32767, as in swarm, and keeps it through updates.
//   - The VIPs: a service publishing in ingress mode holds a VIP on the
//     ingress network, reserved like its other VIPs (services.hpp) and
//     balanced in every node's sandbox, not on the host.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/api.hpp"
#include "common/ipv4.hpp"
#include "daemon/records.hpp"

namespace swarmnet::daemon {

class Controller;
class Store;

inline constexpr const char* kIngressNetworkName = "ingress";
// Without a subnet or address pools given to `cluster init`.
inline constexpr const char* kDefaultIngressSubnet = "10.255.0.0/16";
inline constexpr unsigned kIngressPortFirst = 30000;
inline constexpr unsigned kIngressPortLast = 32767;
// The owner of the host's DNAT rules of ingress ports (kernel/published_ports.hpp).
inline constexpr const char* kIngressPortOwner = "ingress";
// A node's sandbox on the ingress network: its endpoint's container id,
// and the host end of its veth on the ingress bridge (containers' are "swv...").
inline constexpr const char* kSandboxContainerId = "ingress-sandbox";
inline constexpr const char* kSandboxHostLink = "swi-sandbox";

bool is_ingress_network(const NetworkRecord& network);
// The ingress network, if the cluster has one.
const NetworkRecord* find_ingress_network(const Store& store);
// The ingress network, or Error(unavailable) saying where one comes from.
const NetworkRecord& ingress_network(const Store& store);
// At `cluster init`: makes the ingress network unless the tables hold one,
// on `subnet`, else from the address pools given to init, else on
// kDefaultIngressSubnet. Error saying what to choose when that fails.
void create_ingress_network(Controller& controller, const Store& store, std::optional<Ipv4Prefix> subnet,
                            bool pools_given);
// Why this endpoint may not be made on `network` (nullopt: it may): on the
// ingress network, only a node's sandbox and address-only VIP reservations.
std::optional<std::string> ingress_join_refusal(const NetworkRecord& network, const api::EndpointCreate& req);

bool has_ingress_ports(const ServiceRecord& s);
// The network of the service's ingress VIP: the ingress network's id while
// the service publishes a port in ingress mode (Error(unavailable) when the
// cluster has none), else nullopt.
std::optional<std::string> ingress_vip_network(const Store& store, const ServiceRecord& s);
// The endpoint key of the service's VIP reservation on the ingress network.
std::optional<std::string> ingress_vip_reservation(const Store& store, const std::string& service_name);
// Numbers and checks the service's published ports against every other
// service's: ingress ports without a number get one (the number `before`
// had for the same target and protocol, else the first free one);
// Error(conflict) when an ingress port is published by another service, or
// a host-mode port with a number takes one of theirs; Error(invalid_argument)
// for a dnsrr service publishing in ingress mode.
void number_published_ports(const Store& store, ServiceRecord& s, const ServiceRecord* before);
// The ingress ports of every service, taken on every node:
// "tcp/30080" -> "service web (ingress mode, every node)".
std::map<std::string, std::string> ingress_ports_taken(const Store& store);

// What the routing mesh keeps on the host while the cluster has an ingress
// network (nothing without one): its links and its nftables table. Any other
// of the kind a run left behind is stale (leftovers.hpp).
std::vector<std::string> ingress_host_links(const Store& store);
std::optional<std::string> ingress_host_table(const Store& store);

}  // namespace swarmnet::daemon
