// The IPVS balancer's own settings and pure parts (lb/balancer.hpp has the
// interface). How a VIP is built in the kernel:
//
//   nftables, table `ip swarmnet-ipvs`:
//     map vip-marks { ipv4_addr : mark }, one element per VIP, its comment
//     the VIP's key (so the key is read back from the kernel);
//     prerouting (mangle) and output (route) chains with one rule each:
//     `meta mark set ip daddr map @vip-marks`. A VIP change is one element.
//   IPVS: one fwmark service per VIP, scheduler mh (Maglev hashing) with
//     MH_PORT: the backend is a hash of the client's address and port, so a
//     flow whose IPVS entry expired while idle is scheduled to the same
//     backend again (with sloppy_tcp, from any packet, not only a SYN).
//     Destinations: the backends, port 0 (keep the packet's port), NAT.
//     No destination: the VIP is also in the set `empty-vips`, and rules in
//     the input and output chains (before IPVS) answer TCP with a reset and
//     the rest with ICMP port unreachable: connect() fails at once with
//     ECONNREFUSED (IPVS's own ICMP reply is only acted on when the SYN is
//     retransmitted, a second later), and the host's stack never sees it.
//   The VIP's local route through the bridge (lb/vip_addresses.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lb/balancer.hpp"
#include "lb/ipvs_netlink.hpp"

namespace swarmnet::lb {

inline constexpr std::string_view kIpvsTable = "swarmnet-ipvs";
inline constexpr std::string_view kIpvsMarkMap = "vip-marks";
inline constexpr std::string_view kIpvsEmptySet = "empty-vips";

// Marks are 0x5e000000 | 24 bits: the top byte says "a swarmnet IPVS
// service", so IPVS services of other owners (kube-proxy, Docker's own
// marks from 256 up) are never touched, and 16M values make collisions
// between keys rare.
inline constexpr uint32_t kMarkPrefix = 0x5e000000;
inline constexpr uint32_t kMarkPrefixMask = 0xff000000;
inline constexpr bool is_swarmnet_mark(uint32_t mark) {
  return (mark & kMarkPrefixMask) == kMarkPrefix && (mark & ~kMarkPrefixMask) != 0;
}

// The mark a key gets when it is free: a hash of the key (FNV-1a), so the
// same VIP gets the same mark after a restart or on another host.
uint32_t preferred_mark(std::string_view key);
// The preferred mark, or the next free one after it (wrapping inside the
// prefix) when another key holds it. Error(exhausted) if every one is used.
uint32_t allocate_mark(std::string_view key, const std::set<uint32_t>& used);

// Error(invalid_argument) unless 1..63 printable ASCII characters without
// '"' or '\' (the key is stored as an nftables comment).
void check_vip_key(std::string_view key);

// The net.ipv4.vs sysctls the balancer sets in its namespace, and why
// (ipvs_balancer.cpp). For the kernel in use; `kernel_release` is uname -r.
std::vector<std::pair<std::string, std::string>> ipvs_sysctls(std::string_view kernel_release);

struct IpvsSettings {
  // Kernel defaults are 900 / 120 / 300 s. TCP: an hour, so an idle flow
  // keeps its entry (and its backend) across backend-set changes for that
  // long; after that, mh + sloppy_tcp still sends it to the same backend
  // as long as the set is unchanged. FIN and UDP stay at the defaults.
  IpvsTimeouts timeouts{3600, 120, 300};
  std::string scheduler = "mh";
  uint32_t scheduler_flags = kIpvsMhPort;
};

std::unique_ptr<Balancer> make_ipvs_balancer(const IpvsSettings& settings);

}  // namespace swarmnet::lb
