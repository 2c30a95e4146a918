#include "daemon/gossip/keyring.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "common/error.hpp"

namespace swarmnet::gossip {

namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

int64_t to_ms(Keyring::WallClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::vector<uint8_t> aad_with_version(std::span<const uint8_t> aad) {
  std::vector<uint8_t> out;
  out.reserve(aad.size() + 1);
  out.push_back(Keyring::kVersion);
  out.insert(out.end(), aad.begin(), aad.end());
  return out;
}

// One GCM decryption attempt; false on any failure (wrong key, tampering).
bool try_open(const Keyring::Key& key, std::span<const uint8_t> nonce,
              std::span<const uint8_t> ciphertext, std::span<const uint8_t> tag,
              std::span<const uint8_t> aad, std::vector<uint8_t>& out) {
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return false;
  int len = 0;
  out.resize(ciphertext.size());
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce.size()),
                          nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, ciphertext.data(),
                        static_cast<int>(ciphertext.size())) != 1)
    return false;
  // OpenSSL's API takes a non-const tag pointer but only reads it.
  std::array<uint8_t, Keyring::kTagSize> tag_copy;
  std::copy(tag.begin(), tag.end(), tag_copy.begin());
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_copy.size()),
                          tag_copy.data()) != 1)
    return false;
  int final_len = 0;
  return EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &final_len) == 1;
}

}  // namespace

size_t Keyring::NonceHash::operator()(const std::array<uint8_t, kNonceSize>& n) const {
  // Nonces are random: any 8 of their bytes are a fine hash.
  uint64_t h;
  std::memcpy(&h, n.data(), sizeof h);
  return static_cast<size_t>(h);
}

Keyring::Keyring(std::vector<Key> keys, Options options) : options_(options) {
  if (keys.empty()) throw Error(Errc::invalid_argument, "keyring: at least one key is needed");
  for (const auto& k : keys)
    if (std::find(keys_.begin(), keys_.end(), k) == keys_.end()) keys_.push_back(k);
}

Keyring::Key Keyring::make_key(std::span<const uint8_t> bytes) {
  if (bytes.size() != 32)
    throw Error(Errc::invalid_argument,
                "keyring: a key is 32 bytes (AES-256), got " + std::to_string(bytes.size()));
  Key k;
  std::copy(bytes.begin(), bytes.end(), k.begin());
  return k;
}

Keyring::Key Keyring::key_from_base64(std::string_view text) {
  // 32 bytes are 44 base64 characters with one '=' of padding.
  if (text.size() != 44 || text[43] != '=' || text[42] == '=')
    throw Error(Errc::invalid_argument, "keyring: a key is 32 bytes in base64 (44 characters)");
  std::array<uint8_t, 33> raw{};
  int n = EVP_DecodeBlock(raw.data(), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n != 33) throw Error(Errc::invalid_argument, "keyring: key is not valid base64");
  return make_key(std::span<const uint8_t>(raw.data(), 32));
}

std::string Keyring::key_to_base64(const Key& key) {
  std::array<unsigned char, 45> out{};
  int n = EVP_EncodeBlock(out.data(), key.data(), static_cast<int>(key.size()));
  return std::string(reinterpret_cast<const char*>(out.data()), static_cast<size_t>(n));
}

Keyring::Key Keyring::generate_key() {
  Key k;
  if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1)
    throw Error(Errc::internal, "keyring: RAND_bytes failed");
  return k;
}

