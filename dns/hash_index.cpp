#include "dns/hash_index.hpp"

namespace swarmnet::dns {

namespace {
constexpr size_t kFirstCapacity = 16;
}  // namespace

size_t HashIndex::slot_of(uint32_t h, uint32_t id) const {
  if (slots_.empty()) return 0;
  for (size_t i = home(h);; i = (i + 1) & mask()) {
    const Slot& s = slots_[i];
    if (s.id == kNone) return slots_.size();
    if (s.id == id && s.hash == h) return i;
  }
}

void HashIndex::place(Slot slot) {
  size_t i = home(slot.hash);
  while (slots_[i].id != kNone) i = (i + 1) & mask();
  slots_[i] = slot;
}

void HashIndex::grow() {
  std::vector<Slot> old(slots_.empty() ? kFirstCapacity : slots_.size() * 2, Slot{kNone, 0});
  old.swap(slots_);
  for (const Slot& s : old)
    if (s.id != kNone) place(s);
}

void HashIndex::insert(uint64_t hash, uint32_t id) {
  if ((size_ + 1) * 4 > slots_.size() * 3) grow();
  place({id, fold(hash)});
  ++size_;
}

bool HashIndex::erase(uint64_t hash, uint32_t id) {
  size_t hole = slot_of(fold(hash), id);
  if (hole >= slots_.size()) return false;
  slots_[hole].id = kNone;
  --size_;
  // Backward shift: a later slot of the same probe run moves into the hole
  // unless its home lies cyclically in (hole, i], where it is still
  // reachable without crossing the hole.
  for (size_t i = (hole + 1) & mask(); slots_[i].id != kNone; i = (i + 1) & mask()) {
    const size_t h = home(slots_[i].hash);
    const bool reachable = hole < i ? (hole < h && h <= i) : (hole < h || h <= i);
    if (reachable) continue;
    slots_[hole] = slots_[i];
    slots_[i].id = kNone;
    hole = i;
  }
  return true;
}

bool HashIndex::replace(uint64_t hash, uint32_t id, uint32_t by) {
  size_t i = slot_of(fold(hash), id);
  if (i >= slots_.size()) return false;
  slots_[i].id = by;
  return true;
}

void HashIndex::clear() {
  slots_.clear();
  slots_.shrink_to_fit();
  size_ = 0;
}

}  // namespace swarmnet::dns
