#include "ipam/subnet_pool.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

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

}  // namespace swarmnet::ipam
