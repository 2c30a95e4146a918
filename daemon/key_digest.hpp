// A table key's fixed-size stand-in, for the daemon's parts that remember
// something per entry (the events' last-seen state, the balancer's service
// of each endpoint). An endpoint key is about 110 bytes (network id, node id,
// container id, interface), a heap block of 128 bytes in each such map; its
// digest is 16 bytes inline. The first 128 bits of SHA-256, as the DNS name
// table keys its endpoints (dns/name_table.hpp): two keys that differ get
// the same digest with a probability of about 2^-128.
#pragma once

#include <compare>
#include <cstdint>
#include <string_view>

namespace swarmnet::daemon {

struct KeyDigest {
  uint64_t a = 0, b = 0;
  auto operator<=>(const KeyDigest&) const = default;
  static KeyDigest of(std::string_view key);
};

}  // namespace swarmnet::daemon
