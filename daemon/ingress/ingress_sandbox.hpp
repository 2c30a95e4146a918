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
//   ingress0 (the node's address on the ingress network) ── the ingress
//     bridge (no gateway address) ── VXLAN ── other nodes' sandboxes
//     H's sandbox forwards to H's host over gw0, H's host into the task's bridge
//
// The client's address is kept: the task sees the outside client's own
// address. Its reply, addressed to the client, must still go back through
// the sandbox that balanced the request, the only one holding the NAT state
// that turns the task's address back into the VIP and the node's port.
// Nothing in the reply says which sandbox that was, so both ends of the
// path remember it in the connection (conntrack marks) and route the
// replies by it (policy routing):
//   - H's host marks the connections that come out of its sandbox
//     (kMeshReplyMark) and routes their replies back into it (rule fwmark
//     kMeshReplyMark -> table kMeshReplyTable: default via the sandbox);
//   - H's sandbox marks a connection that arrives on ingress0 with the
//     balancing sandbox's address on the ingress network, found from the
//     frame's source MAC (map peer-marks), and routes its replies back there
//     (one rule and table per other node: fwmark ADDRESS -> default via
//     ADDRESS on ingress0);
//   - the balancing sandbox gets the replies of its local tasks over gw0
//     anyway (its default route).
// Loose reverse-path filtering on the gateway bridge and in the sandbox
// lets a request from any client arrive there. Source NAT stays where the
// task could not answer the client itself: a client inside the cluster (a
// member's underlay address, the gateway bridge's subnet, the ingress
// network: the task's own host may hold that address, and would take the
// reply for itself) is masqueraded to the sandbox's address, as before; a
// flow whose chosen task is its own client is masqueraded by the balancer
// (its hairpin set). With keep_client_address off, every balanced flow is
// masqueraded, as in swarm.
//
// The shortcut (client kept, the default): when this node runs healthy tasks
// of the service, the host's own DNAT hashes each flow over all the tasks
// and DNATs this node's share straight to its tasks (task:TARGET, as host
// mode does: the reply meets the host's conntrack, never the sandbox); the
// other nodes' share goes to VIP:TARGET as above, and the sandbox's VIP
// then holds the other nodes' tasks only, so the spread stays even. A task
// the host DNATs to straight is in the host's hairpin set (table
// swarmnet-mesh): calling its own service's port it may get itself, and
// that flow is masqueraded to its bridge's address. Masquerading, or with
// no task here, every flow takes the path above.
//
// Why two DNATs in two namespaces: Linux NATs a connection once per hook, so
// "node address -> VIP" and "VIP -> task" cannot both happen in the host's
// prerouting; the sandbox's own conntrack does the second. And why a
// sandbox at all rather than the host: the host's bridges all share their
// network's gateway address on every node, while each sandbox has an
// address of its own on the ingress network to send replies back to.
//
// Only a DNATed flow (a published port) enters the gateway bridge from the
// host: nothing else of the outside reaches the sandbox, its VIPs or tasks.
//
// The sandbox lives as long as swarmnetd (its namespace is held by a
// descriptor, not a name): restarting swarmnetd interrupts the routing mesh
// for that time; the host rules stay, and the sandbox is made anew.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "kernel/nftables.hpp"
#include "lb/balancer.hpp"

namespace swarmnet::daemon {

inline constexpr const char* kGatewayBridge = "swn-gwbridge";
inline constexpr const char* kGatewayBridgeSandboxLink = "swn-gwsbox";
inline constexpr const char* kSandboxIngressLink = "ingress0";
inline constexpr const char* kSandboxGatewayLink = "gw0";
inline constexpr const char* kDefaultGatewayBridgeSubnet = "172.29.0.0/24";
// The host's table for the mesh (the sandbox's own is in its namespace).
inline constexpr const char* kMeshHostTable = "swarmnet-mesh";
// On the host: the conntrack mark of connections out of the sandbox, the
// firewall mark of their replies, the routing table that sends those back
// into the sandbox, and the priority of that rule.
inline constexpr uint32_t kMeshReplyMark = 0x4e5c0002;
inline constexpr uint32_t kMeshReplyTable = 0x4e5c0002;
inline constexpr uint32_t kMeshRulePriority = 20060;

struct IngressSandboxConfig {
  Ipv4Prefix gateway_subnet;     // the host has .1 on swn-gwbridge, the sandbox .2
  Ipv4Prefix ingress_subnet;     // the ingress network's
  std::string ingress_bridge;    // its bridge on this host
  unsigned ingress_mtu = 1450;
  Ipv4Address address;           // this node's address on the ingress network
  std::string mac;               // and its MAC (the other nodes' neighbour entries hold it)
  std::string host_link;         // the host end of the ingress veth
  std::string lb_backend;        // "ipvs", "nftables" or "auto", as the host's
  bool keep_client_address = true;  // false: masquerade every balanced flow, as swarm
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
  // The sandbox's route to a task: via the sandbox of its node (nullopt: the
  // task is on this node, back over gw0). Kept as set until removed.
  void set_route(Ipv4Address task, std::optional<Ipv4Address> via);
  void remove_route(Ipv4Address task);
  // The other nodes' sandboxes (address on the ingress network -> MAC), to
  // send the replies of the requests they balanced back to them, and the
  // members' underlay addresses (clients inside the cluster, masqueraded).
  void sync_peers(const std::map<Ipv4Address, std::string>& sandboxes, const std::vector<Ipv4Address>& members);
  // The host's hairpin set: the tasks of this node that the host's own
  // DNAT sends to straight (the shortcut); a flow from one of them to
  // itself is masqueraded on the host.
  void set_hairpin(const std::set<Ipv4Address>& tasks);
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
  std::optional<kernel::NftContext> nft_;  // bound to the sandbox
  std::map<Ipv4Address, std::string> peers_;
  std::optional<std::vector<Ipv4Address>> members_;
  std::set<Ipv4Address> hairpin_;  // as in the host's set
};

}  // namespace swarmnet::daemon
