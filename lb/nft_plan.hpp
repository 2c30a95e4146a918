// Internal to lb/: what the nftables balancer asks the kernel to do, as a
// list of plain operations, separate from the netlink encoding
// (nft_netlink.cpp) so the planning is tested without root.
//
// The ruleset (table ip swarmnet-lb), kube-proxy's nftables shape with a
// per-flow hash instead of numgen, and with the per-VIP state kept in set
// and map elements only:
//
//   set vip-addresses { ipv4_addr }            every VIP; its element's
//                                              comment "key K bridge B"
//                                              says whose it is
//   set vips-N        { ipv4_addr }            the VIPs of N backends, one
//                                              set per backend count in use
//   map backends      { ipv4_addr . mark : ipv4_addr }  (VIP . bucket) -> task
//   set hairpin       { ipv4_addr . ipv4_addr }  "task . task" for every task
//                                              of any VIP
//   chain prerouting  nat, dstnat: tcp/udp  ip daddr @vip-addresses
//                     goto balance
//   chain output      nat, dstnat: the same, for the host's own processes
//                     (a VIP answers on the host too; whoever gives the flow
//                     a source address the task can answer is outside lb/)
//   chain balance     one rule per backend count N in use:
//                       ip daddr @vips-N dnat to ip daddr . jhash(ip saddr .
//                         th sport . ip daddr . th dport) mod N map @backends
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
//                     -> reject (a VIP packet reaches input only when it was
//                     not DNATed: the VIP has no backend)
//
// A VIP is only elements, so a change is a batch of element additions and
// deletions: no rule is added per VIP. Why no verdict map: each time a
// batch adds an element that jumps (a "VIP -> goto mod-N" map, the earlier
// shape), the kernel validates the whole table at commit and walks every
// element of that map (nf_tables_validate), so one change cost O(VIPs);
// elements of plain sets and maps need no such walk. (A two-level lookup,
// VIP -> N then N -> goto, avoids it too, but nft 1.0.6 aborts listing
// it.) The price: a new flow to a VIP is looked up in the vips-N sets one
// after the other (only the first packet of a flow: the nat hooks see no
// other), a flow to anything else in @vip-addresses only.
// Binding a rule to @backends makes the kernel check every element
// (nf_tables_bind_set), so the vips-N rules are made with the table while
// @backends is empty (1..kPrecreatedBuckets), and later only for a count
// never seen before, before the elements of its batch.
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
inline constexpr const char* kVipAddressSet = "vip-addresses";
inline constexpr const char* kBackendMap = "backends";
inline constexpr const char* kHairpinSet = "hairpin";
inline constexpr const char* kBalanceChain = "balance";
// The verdict map of the earlier shape: a table that has it is rebuilt.
inline constexpr const char* kLegacyVipMap = "vips";
// Fixed, so that every host (and every restart) hashes a flow the same way.
inline constexpr uint32_t kHashSeed = 0x5357524d;
// Made with the table, while @backends is empty (cheap then).
inline constexpr uint32_t kPrecreatedBuckets = 16;

// Error(invalid_argument) unless the key is 1..63 characters of
// [A-Za-z0-9._:/-] (it is stored in an element comment).
void check_key(const std::string& key);
// "vips-N", the set of the VIPs of N backends.
std::string bucket_set(uint32_t buckets);
// N of a set named by bucket_set(), nullopt for other names.
std::optional<uint32_t> buckets_of_set(const std::string& set);
// N of a chain "mod-N" of the earlier shape, nullopt for other names.
std::optional<uint32_t> buckets_of_legacy_chain(const std::string& chain);

std::string vip_comment(const std::string& key, const std::string& bridge);
// (key, bridge) from vip_comment's text; nullopt if it is not one.
std::optional<std::pair<std::string, std::string>> parse_vip_comment(const std::string& text);

// What the kernel holds for one VIP.
struct KernelVip {
  std::string key;
  Ipv4Address vip;
  std::string bridge;    // from its @vip-addresses element's comment
  uint32_t buckets = 0;  // the N of its vips-N set (0: in none, no backend)
  std::map<uint32_t, Ipv4Address> elements;  // its elements in @backends

