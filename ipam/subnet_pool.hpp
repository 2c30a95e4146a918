// Picking a subnet for a network created without one, as swarm does: cut a
// pool (10.0.0.0/8 by default) into subnets of one length and take the first
// that overlaps no subnet already in use.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::ipam {

inline constexpr unsigned kDefaultSubnetLength = 24;

// 10.0.0.0/8, swarm's default address pool.
Ipv4Prefix default_address_pool();

// The lowest /length subnet inside pool that overlaps none of taken, or
// nullopt when there is none. taken may hold anything (larger or smaller than
// /length, outside the pool, duplicates, host bits set); each counts as its
// masked network. O(n log n) in taken.size(). Throws Error(invalid_argument)
// if length is shorter than the pool's or above 32.
std::optional<Ipv4Prefix> next_free_subnet(const Ipv4Prefix& pool, unsigned length,
                                           const std::vector<Ipv4Prefix>& taken);

// Where networks created without a subnet come from: swarm's
// --default-addr-pool (repeatable) and --default-addr-pool-mask-length.
struct AddressPools {
  std::vector<Ipv4Prefix> pools;  // tried in this order
  unsigned mask_length = kDefaultSubnetLength;
  bool operator==(const AddressPools&) const = default;
};

// The pools travel in every push/pull of the cluster: bounded.
inline constexpr size_t kMaxAddressPools = 32;
// A network needs at least a /30 (network, gateway, one address, broadcast).
inline constexpr unsigned kMaxMaskLength = 30;

// {10.0.0.0/8}, /24: swarm's defaults.
AddressPools default_address_pools();

// Why these pools cannot be used, in words for the operator, or nullopt:
// none or too many pools, a pool with host bits set, in a reserved range
// (api::subnet_refusal) or overlapping another pool, a mask length above
// kMaxMaskLength or shorter than a pool's (each pool holds one subnet).
std::optional<std::string> address_pools_refusal(const AddressPools& pools);

// The lowest free /mask_length subnet of the first pool that has one, or
// nullopt. `taken` as for the single-pool form. The pools must be valid
// (address_pools_refusal).
std::optional<Ipv4Prefix> next_free_subnet(const AddressPools& pools, const std::vector<Ipv4Prefix>& taken);

}  // namespace swarmnet::ipam
