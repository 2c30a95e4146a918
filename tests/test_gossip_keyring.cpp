// AES-256-GCM sealing: round trip, wrong key, tampering, wrong channel,
// staleness, replay, and key rotation.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "daemon/gossip/keyring.hpp"

using namespace swarmnet;
using namespace swarmnet::gossip;
using namespace std::chrono_literals;

namespace {
const std::vector<uint8_t> kUdp = {'u'};
const std::vector<uint8_t> kTcp = {'t'};
const std::vector<uint8_t> kOne = {1};
const std::vector<uint8_t> kEight = {8};
const std::vector<uint8_t> kSeven = {7};
Keyring::Key key(uint8_t fill) {
  Keyring::Key k;
  k.fill(fill);
  return k;
}
}  // namespace

TEST_CASE("keyring: seal and open", "[gossip][keyring]") {
  Keyring a({key(1)}), b({key(1)});
  std::vector<uint8_t> msg = {1, 2, 3, 4, 5};
  auto sealed = a.seal(msg, kUdp);
  CHECK(sealed.size() == msg.size() + Keyring::kOverhead);
  auto opened = b.open(sealed, kUdp);
  REQUIRE(opened);
  CHECK(*opened == msg);
  // Two seals of the same message differ (random nonce).
  CHECK(a.seal(msg, kUdp) != sealed);
  // Empty payloads are fine.
  CHECK(b.open(a.seal(std::vector<uint8_t>{}, kUdp), kUdp) == std::vector<uint8_t>{});
}

TEST_CASE("keyring: refuses foreign, tampered, misdirected and short packets",
          "[gossip][keyring]") {
  Keyring a({key(1)}), other({key(2)});
  std::vector<uint8_t> msg = {9, 9, 9};
  auto sealed = a.seal(msg, kUdp);
  CHECK_FALSE(other.open(sealed, kUdp));
  CHECK_FALSE(a.open(sealed, kTcp));  // authenticated channel
  for (size_t i = 0; i < sealed.size(); ++i) {
    auto t = sealed;
    t[i] ^= 0x01;
    CHECK_FALSE(Keyring({key(1)}).open(t, kUdp));
  }
  for (size_t n = 0; n < sealed.size(); ++n)
    CHECK_FALSE(a.open(std::span<const uint8_t>(sealed.data(), n), kUdp));
}

TEST_CASE("keyring: replays and stale packets are refused", "[gossip][keyring]") {
  Keyring a({key(1)}), b({key(1)});
  auto now = Keyring::WallClock::now();
  auto sealed = a.seal(kOne, kUdp, now);
  CHECK(b.open(sealed, kUdp, now));
  CHECK_FALSE(b.open(sealed, kUdp, now + 1s));  // replay
  // Older than the window, or from too far in the future.
  CHECK_FALSE(b.open(a.seal(kOne, kUdp, now - 61s), kUdp, now));
  CHECK_FALSE(b.open(a.seal(kOne, kUdp, now + 61s), kUdp, now));
  CHECK(b.open(a.seal(kOne, kUdp, now - 59s), kUdp, now));
  // The nonce cache is bounded.
  Keyring small({key(1)}, Keyring::Options{60s, 4});
  for (int i = 0; i < 100; ++i) CHECK(small.open(a.seal(kOne, kUdp, now), kUdp, now));
}

TEST_CASE("keyring: open tells the sender's clock at sealing (doctor's clock skew)", "[gossip][keyring]") {
  Keyring a({key(1)}), b({key(1)});
  const auto now = Keyring::WallClock::now();
  const auto ms = [](Keyring::WallClock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  };
  int64_t sent = 0;
  REQUIRE(b.open(a.seal(kOne, kUdp, now + 40s), kUdp, now, &sent));
  CHECK(sent - ms(now) == 40'000);
  REQUIRE(b.open(a.seal(kOne, kUdp, now - 2500ms), kUdp, now, &sent));
  CHECK(sent - ms(now) == -2'500);
}

TEST_CASE("keyring: rotation opens with every key, seals with the primary", "[gossip][keyring]") {
  Keyring a({key(1)}), b({key(1)});
  a.add_key(key(2));
  b.add_key(key(2));
  CHECK(a.keys().size() == 2);
  a.use_key(key(2));
  CHECK(a.keys().front() == key(2));
  auto sealed = a.seal(kSeven, kUdp);
  CHECK(b.open(sealed, kUdp));  // b still seals with key 1 but opens key 2
  CHECK(a.open(b.seal(kEight, kUdp), kUdp));
  CHECK_THROWS_AS(a.remove_key(key(2)), Error);  // primary
  a.remove_key(key(1));
  CHECK_FALSE(a.open(Keyring({key(1)}).seal(kEight, kUdp), kUdp));
  CHECK_THROWS_AS(a.use_key(key(3)), Error);
  CHECK_THROWS_AS(Keyring(std::vector<Keyring::Key>{}), Error);
}

TEST_CASE("keyring: keys from base64", "[gossip][keyring]") {
  auto k = Keyring::generate_key();
  auto text = Keyring::key_to_base64(k);
  CHECK(text.size() == 44);
  CHECK(Keyring::key_from_base64(text) == k);
  CHECK_THROWS_AS(Keyring::key_from_base64("short"), Error);
  CHECK_THROWS_AS(Keyring::key_from_base64(std::string(43, '!') + "="), Error);
  std::vector<uint8_t> sixteen(16, 1);
  CHECK_THROWS_AS(Keyring::make_key(sixteen), Error);
}
