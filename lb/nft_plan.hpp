// Internal to lb/: what the nftables balancer asks the kernel to do, as a
// list of plain operations, separate from the netlink encoding
// (nft_netlink.cpp) so the planning is tested without root.
//
// The ruleset (table ip swarmnet-lb), kube-proxy's nftables shape with a
// per-flow hash instead of numgen, and with the per-VIP state kept in map
// elements only:
//
//   map vips          { ipv4_addr : verdict }  VIP -> goto mod-N (N backends)
//                                              or accept (no backend);
//                                              comment "key K bridge B"
//   set vip-addresses { ipv4_addr }            every VIP
//   map backends      { ipv4_addr . mark : ipv4_addr }  (VIP . bucket) -> task
//   set hairpin       { ipv4_addr . ipv4_addr }  "task . task" for every task
//                                              of any VIP
//   chain prerouting  nat, dstnat: tcp/udp  ip daddr vmap @vips
//   chain output      nat, dstnat: the same, for the host's own processes
//                     (a VIP answers on the host too; whoever gives the flow
//                     a source address the task can answer is outside lb/)
//   chain postrouting nat, srcnat: ip saddr . ip daddr @hairpin masquerade.
//                     A task whose flow the hash sent back to itself would
//                     get a packet from its own address, which its kernel
//                     drops as a martian (and its reply would skip the
//                     host's un-DNAT): masqueraded, it comes from the
//                     bridge's address and the reply goes back through the
//                     host. Only that case: other flows keep the client's
//                     address. The chain also registers NAT at this hook so
//                     the replies of DNATed flows are translated back, the
//                     bridged ones too (br_netfilter)
//   chain input       filter: tcp/udp to @vip-addresses, original direction
//                     -> reject (a VIP
//                     packet reaches input only when it was not DNATed: the
//                     VIP has no backend)
//   chain mod-N       one per backend count in use, one rule:
//                       dnat to ip daddr . jhash(ip saddr . th sport .
//                         ip daddr . th dport) mod N map @backends
//
// A packet does one lookup in @vips whatever the number of VIPs, then one
// hash and one lookup in @backends. A VIP is only elements, so a change is
// a batch of element additions and deletions: no rule is added per VIP.
// That matters for speed as much as for shape: the kernel checks every
// element of a map each time a rule binds to it (nf_tables_bind_set), so
// one rule per VIP looking into @backends would make a change cost O(all
// backends) and a full load quadratic. The mod-N chains are created before
// the elements of a batch, and 1..kPrecreatedModChains with the table.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/ipv4.hpp"
#include "lb/balancer.hpp"

namespace swarmnet::lb::nft {

inline constexpr const char* kTable = "swarmnet-lb";
inline constexpr const char* kVipMap = "vips";
inline constexpr const char* kVipAddressSet = "vip-addresses";
inline constexpr const char* kBackendMap = "backends";
inline constexpr const char* kHairpinSet = "hairpin";
// Fixed, so that every host (and every restart) hashes a flow the same way.
inline constexpr uint32_t kHashSeed = 0x5357524d;
// Created with the table, while @backends is empty (cheap then).
inline constexpr uint32_t kPrecreatedModChains = 16;

// Error(invalid_argument) unless the key is 1..63 characters of
// [A-Za-z0-9._:/-] (it is stored in an element comment).
void check_key(const std::string& key);
std::string mod_chain(uint32_t buckets);
// N of a chain named by mod_chain(), nullopt for other chains.
std::optional<uint32_t> buckets_of_chain(const std::string& chain);

std::string vip_comment(const std::string& key, const std::string& bridge);
// (key, bridge) from vip_comment's text; nullopt if it is not one.
std::optional<std::pair<std::string, std::string>> parse_vip_comment(const std::string& text);

// What the kernel holds for one VIP.
struct KernelVip {
  std::string key;
  Ipv4Address vip;
  std::string bridge;    // from the element's comment
  uint32_t buckets = 0;  // N of its goto mod-N (0: accept, no backend)
  std::map<uint32_t, Ipv4Address> elements;  // its elements in @backends
  bool listed = false;                       // in @vip-addresses

