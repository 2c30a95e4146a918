// The kernel side of service load balancing: one virtual IP (VIP) per service
// per network, balanced across the service's healthy tasks. The daemon
// decides what each VIP's backends are (from the replicated tables and the
// health checks); a Balancer only makes this host's kernel match.
//
// How a VIP works on a host (both implementations):
//   - the VIP is local to the host through the network's bridge (a local
//     route, lb/vip_addresses.hpp), so the containers' ARP for it is
//     answered by the host, like the anycast gateway;
//   - packets to the VIP from a local container are sent by the kernel to
//     one backend (DNAT, keeping the destination port), TCP and UDP;
//   - backends are chosen per flow by a hash of the 5-tuple, not by a
//     counter: when a connection's state expires while it is idle (swarm's
//     15-minute IPVS break, moby#31208), its next packet hashes to the same
//     backend as long as the backend set is unchanged, so the connection
//     survives instead of being reset;
//   - a VIP with no backend refuses (ICMP port unreachable / TCP reset), it
//     never reaches a process on the host.
//
// Two implementations behind this one interface: nftables (libnftnl + libmnl
// netlink batches: a change to one VIP touches only that VIP's set and map
// elements, its cost independent of the number of VIPs) and kernel
// IPVS (generic netlink through libnl-genl-3, services keyed by firewall
// mark as libnetwork does).
#pragma once

#include <compare>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::lb {

struct VirtualIp {
  // Stable and unique per host: identifies the VIP's kernel objects.
  // The daemon uses "<service id>/<network id>"; at most 63 characters.
  std::string key;
  Ipv4Address vip;
  // The network's bridge on this host (the VIP's local route goes through it).
  std::string bridge;
  // Healthy tasks, sorted ascending, no duplicates; may be empty.
  std::vector<Ipv4Address> backends;

  auto operator<=>(const VirtualIp&) const = default;
};

class Balancer {
 public:
  virtual ~Balancer() = default;

  // "nftables" or "ipvs", for logs and `swarmnetctl lb check`.
  virtual std::string_view name() const = 0;

  // Creates or changes one VIP (its local route, its backends).
  // Touches only this VIP's kernel objects: cost independent of how many
  // other VIPs exist. Idempotent. Throws swarmnet::Error with what failed.
  virtual void upsert(const VirtualIp& vip) = 0;
  // Removes one VIP and everything of it (route, map elements, IPVS
  // service); no error if it is already gone.
  virtual void remove(const std::string& key) = 0;
  // Makes the kernel hold exactly `all` (after a daemon restart): creates
  // what is missing, changes what differs, removes the rest.
  virtual void sync(const std::vector<VirtualIp>& all) = 0;
  // What the kernel holds now, read back from it (not from a cache), for
  // `swarmnetctl lb check`. Sorted by key; backends sorted.
  virtual std::vector<VirtualIp> read_kernel_state() = 0;
  // Removes every kernel object of this balancer (table, marks, IPVS
  // services, VIP routes). swarmnetd leaves them in place when it stops
  // (a restart finds and syncs them); the tests call this to leave the
  // kernel as they found it.
  virtual void clear() = 0;
};

// Both run in the calling thread's network namespace.
std::unique_ptr<Balancer> make_nftables_balancer();
std::unique_ptr<Balancer> make_ipvs_balancer();
// True if this kernel has IPVS (the generic netlink family "IPVS" resolves).
bool ipvs_available();

// Human-readable differences between what should be and what the kernel has
// (one line per difference, "" when they match), for `lb check`.
std::string describe_differences(const std::vector<VirtualIp>& intended,
                                 const std::vector<VirtualIp>& actual);

}  // namespace swarmnet::lb
