// A VIP's /32 address on its network's bridge, shared by both balancers.
// The address is there so the containers' ARP for the VIP is answered by
// the host (the packets are then DNATed before routing, so no host process
// ever sees them).
//
// How a VIP address is told from the bridge's other addresses (the anycast
// gateway, anything an operator added): it is added with the address
// protocol IFA_PROTO = kVipAddressProtocol (kernel 6.0+, shown by
// `ip address` as "proto 83"). On a kernel that does not report IFA_PROTO,
// a /32 on a link whose name starts with "swn-" counts instead.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/netlink.hpp"

namespace swarmnet::lb {

// 'S' for swarmnet; userspace owns every value above the kernel's (0-3).
inline constexpr uint8_t kVipAddressProtocol = 83;
// The node's own address on a network (see ensure_node_address).
inline constexpr uint8_t kNodeAddressProtocol = 84;

// Adds vip/32 to `bridge`, marked as a VIP address; no error if it is
// already there. Error(not_found) if the bridge does not exist, Error with
// the kernel's message otherwise.
void ensure_vip_address(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address vip);

// Removes vip/32 from `bridge`; no error if the address or the bridge is
// already gone.
void remove_vip_address(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address vip);

// The node's own address on a network: `address`/32 on the bridge (marked
// kNodeAddressProtocol, so it is never taken for a VIP), and the bridge's
// MAC set to `mac`, the address's MAC in the cluster's tables: the other
// nodes send the replies for this address to that MAC, and only the
// bridge's own MAC makes the bridge take a frame for itself. The bridge
// announces the change (arp_notify), so local containers update the
// gateway's MAC at once. Idempotent; Error(not_found) if the bridge is gone.
void ensure_node_address(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address address,
                         const std::string& mac);

// Every VIP address of this namespace as (bridge, vip), sorted.
std::vector<std::pair<std::string, Ipv4Address>> list_vip_addresses(kernel::NetlinkSocket& nl);

}  // namespace swarmnet::lb
