// Internal to lb/: what the nftables balancer asks the kernel to do, as a
// list of plain operations, separate from the netlink encoding
// (nft_netlink.cpp) so the planning is tested without root.
//
// The ruleset (table ip swarmnet-lb), kube-proxy's nftables shape with a
// hash instead of numgen:
//
//   map vips          { ipv4_addr : verdict }   VIP -> goto vip-<key>
//   set vip-addresses { ipv4_addr }             every VIP
//   map backends      { ipv4_addr . mark : ipv4_addr }  (VIP . bucket) -> task
//   chain prerouting  nat, dstnat:  tcp/udp  ip daddr vmap @vips
//   chain postrouting nat, srcnat:  empty; registers NAT at this hook so the
//                     replies of DNATed flows are translated back, also the
//                     bridged ones (br_netfilter)
//   chain input       filter: tcp/udp to @vip-addresses -> reject (a VIP
//                     reaches input only when it was not DNATed: no backend)
//   chain vip-<key>   comment "vip A.B.C.D bridge NAME";
//                     with N > 0 backends one rule:
//                       dnat to ip daddr . jhash(ip saddr . th sport .
//                         ip daddr . th dport) mod N map @backends
//                     with none, no rule (falls through to the reject)
//
// A packet does one lookup in @vips whatever the number of VIPs, then one
// hash and one lookup in @backends. A VIP's objects are its chain and its
// elements, and nothing else refers to them, so a change to one VIP is a
// batch of a few messages. The chain's comment and its rule's modulus are
// what the kernel tells back about a VIP (read_kernel_state, and the old
// element keys to delete on a change).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/ipv4.hpp"
#include "lb/balancer.hpp"

namespace swarmnet::lb::nft {

inline constexpr const char* kTable = "swarmnet-lb";
inline constexpr const char* kVipMap = "vips";
inline constexpr const char* kVipAddressSet = "vip-addresses";
inline constexpr const char* kBackendMap = "backends";
inline constexpr const char* kVipChainPrefix = "vip-";
// Fixed, so every host (and every restart) hashes a flow the same way.
inline constexpr uint32_t kHashSeed = 0x5357524d;

// Error(invalid_argument) unless the key is 1..63 characters of
// [A-Za-z0-9._:/-] (it becomes a chain name, printed unquoted by nft).
void check_key(const std::string& key);
std::string vip_chain(const std::string& key);
// The key of a chain named by vip_chain(), nullopt for other chains.
std::optional<std::string> key_of_chain(const std::string& chain);

// What the kernel holds for one VIP.
struct KernelVip {
  std::string key;
  Ipv4Address vip;
  std::string bridge;    // from the chain's comment
  uint32_t buckets = 0;  // the rule's modulus (0: no rule)
  // Its elements in @backends: bucket -> task. A quick read of one VIP
  // (chain and rule only) assumes buckets 0..n-1, values unknown (0.0.0.0).
  std::map<uint32_t, Ipv4Address> elements;
  bool mapped = false;  // @vips sends its address to its chain
  bool listed = false;  // its address is in @vip-addresses

  bool operator==(const KernelVip&) const = default;
};

// What a quick read of a VIP's chain and rule implies about the rest.
KernelVip assume_consistent(KernelVip vip);
// True when the kernel's objects for this VIP already are `want` (the
// address on the bridge aside).
bool matches(const KernelVip& have, const VirtualIp& want);

std::string vip_chain_comment(Ipv4Address vip, const std::string& bridge);
// Parses vip_chain_comment's text; nullopt if it is not one.
std::optional<std::pair<Ipv4Address, std::string>> parse_vip_chain_comment(const std::string& text);

// ---- operations -------------------------------------------------------------

struct AddTable {};
struct AddBaseChains {};                    // prerouting, postrouting, input
struct AddSets {};                          // vips, vip-addresses, backends
struct FlushChain { std::string chain; };
struct AddBaseRules {};                     // the dispatch and reject rules
struct AddVipChain { std::string chain; std::string comment; };
struct DeleteChain { std::string chain; };  // with its rules
struct AddBalanceRule { std::string chain; uint32_t buckets; };
struct AddVipElement { Ipv4Address vip; std::string chain; };  // vips + vip-addresses
struct DeleteVipElement { Ipv4Address vip; bool from_map; bool from_addresses; };
struct AddBackends { Ipv4Address vip; std::vector<Ipv4Address> backends; };  // bucket i -> backends[i]
struct DeleteBackends { Ipv4Address vip; std::vector<uint32_t> buckets; };

using Op = std::variant<AddTable, AddBaseChains, AddSets, FlushChain, AddBaseRules, AddVipChain,
                        DeleteChain, AddBalanceRule, AddVipElement, DeleteVipElement, AddBackends,
                        DeleteBackends>;
using Plan = std::vector<Op>;

// The table, base chains, sets and base rules, idempotent (the base rules
// are flushed and added again): a handful of messages, put at the head of
// every batch so that no update depends on an earlier one having run.
void plan_base(Plan& plan);
// Makes `old` (what the kernel has for want.key, if anything) into `want`.
// `want.backends` must be sorted and unique.
void plan_upsert(const std::optional<KernelVip>& old, const VirtualIp& want, Plan& plan);
void plan_remove(const KernelVip& old, Plan& plan);

// The plan in the order the batch sends it: removals before additions, a
// chain before the rules and elements that refer to it, and operations of
// one kind together, so that consecutive element additions share netlink
// messages (one NEWSETELEM for thousands of elements on a full load).
// Stable within a phase.
Plan order_for_batch(const Plan& plan);

// One line per operation ("add chain vip-a", "delete 3 backends of
// 10.0.0.2"), for tests and debug logs.
std::string describe(const Plan& plan);

}  // namespace swarmnet::lb::nft
