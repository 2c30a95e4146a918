#include "ipam/subnet_pool.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "common/api.hpp"
#include "common/error.hpp"

namespace swarmnet::ipam {

Ipv4Prefix default_address_pool() {
  return Ipv4Prefix(Ipv4Address(10u << 24), 8);
}

std::optional<Ipv4Prefix> next_free_subnet(const Ipv4Prefix& pool, unsigned length,
                                           const std::vector<Ipv4Prefix>& taken) {
  if (length < pool.length() || length > 32) {
    throw Error(Errc::invalid_argument,
                "cannot cut pool " + pool.str() + " into /" + std::to_string(length) + " subnets");
  }
  // 64-bit ends so a range reaching 255.255.255.255 cannot wrap.
  const uint64_t pool_first = pool.network().value();
  const uint64_t pool_last = uint64_t{pool.broadcast().value()};
  const uint64_t size = uint64_t{1} << (32 - length);

  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [first, last], overlapping the pool
  ranges.reserve(taken.size());
  for (const Ipv4Prefix& t : taken) {
    const uint64_t first = t.network().value();
    const uint64_t last = t.broadcast().value();
    if (last < pool_first || first > pool_last) continue;
    ranges.emplace_back(first, last);
  }
  std::sort(ranges.begin(), ranges.end());

  // Sweep: the candidate only moves forward, to the first aligned subnet
  // past each taken range that hits it, so one pass over the sorted ranges.
  uint64_t candidate = pool_first;
  for (const auto& [first, last] : ranges) {
    if (candidate + size - 1 > pool_last) return std::nullopt;
    if (last < candidate) continue;
    if (first > candidate + size - 1) break;  // later ranges start later still
    candidate = (last + 1 + size - 1) / size * size;
  }
  if (candidate + size - 1 > pool_last) return std::nullopt;
  return Ipv4Prefix(Ipv4Address(static_cast<uint32_t>(candidate)), length);
}

AddressPools default_address_pools() {
  return AddressPools{{default_address_pool()}, kDefaultSubnetLength};
}

std::optional<std::string> address_pools_refusal(const AddressPools& p) {
  if (p.pools.empty()) return "no default address pool given";
  if (p.pools.size() > kMaxAddressPools) {
    return std::to_string(p.pools.size()) + " default address pools, at most " + std::to_string(kMaxAddressPools) +
           " are allowed";
  }
  const std::string mask = "/" + std::to_string(p.mask_length);
  if (p.mask_length > kMaxMaskLength) {
    return "default address pool mask length " + mask + " is too long: a network needs at least a /" +
           std::to_string(kMaxMaskLength);
  }
  for (size_t i = 0; i < p.pools.size(); ++i) {
    const Ipv4Prefix& pool = p.pools[i];
    if (!pool.is_network()) {
      return "default address pool " + pool.str() + " has host bits set (did you mean " +
             Ipv4Prefix(pool.network(), pool.length()).str() + "?)";
    }
    if (auto why = api::subnet_refusal(pool)) return "default address pool: " + *why;
    if (p.mask_length < pool.length()) {
      return "default address pool " + pool.str() + " cannot hold one " + mask +
             " subnet: the mask length must be at least " + std::to_string(pool.length());
    }
    for (size_t j = 0; j < i; ++j) {
      if (p.pools[j].overlaps(pool)) {
        return "default address pools " + p.pools[j].str() + " and " + pool.str() + " overlap";
      }
    }
  }
  return std::nullopt;
}

std::optional<Ipv4Prefix> next_free_subnet(const AddressPools& pools, const std::vector<Ipv4Prefix>& taken) {
  for (const Ipv4Prefix& pool : pools.pools) {
    if (auto free = next_free_subnet(pool, pools.mask_length, taken)) return free;
  }
  return std::nullopt;
}

}  // namespace swarmnet::ipam
