// What an earlier life of swarmnetd left in the host's kernel that nothing
// of this one owns: the objects of a wiped state directory, or of a network
// deleted while the daemon was down. Left in place they do harm: four
// bridges of a wiped state held the gateway address of a new network with
// the same subnet, and that network's DNS was unreachable.
//
// swarmnet owns its kernel objects by name:
//   links   "swn-" (the networks' bridges, the gateway bridge and its port
//           to the ingress sandbox), "swx-" (VXLAN devices), "swi-" (the
//           sandbox's host end), "swv"/"swc" + 12 hex digits (the two ends
//           of an endpoint's veth; the container end only before it moves)
//   tables  nftables tables named "swarmnet" or "swarmnet-...", any family
//   VIPs    local routes of protocol 83 (lb/vip_addresses.hpp); they go with
//           their bridge, and a balancer's sync removes those of no VIP
// and this daemon owns: the bridge and VXLAN device of every network of its
// store, the veth of every endpoint of its store, the gateway bridge and
// the sandbox's links while the store has an ingress network, the tables
// its components use, and the VIPs when it runs a balancer. The rest is
// stale and removed at start.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/store.hpp"

namespace swarmnet::daemon {

bool is_swarmnet_link(std::string_view name);

// The names in `links` that are swarmnet's and that nothing in `store` owns.
std::vector<std::string> stale_links(const std::vector<std::string>& links, const Store& store);

// The tables in `tables` ("FAMILY NAME", as `nft list tables` names them)
// that are swarmnet's and whose name is not in `in_use`.
std::vector<std::string> stale_tables(const std::vector<std::string>& tables,
                                      const std::set<std::string>& in_use);

// Deletes the stale links of the calling thread's namespace, each with a
// log line. Returns how many went.
size_t remove_stale_links(const Store& store);
// Deletes the stale tables of the calling thread's namespace, each with a
// log line. Returns how many went.
size_t remove_stale_tables(const std::set<std::string>& in_use);
// For a daemon that runs no balancer: deletes every VIP route (and an
// earlier release's VIP addresses) of the calling thread's namespace, with
// a log line each: a VIP nothing balances would still be local to the
// host and take its traffic. Returns how many went.
size_t remove_stale_vips();

}  // namespace swarmnet::daemon
