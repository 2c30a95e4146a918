// swarmnet's packet filter and egress NAT on one host: isolation between
// networks, masquerade to the outside, no way in from the underlay unless a
// port is published. All of it lives in one nftables table, `inet swarmnet`;
// no other table is read or changed.
//
// The rules are fixed (written once by ensure_base()); everything that
// changes with the networks lives in named sets, so adding or removing a
// network is adding or removing a few set elements in one transaction,
// whatever the number of networks, and never rewrites a rule.
//
//   sets (all keyed by bridge name and/or subnet)
//     bridges             ifname               every swarmnet bridge
//     subnets             ipv4_addr, interval  every swarmnet subnet
//     bridge-subnets      ifname . ipv4_addr   a bridge and its own subnet
//     same-bridge         ifname . ifname      "br" . "br", for L2 traffic
//     internal-bridges    ifname               bridges of --internal networks
//     masquerade-subnets  ipv4_addr, interval  subnets with egress
//     members             ipv4_addr            see "The underlay" below
//
//   chains
//     forward       hook forward, priority filter - 10: accepts by its first
//                   rule the untracked frames bridged within a network (the
//                   overlay's bulk: the same two lookups as from-network's
//                   anti-spoofing and own-network rules), dispatches other
//                   packets from a bridge to from-network, packets to a
//                   bridge to to-network, leaves the rest alone (a swarmnet
//                   subnet on another plugin's bridge, for swarmnet-ipam, is
//                   not ours)
//     from-network  anti-spoofing, own network accepted, other networks
//                   dropped, egress accepted unless internal
//     to-network    replies accepted, published traffic (chain `published`,
//                   empty until ports are published), everything else dropped
//     published     EMPTY on purpose: the port-publishing code owns it
//     published-dnat hook prerouting, priority dstnat: EMPTY on purpose, for
//                   the DNAT of published ports
//     egress-nat    hook postrouting, priority srcnat: masquerade
//     untracked     hook prerouting, priority raw, and untracked-out (hook
//                   output, priority raw): no connection tracking for the
//                   overlay's tunnel between members, nor for frames
//                   bridged within a network (to a container here or through
//                   the VXLAN port), except replies to a client in
//                   dnat-clients: nothing NATs them, and tracking them
//                   was conntrack work at every hook of both hosts. Each
//                   rule that decides ends the chain (notrack accept): a
//                   bridged frame is decided by one rule, the tunnel's
//                   packets by the first
//     dnat-clients  (set, filled from the packet path by from-network) the
//                   containers that opened a NATed connection (a VIP, a
//                   published port): its replies come bridged from the
//                   backend and must meet conntrack to be translated back
//     dns-input     hook input, priority filter - 10: per-source limit on
//                   UDP queries to port 53 from the bridges (dynamic set
//                   dns-clients: one token bucket per container address),
//                   so a flooding container's excess is dropped before it
//                   fills the DNS socket's queue and starves the others
//
// Hook priorities. In netfilter a drop is final wherever it happens, while
// an accept only ends the base chain it is in: the packet goes on through
// every other base chain on the same hook (other tables, iptables-nft,
// firewalld, dockerd). So no other firewall's accept can bypass our drops, at
// any priority. We hook forward at filter - 10 so our verdict comes first,
// before the usual filter chains (priority 0) count, log or otherwise act on
// a packet that isolation refuses. The converse also holds and is the
// operator's business: another table's drop (dockerd's FORWARD policy DROP)
// wins over our accepts. Masquerade sits at srcnat (100) like iptables' nat
// POSTROUTING; it only matches our subnets, so its order against other NAT
// does not matter.
//
// The underlay. The kernel's VXLAN socket decapsulates any frame
// sent to any address of the host, and the VNI in it picks the network: a
// forged frame would cross the isolation above. So:
//     members             ipv4_addr            the cluster members' advertise
//                         addresses, this node's included; written whole by
//                         set_members() from membership, never by base()
//     underlay-input      hook input, priority filter - 10: VXLAN only from a
//                         member to a member address (this node's own), never
//                         from a bridge named swn-* (every container bridge
//                         and the gateway bridge, in the set or not yet);
//                         the gossip ports (TCP and UDP) closed to those
//                         bridges and open to everything else (a joining
//                         node is not a member yet); so is the metrics
//                         port (--metrics-addr), whatever address it is on
//     from-network        also drops a container's VXLAN, gossip and
//                         metrics to a member: masqueraded, it would arrive
//                         from this node's address, which the other node
//                         accepts.
// The rest of the host's input (its own services, DNS at the gateways) is
// not filtered here.
//
// Encrypted networks (daemon/encryption.hpp: their ESP policies select
// the source ports of their VXLAN, no mark is needed). Two chains,
// rewritten whole by encrypted_vnis() when the set of encrypted VNIs
// changes (an anonymous set in each rule: the VNI is raw payload,
// @th,96,24, which a named set cannot type here):
//     encrypted-output    hook output, priority filter - 10: drops such
//                         VXLAN that leaves without an XFRM route (no SA
//                         yet, or none at all on a kernel without ESP)
//     encrypted-input     hook input, priority filter - 10: drops such VXLAN
//                         that did not come out of ESP (meta secpath), the
//                         class of Docker's CVE-2023-28840, even from a member
//
// br_netfilter. This kernel has it built in with bridge-nf-call-iptables=1
// (per namespace, on by default): frames bridged between two ports of one
// bridge (container to container on one host, or container to VXLAN port
// to another host) also traverse the inet forward hook, with iifname and
// oifname both the bridge. That is why from-network accepts a network's
// own traffic explicitly (its subnet, then anything that stays on its
// bridge) before dropping what goes to other networks; without
// br_netfilter the same frames never reach nftables and are allowed anyway.
//
// Isolation does not rely on routes: a packet from bridge A to any address
// of another swarmnet subnet is dropped whatever route the container or the
// host has (`subnets` holds every network of the cluster, with or without a
// local bridge), and a packet from a bridge must carry a source in that
// bridge's own subnet.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/nftables.hpp"

