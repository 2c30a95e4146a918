// Picking a subnet for a network created without one, as swarm does: cut a
// pool (10.0.0.0/8 by default) into subnets of one length and take the first
// that overlaps no subnet already in use.
#pragma once

#include <optional>
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

}  // namespace swarmnet::ipam