  bool operator==(const KernelVip&) const = default;
};

// The VIP `want` will be in the kernel once a plan for it has run.
KernelVip expected(const VirtualIp& want);

// Everything of our table.
struct TableState {
  bool exists = false;
  std::map<std::string, KernelVip> vips;  // by key
  std::set<uint32_t> mod_chains;
  // The table has the set @hairpin and the chain output (a table written
  // by an older swarmnetd lacks them until plan_upgrade).
  bool hairpin_ready = false;
  // How many elements of @backends point at each task (kept as plans
  // change them), and what @hairpin holds.
  std::map<Ipv4Address, uint32_t> backend_refs;
  std::set<Ipv4Address> hairpin;
  // Elements no VIP accounts for (left by a crash or by hand): removed by sync.
  std::set<Ipv4Address> orphan_mapped;  // in @vips
  std::set<Ipv4Address> orphan_addresses;
  std::map<Ipv4Address, std::vector<uint32_t>> orphan_backends;
};

// ---- operations -------------------------------------------------------------

struct AddTable {};
struct AddBaseChains {};  // prerouting, postrouting, input
struct AddSets {};        // vips, vip-addresses, backends
struct AddBaseRules {};   // the dispatch, reject and hairpin rules
// What a table made by an older swarmnetd lacks: chain output with its
// dispatch rules, set hairpin and the postrouting rule.
struct AddHairpinBase {};
struct AddHairpin { std::vector<Ipv4Address> tasks; };
struct DeleteHairpin { std::vector<Ipv4Address> tasks; };
struct AddModChain { uint32_t buckets; };  // chain mod-N with its rule
struct DeleteVipElement { Ipv4Address vip; bool from_map; bool from_addresses; };
struct DeleteBackends { Ipv4Address vip; std::vector<uint32_t> buckets; };
struct AddBackends { Ipv4Address vip; std::vector<std::pair<uint32_t, Ipv4Address>> buckets; };
struct AddVipElement {
  Ipv4Address vip;
  std::string comment;
  uint32_t buckets;  // goto mod-N; 0: accept
  bool to_map;
  bool to_addresses;
};

using Op = std::variant<AddTable, AddBaseChains, AddSets, AddBaseRules, AddHairpinBase, AddModChain,
                        DeleteVipElement, DeleteBackends, DeleteHairpin, AddBackends, AddHairpin, AddVipElement>;
using Plan = std::vector<Op>;

// The table with its base chains, sets, rules and mod-1..mod-16 (for a
// missing table; creating them again would rebind every rule).
void plan_base(TableState& state, Plan& plan);
// For a table without @hairpin: adds it, filled from state.backend_refs.
void plan_upgrade(TableState& state, Plan& plan);
// Makes `old` (what the kernel has for want.key, if anything) into `want`
// (backends sorted, unique), touching only the elements that differ.
// Adds the mod-N chain the VIP needs if `state` lacks it, and records it.
void plan_upsert(const std::optional<KernelVip>& old, const VirtualIp& want, TableState& state,
                 Plan& plan);
void plan_remove(const KernelVip& old, TableState& state, Plan& plan);
// Removes the orphans of `state` (also @hairpin elements no task needs).
void plan_orphans(TableState& state, Plan& plan);
// state.backend_refs from the VIPs of `state`.
void count_backends(TableState& state);

// The plan in the order the batch sends it: base objects, then the mod-N
// chains (before the elements, so binding their rules to @backends checks
// as few elements as possible), deletions before additions, and
// operations of one kind together so consecutive element operations share
// netlink messages. Stable within a phase.
Plan order_for_batch(const Plan& plan);

// One line per operation, for tests and debug logs.
std::string describe(const Plan& plan);

}  // namespace swarmnet::lb::nft