  bool operator==(const KernelVip&) const = default;
};

// The VIP `want` will be in the kernel once a plan for it has run.
KernelVip expected(const VirtualIp& want);
// What packets to `have` reach: its buckets below N, if the table has the
// vips-N rule (`rules`); the bridge as its comment says.
VirtualIp reachable(const KernelVip& have, const std::set<uint32_t>& rules);

// Everything of our table.
struct TableState {
  bool exists = false;
  // The table is of the earlier shape (or lacks some of our objects):
  // plan_rebuild replaces it.
  bool legacy = false;
  std::map<std::string, KernelVip> vips;  // by key
  // N of each vips-N rule in chain balance (and of its set).
  std::set<uint32_t> bucket_rules;
  // How many elements of @backends point at each task (kept as plans
  // change them), and what @hairpin holds.
  std::map<Ipv4Address, uint32_t> backend_refs;
  std::set<Ipv4Address> hairpin;
  // Elements no VIP accounts for (left by a crash or by hand): removed by sync.
  std::set<Ipv4Address> orphan_addresses;
  std::map<uint32_t, std::set<Ipv4Address>> orphan_members;  // by N, in vips-N
  std::map<Ipv4Address, std::vector<uint32_t>> orphan_backends;
};

// ---- operations -------------------------------------------------------------

struct DeleteTable {};
struct AddTable {};
struct AddBaseChains {};  // prerouting, output, postrouting, input, balance
struct AddSets {};        // vip-addresses, backends, hairpin
struct AddBaseRules {};   // the dispatch, reject and hairpin rules
struct AddBucketRule { uint32_t buckets; };  // set vips-N and its rule in balance
struct DeleteVip { Ipv4Address vip; };  // from @vip-addresses
struct DeleteMember { Ipv4Address vip; uint32_t buckets; };  // from @vips-N
struct DeleteBackends { Ipv4Address vip; std::vector<uint32_t> buckets; };
struct DeleteHairpin { std::vector<Ipv4Address> tasks; };
struct AddBackends { Ipv4Address vip; std::vector<std::pair<uint32_t, Ipv4Address>> buckets; };
struct AddHairpin { std::vector<Ipv4Address> tasks; };
struct AddMember { Ipv4Address vip; uint32_t buckets; };
struct AddVip { Ipv4Address vip; std::string comment; };

using Op = std::variant<DeleteTable, AddTable, AddBaseChains, AddSets, AddBaseRules, AddBucketRule, DeleteVip,
                        DeleteMember, DeleteBackends, DeleteHairpin, AddBackends, AddHairpin, AddMember, AddVip>;
using Plan = std::vector<Op>;

// The table with its base chains, sets, rules and the vips-1..vips-16
// rules (for a missing table; making them again would rebind every rule).
void plan_base(TableState& state, Plan& plan);
// For a table of the earlier shape: deletes it and makes the base again,
// in the same batch (one transaction: packets see the old table, then the
// new one). Returns the VIPs it held (what packets reached), for the
// caller to plan again into the new table; `state` is then the empty table.
std::vector<VirtualIp> plan_rebuild(TableState& state, Plan& plan);
// Makes `old` (what the kernel has for want.key, if anything) into `want`
// (backends sorted, unique), touching only the elements that differ.
// Adds the vips-N rule the VIP needs if `state` lacks it, and records it.
void plan_upsert(const std::optional<KernelVip>& old, const VirtualIp& want, TableState& state,
                 Plan& plan);
void plan_remove(const KernelVip& old, TableState& state, Plan& plan);
// Removes the orphans of `state` (also @hairpin elements no task needs).
void plan_orphans(TableState& state, Plan& plan);
// state.backend_refs from the VIPs of `state`.
void count_backends(TableState& state);

// The plan in the order the batch sends it: the table and its base
// objects, then the vips-N rules (before the elements, so binding them to
// @backends checks as few elements as possible), deletions before
// additions, and operations of one kind together so consecutive element
// operations share netlink messages. Stable within a phase.
Plan order_for_batch(const Plan& plan);

// One line per operation, for tests and debug logs.
std::string describe(const Plan& plan);

}  // namespace swarmnet::lb::nft
