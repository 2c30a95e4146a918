// A hash index of ids into a table that holds the keys itself, so the index
// stores no key: a slot is 8 bytes (the id and 32 bits of its key's hash),
// where a node-based map with a string key costs some 70 bytes before the
// key. The DNS name table keeps three of these over its records (by
// endpoint, by name, by address), which is most of why a name costs it
// about 150 bytes instead of 1,370 (bench/dns_names).
//
// Open addressing, linear probing, at most 3/4 full; erase shifts the
// following slots back instead of leaving tombstones, so a lookup never
// walks over what was removed and the table never needs a cleanup pass.
// The caller hashes its key (a 64-bit hash; any quality: it is mixed here)
// and tells whether an id's key is the one looked for.
//
// Not thread-safe: the name table's lock guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace swarmnet::dns {

class HashIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // The id whose key matches, or kNone. `matches(id)` is asked only for ids
  // stored with the same 32-bit hash.
  template <class Matches>
  uint32_t find(uint64_t hash, Matches&& matches) const {
    if (slots_.empty()) return kNone;
    const uint32_t h = fold(hash);
    for (size_t i = home(h);; i = (i + 1) & mask()) {
      const Slot& s = slots_[i];
      if (s.id == kNone) return kNone;
      if (s.hash == h && matches(s.id)) return s.id;
    }
  }

  // Adds `id` under `hash`. The caller makes sure no id with the same key
  // is there yet (find first).
  void insert(uint64_t hash, uint32_t id);
  // Removes `id`, inserted under `hash`; false if it is not there.
  bool erase(uint64_t hash, uint32_t id);
  // Puts `by` where `id` was (the same key); false if `id` is not there.
  bool replace(uint64_t hash, uint32_t id, uint32_t by);

  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const Slot& s : slots_)
      if (s.id != kNone) fn(s.id);
  }

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  void clear();

 private:
  struct Slot {
    uint32_t id;
    uint32_t hash;
  };
  static uint32_t fold(uint64_t hash) {
    // Multiplying spreads keys that differ only in their low bits (a
    // network's consecutive addresses) over the whole table.
    const uint64_t mixed = hash * 0x9E3779B97F4A7C15ull;
    return static_cast<uint32_t>(mixed >> 32);
  }
  size_t mask() const { return slots_.size() - 1; }
  size_t home(uint32_t h) const { return h & mask(); }
  size_t slot_of(uint32_t h, uint32_t id) const;  // or slots_.size()
  void place(Slot slot);
  void grow();

  std::vector<Slot> slots_;  // a power of two in size, or empty
  size_t size_ = 0;
};

}  // namespace swarmnet::dns
