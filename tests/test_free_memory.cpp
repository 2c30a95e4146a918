// common/free_memory: freed heap memory below a live allocation stays
// resident (the control: what swarmnetd's RSS kept after a large API
// reply), and return_free_memory() gives it back.
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <vector>

#include "common/free_memory.hpp"

TEST_CASE("free memory: what a large short-lived structure freed goes back to the system", "[free_memory]") {
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
  SUCCEED("the sanitizer's allocator (or not glibc's) keeps its own books");
#else
  constexpr size_t kChunk = 1024, kTotal = size_t{64} << 20;
  swarmnet::return_free_memory();
  const size_t base = swarmnet::resident_bytes();
  REQUIRE(base > 0);
  // Many small pieces, as a JSON tree is made of, touched so they are resident.
  std::vector<std::unique_ptr<char[]>> pieces;
  pieces.reserve(kTotal / kChunk);
  for (size_t i = 0; i < kTotal / kChunk; ++i) {
    pieces.emplace_back(new char[kChunk]);
    std::memset(pieces.back().get(), 1, kChunk);
  }
  // A few that outlive them, among them (as the daemon's own records land
  // between a reply's pieces): one in 256 stays.
  std::vector<std::unique_ptr<char[]>> kept;
  kept.reserve(pieces.size() / 256 + 1);
  for (size_t i = 0; i < pieces.size(); i += 256) kept.push_back(std::move(pieces[i]));
  pieces.clear();
  pieces.shrink_to_fit();
  const size_t freed = swarmnet::resident_bytes();
  // The control: free() alone kept (nearly) all of it.
  CHECK(freed > base + kTotal / 2);
  CHECK(swarmnet::return_free_memory());
  const size_t trimmed = swarmnet::resident_bytes();
  CHECK(trimmed + kTotal / 2 < freed);
  CHECK(trimmed < base + kTotal / 8);
#endif
}
