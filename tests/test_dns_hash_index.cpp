// The name table's hash index: ids found by a key the caller holds, checked
// against std::unordered_map over random inserts and erases, with hashes
// that collide on purpose (long probe runs, runs that wrap around the end).
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <unordered_map>
#include <vector>

#include "dns/hash_index.hpp"

using swarmnet::dns::HashIndex;

namespace {

// Keys live in `keys` (id -> key), as the name table's records hold theirs.
struct Table {
  explicit Table(uint64_t (*h)(uint64_t)) : hash(h) {}
  HashIndex index;
  std::vector<uint64_t> keys;
  uint64_t (*hash)(uint64_t);

  uint32_t find(uint64_t key) const {
    return index.find(hash(key), [&](uint32_t id) { return keys[id] == key; });
  }
  uint32_t add(uint64_t key) {
    keys.push_back(key);
    const uint32_t id = static_cast<uint32_t>(keys.size() - 1);
    index.insert(hash(key), id);
    return id;
  }
  bool remove(uint64_t key) {
    const uint32_t id = find(key);
    return id != HashIndex::kNone && index.erase(hash(key), id);
  }
};

uint64_t identity(uint64_t k) { return k; }
// Eight hashes for every key: probe runs of many ids, tied on the stored
// hash too, so `matches` decides.
uint64_t colliding(uint64_t k) { return k % 8; }

}  // namespace

TEST_CASE("the hash index finds what was inserted and nothing that was erased") {
  for (auto hash : {identity, colliding}) {
    Table t(hash);
    std::unordered_map<uint64_t, uint32_t> model;
    std::mt19937_64 rng(7);
    for (int step = 0; step < 20000; ++step) {
      const uint64_t key = rng() % 600;
      if (rng() % 3 != 0 && !model.count(key)) {
        model[key] = t.add(key);
      } else if (model.count(key)) {
        REQUIRE(t.remove(key));
        model.erase(key);
      }
      if (step % 97 == 0) {
        for (uint64_t k = 0; k < 600; ++k) {
          auto it = model.find(k);
          REQUIRE(t.find(k) == (it == model.end() ? HashIndex::kNone : it->second));
        }
        REQUIRE(t.index.size() == model.size());
      }
    }
    size_t seen = 0;
    t.index.for_each([&](uint32_t) { ++seen; });
    CHECK(seen == model.size());
  }
}

TEST_CASE("the hash index: erase of an absent id, replace, clear; at most 3/4 full") {
  Table t(identity);
  CHECK(t.find(5) == HashIndex::kNone);  // empty: no slots at all yet
  CHECK_FALSE(t.index.erase(5, 0));
  const uint32_t a = t.add(5);
  CHECK_FALSE(t.index.erase(5, a + 1));  // same hash, another id
  CHECK(t.find(5) == a);
  t.keys.push_back(5);  // a second record with the same key takes its place
  REQUIRE(t.index.replace(5, a, a + 1));
  CHECK(t.find(5) == a + 1);
  CHECK_FALSE(t.index.replace(6, a, a + 2));
  for (uint64_t k = 100; k < 1100; ++k) t.add(k);
  CHECK(t.index.size() == 1001);
  CHECK(t.index.size() * 4 <= t.index.capacity() * 3);
  CHECK(t.index.capacity() <= 2048);
  t.index.clear();
  CHECK(t.index.size() == 0);
  CHECK(t.find(100) == HashIndex::kNone);
}

TEST_CASE("the hash index: a probe run across the end of the table survives erases at its start") {
  // Six ids with one hash whose home is the last of 16 slots (the index
  // multiplies by the golden ratio and keeps the upper 32 bits), so their
  // run wraps to slot 0 onwards; erasing the first ones must keep the rest
  // reachable.
  static uint64_t last_slot = 0;
  while (((last_slot * 0x9E3779B97F4A7C15ull) >> 32 & 15) != 15) ++last_slot;
  Table t([](uint64_t) { return last_slot; });
  for (uint64_t k = 0; k < 6; ++k) t.add(k);
  REQUIRE(t.index.capacity() == 16);
  for (uint64_t k = 0; k < 6; ++k) REQUIRE(t.find(k) == k);
  REQUIRE(t.remove(0));
  REQUIRE(t.remove(2));
  for (uint64_t k : {1, 3, 4, 5}) CHECK(t.find(k) == k);
  CHECK(t.find(0) == HashIndex::kNone);
  CHECK(t.find(2) == HashIndex::kNone);
  t.add(6);
  CHECK(t.find(6) == 6);
}
