// Authenticated encryption of gossip packets and stream frames with
// AES-256-GCM under the cluster key(s).
//
// Sealed layout: version (1) | nonce (12) | ciphertext | tag (16), where the
// plaintext is timestamp (u64 ms since the Unix epoch) | payload. The version
// byte and the caller's associated data (the channel: UDP packet or stream
// frame) are authenticated, so a packet cannot be replayed on the other channel.
//
// Replay protection: a packet whose timestamp is further than the window from
// our clock is refused, and nonces seen within the window are remembered (up
// to a cap) so the same packet is accepted once. Clocks of cluster members
// must therefore agree to within the window (60 s by default, NTP-grade).
//
// Rotation without loss: open() tries every key, seal() uses the primary. Add
// the new key everywhere, then make it primary everywhere, then remove the old.
//
// Thread-safe: the daemon rotates keys from its API thread while the gossip
// thread seals and opens.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

namespace swarmnet::gossip {

class Keyring {
 public:
  using Key = std::array<uint8_t, 32>;
  using WallClock = std::chrono::system_clock;

  static constexpr uint8_t kVersion = 1;
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kTagSize = 16;
  static constexpr size_t kTimestampSize = 8;
  static constexpr size_t kOverhead = 1 + kNonceSize + kTagSize + kTimestampSize;

  struct Options {
    std::chrono::milliseconds replay_window = std::chrono::seconds(60);
    size_t nonce_cache_capacity = 1 << 16;
  };

  // Throws Error(invalid_argument) if keys is empty.
  explicit Keyring(std::vector<Key> keys) : Keyring(std::move(keys), Options{}) {}
  Keyring(std::vector<Key> keys, Options options);

  // A key from 32 bytes (throws Error(invalid_argument) otherwise), and from
  // base64 text as the join token carries it.
  static Key make_key(std::span<const uint8_t> bytes);
  static Key key_from_base64(std::string_view text);
  static std::string key_to_base64(const Key& key);
  static Key generate_key();

  std::vector<uint8_t> seal(std::span<const uint8_t> plaintext, std::span<const uint8_t> aad,
                            WallClock::time_point now = WallClock::now());
  // nullopt: no key opens it, or it is stale or a replay. The caller counts it.
  // sent_ms, when given, receives the sender's wall-clock time of sealing
  // (ms since the epoch) of an opened message: how peers' clocks compare.
  std::optional<std::vector<uint8_t>> open(std::span<const uint8_t> sealed,
                                           std::span<const uint8_t> aad,
                                           WallClock::time_point now = WallClock::now(),
                                           int64_t* sent_ms = nullptr);

  void add_key(const Key& key);     // no-op if present
  void use_key(const Key& key);     // make primary; throws Error(not_found) if absent
  void remove_key(const Key& key);  // throws Error(conflict) for the primary, not_found if absent
  std::vector<Key> keys() const;    // primary first

 private:
  struct NonceHash {
    size_t operator()(const std::array<uint8_t, kNonceSize>& n) const;
  };
  bool remember_nonce(const std::array<uint8_t, kNonceSize>& nonce, int64_t ts_ms);

  mutable std::mutex mu_;
  std::vector<Key> keys_;
  Options options_;
  std::unordered_set<std::array<uint8_t, kNonceSize>, NonceHash> seen_;
  std::deque<std::pair<int64_t, std::array<uint8_t, kNonceSize>>> seen_order_;
};

}  // namespace swarmnet::gossip
