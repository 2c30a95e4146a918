// A table key's fixed-size stand-in, for the parts that remember something
// per entry (the DNS name table's endpoints, the events' last-seen state,
// the balancer's service of each endpoint). An endpoint key is about 110
// bytes (network id, node id, container id, interface), a heap block of 128
// bytes in each such map; its digest is 16 bytes inline: the first 128 bits
// of SHA-256, which two keys that differ share with a probability of about
// 2^-128. A library of its own (swarmnet_key_digest), so that only its users
// link OpenSSL.
#pragma once

#include <compare>
#include <cstdint>
#include <string_view>

namespace swarmnet {

struct KeyDigest {
  uint64_t a = 0, b = 0;
  auto operator<=>(const KeyDigest&) const = default;
  static KeyDigest of(std::string_view key);
};

}  // namespace swarmnet
