// Where a VIP lives on a host, shared by both balancers: a route of type
// local in the local table, as `ip route` shows it:
//
//   local VIP dev BRIDGE table local proto 83 scope host
//
// That makes the VIP one of the host's own addresses for the kernel: the
// containers' ARP for it is answered (arp_ignore 0), a packet to it is
// delivered locally when nothing DNATs it (IPVS takes it in INPUT, the
// nftables balancer's reject rule refuses it), and the host's own
// connections to it are routed locally. It is not an interface address on
// purpose: adding an IPv4 address walks the device's address list, so
// 10,000 VIP addresses on one bridge took seconds, while a route is one
// insertion into the local table's trie, its cost flat in the number of
// VIPs. The route goes with its bridge when the bridge is deleted.
//
// Our routes are told from the kernel's (an interface address's own local
// route) by their protocol, kVipProtocol. swarmnet releases before this
// put each VIP as a /32 address on the bridge marked with the same number
// (the address protocol IFA_PROTO): remove_legacy_vip_addresses finds and
// removes those.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/netlink.hpp"

namespace swarmnet::lb {

// 'S' for swarmnet: the protocol of a VIP's route (and of an older
// release's VIP address). Userspace owns the values above the kernel's, and
// iproute2's list of known protocols leaves 83 free.
inline constexpr uint8_t kVipProtocol = 83;
// The node's own address on a network (see ensure_node_address).
inline constexpr uint8_t kNodeAddressProtocol = 84;

// Makes `vip` local through `bridge` (the route above), whatever route to
// it the local table had (another bridge's, an older one's): one request,
// so the VIP never stops being local. Error(not_found) if the bridge does
// not exist, Error with the kernel's message otherwise.
void ensure_vip_route(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address vip);

// The same for many VIPs at once (a full load), with one link lookup per
// bridge instead of one per VIP. Stops at the first error, which names the
// VIP.
void ensure_vip_routes(kernel::NetlinkSocket& nl,
                       const std::vector<std::pair<std::string, Ipv4Address>>& routes);

// Removes the VIP route of `vip` through `bridge`; no error if it or the
// bridge is already gone. A route of `vip` through another bridge stays.
void remove_vip_route(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address vip);

// Every VIP route of this namespace as (bridge, vip), sorted.
std::vector<std::pair<std::string, Ipv4Address>> list_vip_routes(kernel::NetlinkSocket& nl);

// Removes the VIP addresses an older release put on the bridges (/32,
// address protocol kVipProtocol); returns how many. An address without
// that protocol (the node's own, the gateway, an operator's) stays.
size_t remove_legacy_vip_addresses(kernel::NetlinkSocket& nl);

// The node's own address on a network: `address`/32 on the bridge (marked
// kNodeAddressProtocol, so it is never taken for a legacy VIP address), and
// the bridge's MAC set to `mac`, the address's MAC in the cluster's tables:
// the other nodes send the replies for this address to that MAC, and only
// the bridge's own MAC makes the bridge take a frame for itself. The bridge
// announces the change (arp_notify), so local containers update the
// gateway's MAC at once. Idempotent; Error(not_found) if the bridge is gone.
void ensure_node_address(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address address,
                         const std::string& mac);

// The legacy VIP addresses of this namespace as (bridge, vip), sorted.
std::vector<std::pair<std::string, Ipv4Address>> list_legacy_vip_addresses(
    kernel::NetlinkSocket& nl);

}  // namespace swarmnet::lb
