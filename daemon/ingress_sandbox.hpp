// The kernel side of the routing mesh on one node: the gateway bridge and the
// ingress sandbox, what docker_gwbridge and ingress_sbox are for swarm.
//
//   outside ── node's underlay address:PUBLISHED
//     host, prerouting (inet swarmnet, chain published-dnat, owner "ingress"):
//       DNAT to the service's ingress VIP:TARGET
//     host routes the ingress subnet via the sandbox, over the gateway bridge
//   swn-gwbridge (host 172.29.0.1/24) ── gw0 (sandbox 172.29.0.2/24)
//     sandbox, prerouting: lb::Balancer (the same nftables or IPVS code as the
//       host's VIPs) DNATs VIP:TARGET to one healthy task, hashing the flow
//     sandbox routes each task: one on this node back to the host over gw0,
//       one on node H to H's sandbox over ingress0 (the ingress overlay)
//     sandbox, postrouting: masquerade what it balanced, so replies come back
//       through it (the client's address is not seen by the task, as in swarm)
//   ingress0 (the node's address on the ingress network) ── the ingress
//     bridge (no gateway address) ── VXLAN ── other nodes' sandboxes
//     H's sandbox forwards to H's host over gw0, H's host into the task's bridge
//
// Why two DNATs in two namespaces: Linux NATs a connection once per hook, so
// "node address -> VIP" and "VIP -> task" cannot both happen in the host's
// prerouting; the sandbox's own conntrack does the second. And why a
// sandbox at all rather than the host: a task's replies must come back to
// the node that balanced them, which the masquerade to the sandbox's own
// address on the ingress network makes sure of, while the host's bridges
// all share their network's gateway address.
//
// The sandbox lives as long as swarmnetd (its namespace is held by a
// descriptor, not a name): restarting swarmnetd interrupts the routing mesh
// for that time; the host rules stay, and the sandbox is made anew.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/ipv4.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "lb/balancer.hpp"

namespace swarmnet::daemon {

inline constexpr const char* kGatewayBridge = "swn-gwbridge";
inline constexpr const char* kGatewayBridgeSandboxLink = "swn-gwsbox";
inline constexpr const char* kSandboxIngressLink = "ingress0";
inline constexpr const char* kSandboxGatewayLink = "gw0";
inline constexpr const char* kDefaultGatewayBridgeSubnet = "172.29.0.0/24";

struct IngressSandboxConfig {
  Ipv4Prefix gateway_subnet;     // the host has .1 on swn-gwbridge, the sandbox .2
  Ipv4Prefix ingress_subnet;     // the ingress network's
  std::string ingress_bridge;    // its bridge on this host
  unsigned ingress_mtu = 1450;
  Ipv4Address address;           // this node's address on the ingress network
  std::string mac;               // and its MAC (the other nodes' neighbour entries hold it)
  std::string host_link;         // the host end of the ingress veth
  std::string lb_backend;        // "ipvs", "nftables" or "auto", as the host's
};

class IngressSandbox {
 public:
  // Builds it all; throws Error with what failed, leaving nothing behind.
  explicit IngressSandbox(const IngressSandboxConfig& config);
  // The sandbox goes with its namespace; the host's route to it stays.
  ~IngressSandbox();
  IngressSandbox(const IngressSandbox&) = delete;
  IngressSandbox& operator=(const IngressSandbox&) = delete;

  // The balancer inside the sandbox: VirtualIp.bridge is kSandboxIngressLink.
  lb::Balancer& balancer() { return *balancer_; }
  // Makes the sandbox's routes to tasks exactly `routes`: task -> the
  // sandbox of its node (nullopt: the task is on this node).
  void sync_routes(const std::map<Ipv4Address, std::optional<Ipv4Address>>& routes);
  Ipv4Address host_address() const;
  Ipv4Address sandbox_address() const;

 private:
  void build();
  void teardown() noexcept;

  IngressSandboxConfig config_;
  kernel::Netns netns_;
  kernel::NetlinkSocket host_;
  std::optional<kernel::NetlinkSocket> sandbox_;
  std::unique_ptr<lb::Balancer> balancer_;
  std::map<Ipv4Address, std::optional<Ipv4Address>> routes_;
};

}  // namespace swarmnet::daemon
