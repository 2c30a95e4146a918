// common/key_digest: a table key's 16-byte stand-in in the maps that
// remember something per entry. Equal keys give equal digests, different
// keys (also ones that differ in one byte, or only in length) different ones.
#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "common/key_digest.hpp"
#include "daemon/records.hpp"

using swarmnet::KeyDigest;

TEST_CASE("key digest: equal keys alike, different keys apart", "[key_digest]") {
  const std::string net(64, 'a');
  const std::string key = swarmnet::daemon::endpoint_key(net, std::string(32, 'b'), "c1", "eth0");
  CHECK(KeyDigest::of(key) == KeyDigest::of(std::string(key)));
  std::set<KeyDigest> seen;
  for (int i = 0; i < 1000; ++i) {
    seen.insert(KeyDigest::of(swarmnet::daemon::endpoint_key(net, std::string(32, 'b'), "c" + std::to_string(i), "eth0")));
  }
  CHECK(seen.size() == 1000);
  std::string one_byte = key;
  one_byte.back() = '1';
  CHECK(KeyDigest::of(one_byte) != KeyDigest::of(key));
  CHECK(KeyDigest::of("") != KeyDigest::of(std::string(1, '\0')));
  static_assert(sizeof(KeyDigest) == 16);
}