std::vector<uint8_t> Keyring::seal(std::span<const uint8_t> plaintext, std::span<const uint8_t> aad,
                                   WallClock::time_point now) {
  Key key;
  {
    std::lock_guard lock(mu_);
    key = keys_.front();
  }
  std::vector<uint8_t> out(kOverhead + plaintext.size());
  out[0] = kVersion;
  uint8_t* nonce = out.data() + 1;
  if (RAND_bytes(nonce, kNonceSize) != 1) throw Error(Errc::internal, "keyring: RAND_bytes failed");

  std::vector<uint8_t> inner(kTimestampSize + plaintext.size());
  uint64_t ts = static_cast<uint64_t>(to_ms(now));
  for (size_t i = 0; i < 8; ++i) inner[i] = static_cast<uint8_t>(ts >> (56 - 8 * i));
  std::copy(plaintext.begin(), plaintext.end(), inner.begin() + kTimestampSize);

  auto full_aad = aad_with_version(aad);
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0, final_len = 0;
  uint8_t* ct = out.data() + 1 + kNonceSize;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, full_aad.data(),
                        static_cast<int>(full_aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, inner.data(), static_cast<int>(inner.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, ct + inner.size()) != 1)
    throw Error(Errc::internal, "keyring: AES-GCM encryption failed");
  return out;
}

std::optional<std::vector<uint8_t>> Keyring::open(std::span<const uint8_t> sealed,
                                                  std::span<const uint8_t> aad,
                                                  WallClock::time_point now, int64_t* sent_ms) {
  if (sealed.size() < kOverhead || sealed[0] != kVersion) return std::nullopt;
  auto nonce = sealed.subspan(1, kNonceSize);
  auto ct = sealed.subspan(1 + kNonceSize, sealed.size() - 1 - kNonceSize - kTagSize);
  auto tag = sealed.subspan(sealed.size() - kTagSize);
  auto full_aad = aad_with_version(aad);

  std::vector<Key> keys = this->keys();
  std::vector<uint8_t> inner;
  bool opened = false;
  for (const auto& k : keys) {
    if (try_open(k, nonce, ct, tag, full_aad, inner)) {
      opened = true;
      break;
    }
  }
  if (!opened) return std::nullopt;

  uint64_t ts = 0;
  for (size_t i = 0; i < 8; ++i) ts = (ts << 8) | inner[i];
  int64_t age = to_ms(now) - static_cast<int64_t>(ts);
  int64_t window = options_.replay_window.count();
  if (age > window || age < -window) return std::nullopt;

  std::array<uint8_t, kNonceSize> n;
  std::copy(nonce.begin(), nonce.end(), n.begin());
  if (!remember_nonce(n, to_ms(now))) return std::nullopt;
  if (sent_ms) *sent_ms = static_cast<int64_t>(ts);
  return std::vector<uint8_t>(inner.begin() + kTimestampSize, inner.end());
}

bool Keyring::remember_nonce(const std::array<uint8_t, kNonceSize>& nonce, int64_t now_ms) {
  std::lock_guard lock(mu_);
  if (options_.nonce_cache_capacity == 0) return true;
  // Entries older than the window can go: their packets fail the timestamp
  // check anyway. Over capacity the oldest go too, which re-opens a replay
  // hole only for floods of more than capacity packets per window.
  int64_t horizon = now_ms - options_.replay_window.count();
  while (!seen_order_.empty() && (seen_order_.front().first < horizon ||
                                  seen_order_.size() >= options_.nonce_cache_capacity)) {
    seen_.erase(seen_order_.front().second);
    seen_order_.pop_front();
  }
  if (!seen_.insert(nonce).second) return false;
  seen_order_.emplace_back(now_ms, nonce);
  return true;
}

void Keyring::add_key(const Key& key) {
  std::lock_guard lock(mu_);
  if (std::find(keys_.begin(), keys_.end(), key) == keys_.end()) keys_.push_back(key);
}

void Keyring::use_key(const Key& key) {
  std::lock_guard lock(mu_);
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) throw Error(Errc::not_found, "keyring: key is not installed");
  std::rotate(keys_.begin(), it, it + 1);
}

void Keyring::remove_key(const Key& key) {
  std::lock_guard lock(mu_);
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) throw Error(Errc::not_found, "keyring: key is not installed");
  if (it == keys_.begin())
    throw Error(Errc::conflict,
                "keyring: cannot remove the primary key; make another primary first");
  keys_.erase(it);
}

std::vector<Keyring::Key> Keyring::keys() const {
  std::lock_guard lock(mu_);
  return keys_;
}

}  // namespace swarmnet::gossip
