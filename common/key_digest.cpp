#include "common/key_digest.hpp"

#include <openssl/evp.h>

#include <cstring>

#include "common/error.hpp"

namespace swarmnet {

KeyDigest KeyDigest::of(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(key.data(), key.size(), md, &size, EVP_sha256(), nullptr) != 1 || size < 16) {
    throw Error(Errc::internal, "SHA-256 of a table key failed");
  }
  KeyDigest d;
  std::memcpy(&d.a, md, 8);
  std::memcpy(&d.b, md + 8, 8);
  return d;
}

}  // namespace swarmnet