namespace swarmnet::daemon {

struct FirewallNetwork {
  std::string id;      // the network's id, for messages
  std::string bridge;  // its bridge on this host; need not exist (names match as text)
  Ipv4Prefix subnet;   // network form (no host bits)
  bool internal = false;
};

// The elements of each set of the table, as nft prints them
// ("\"swn-a\" . 10.81.0.0/24"), keyed by set name.
using FirewallElements = std::map<std::string, std::set<std::string>>;

// The nft scripts and their inverse, as pure functions (unit-tested without
// root). Every script is meant to run as one transaction.
namespace firewall_script {

inline constexpr std::string_view kFamily = "inet";
inline constexpr std::string_view kTable = "swarmnet";

// The UDP port of the overlay's VXLAN, the gossip port (TCP and UDP) and
// the metrics listener's TCP port (0: none).
struct UnderlayPorts {
  uint16_t vxlan = 4789;
  uint16_t gossip = 7946;
  uint16_t metrics = 0;
};
// The names of the networks' sets, in the order of the header above
// (not `members`, which follows membership, nor the DNS meter's).
const std::vector<std::string>& set_names();

// Creates what is missing and rewrites the rules of the chains swarmnet
// owns (flush + add in the same transaction: packets see the old rules or
// the new ones, never none). Sets, their elements and the two `published`
// chains are kept. `dns_queries_per_second`: the per-container limit on
// UDP queries to swarmnetd's DNS (0: none), see chain dns-input. The set
// `members` keeps its elements.
std::string base(unsigned dns_queries_per_second = 0, UnderlayPorts ports = {});
// Replaces the set `members` with `addresses` (one transaction: packets see
// the old set or the new one). Empty: no VXLAN is accepted at all.
std::string members(const std::vector<Ipv4Address>& addresses);
// Adds a network's elements; also removes it from the set of the other
// kind (internal or not), so re-adding with a changed flag is correct.
// Throws Error(invalid_argument) for a bad bridge name or subnet.
std::string add_network(const FirewallNetwork& network);
// Removes a network's elements. Each element is added first, then deleted
// in the same transaction, so removing what is already gone is no error.
std::string remove_network(const FirewallNetwork& network);
// Rewrites the two encrypted-* chains for these VNIs (empty: no rule).
std::string encrypted_vnis(const std::set<uint32_t>& vnis, UnderlayPorts ports = {});
// Deletes the table (add first: deleting a missing table is no error).
std::string remove_all();

// What the sets hold when exactly `networks` are added.
FirewallElements expected_elements(const std::vector<FirewallNetwork>& networks);
// "set S: missing E" / "set S: unexpected E", sorted; empty when equal.
std::vector<std::string> differences(const FirewallElements& expected,
                                     const FirewallElements& actual);
// One transaction that turns `actual` into `expected`.
std::string reconcile(const FirewallElements& expected, const FirewallElements& actual);
// Reads the elements out of `nft -j list table inet swarmnet` output.
// Throws Error(internal) if the JSON is not what nft prints.
FirewallElements parse_listing(std::string_view json);

}  // namespace firewall_script

class Firewall {
 public:
  // With a context in the calling thread's namespace.
  Firewall();
  // With a given context (NftContext::open_in for another namespace).
  explicit Firewall(kernel::NftContext&& nft);

  // Creates the table, its sets and chains and (re)writes the rules.
  // Idempotent; call at start, before any network is added.
  void ensure_base();
  // The DNS per-source limit ensure_base() writes (0: none).
  void set_dns_rate_limit(unsigned queries_per_second) { dns_rate_ = queries_per_second; }
  // The ports ensure_base() filters on the underlay.
  void set_underlay_ports(firewall_script::UnderlayPorts ports) { ports_ = ports; }
  // The advertise addresses VXLAN is accepted from (and to): the members'.
  void set_members(const std::vector<Ipv4Address>& addresses);
  // Idempotent; Error(not_found) if ensure_base() was not called,
  // Error(conflict) if the subnet overlaps another network's.
  void add_network(const FirewallNetwork& network);
  // Idempotent (no error if absent, or the table is missing).
  void remove_network(const FirewallNetwork& network);
  // The encrypted networks' VNIs (see the header); a no-op when unchanged
  // since the last call.
  void set_encrypted_vnis(const std::set<uint32_t>& vnis);
  // Deletes the table and everything in it. Idempotent.
  void remove_all();

  bool table_exists();
  // The table as nft lists it (text, without counter values, so equal
  // configurations dump equal), "" when it does not exist.
  std::string dump();
  // The elements of the table's sets, empty when the table does not exist.
  FirewallElements actual_elements();
  // The differences between the kernel and `expected` (see
  // firewall_script::differences); empty when they agree.
  std::vector<std::string> check(const std::vector<FirewallNetwork>& expected);
  // Adds what is missing and removes what is stale, in one transaction
  // (after a daemon restart). Calls ensure_base() first.
  void reconcile(const std::vector<FirewallNetwork>& expected);

 private:
  kernel::NftContext nft_;
  unsigned dns_rate_ = 0;
  firewall_script::UnderlayPorts ports_;
  std::optional<std::set<uint32_t>> encrypted_vnis_;  // as last written
};

// Turns on IPv4 forwarding in the calling thread's namespace (egress from
// the bridges to the underlay is routed). Idempotent.
void enable_ip_forward();

}  // namespace swarmnet::daemon
