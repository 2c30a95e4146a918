#include "ipam/address_space.hpp"

#include <algorithm>
#include <bit>
#include <string>

#include "common/error.hpp"

namespace swarmnet::ipam {

namespace {

constexpr unsigned kLongestUsable = 30;  // /31 and /32 leave no host once 3 are reserved
constexpr uint64_t kAllOnes = ~uint64_t{0};

// Bits [from, 64) of a word.
constexpr uint64_t bits_from(uint64_t from) {
  return from >= 64 ? 0 : kAllOnes << from;
}

}  // namespace

unsigned default_block_length(const Ipv4Prefix& subnet) {
  if (subnet.length() > kLongestUsable) {
    throw Error(Errc::invalid_argument,
                "subnet " + subnet.str() +
                    " is too small: /30 is the longest prefix with an address left after the "
                    "network, broadcast and gateway addresses");
  }
  return std::min(kLongestUsable, std::max(24u, subnet.length() + 5));
}

unsigned default_block_length(const Ipv4Prefix& subnet, const Ipv4Prefix& ip_range) {
  return std::max(default_block_length(subnet), std::min(kLongestUsable, ip_range.length() + 2));
}

// ---- Block ----------------------------------------------------------------

AddressSpace::Block::Block(uint64_t size, const std::vector<uint64_t>& reserved_offsets)
    : assignable(size) {
  const uint64_t nwords = (size + 63) / 64;
  words_.assign(nwords, 0);
  full_.assign((nwords + 63) / 64, 0);
  // Padding bits count as taken so searches need no bounds checks.
  if (size % 64 != 0) words_.back() = bits_from(size % 64);
  if (nwords % 64 != 0) full_.back() = bits_from(nwords % 64);
  if (words_.back() == kAllOnes) full_[(nwords - 1) / 64] |= uint64_t{1} << ((nwords - 1) % 64);
  for (uint64_t offset : reserved_offsets) {
    if (!test(offset)) {
      set(offset);
      --assignable;
    }
  }
}

bool AddressSpace::Block::test(uint64_t offset) const {
  return (words_[offset / 64] >> (offset % 64)) & 1;
}

void AddressSpace::Block::set(uint64_t offset) {
  uint64_t& word = words_[offset / 64];
  word |= uint64_t{1} << (offset % 64);
  if (word == kAllOnes) full_[offset / 4096] |= uint64_t{1} << ((offset / 64) % 64);
}

void AddressSpace::Block::clear(uint64_t offset) {
  words_[offset / 64] &= ~(uint64_t{1} << (offset % 64));
  full_[offset / 4096] &= ~(uint64_t{1} << ((offset / 64) % 64));
}

std::optional<uint64_t> AddressSpace::Block::find_clear_from(uint64_t offset) const {
  uint64_t w = offset / 64;
  if (w >= words_.size()) return std::nullopt;
  uint64_t free_bits = ~words_[w] & bits_from(offset % 64);
  if (free_bits != 0) return w * 64 + std::countr_zero(free_bits);
  // Then the first word after w that is not full, through the summary.
  const uint64_t first = w + 1;
  for (uint64_t s = first / 64; s < full_.size(); ++s) {
    uint64_t not_full = ~full_[s];
    if (s == first / 64) not_full &= bits_from(first % 64);
    if (not_full == 0) continue;
    const uint64_t word = s * 64 + std::countr_zero(not_full);
    return word * 64 + std::countr_zero(~words_[word]);
  }
  return std::nullopt;
}

// ---- AddressSpace ---------------------------------------------------------

AddressSpace::AddressSpace(Ipv4Prefix subnet, Ipv4Address gateway, unsigned block_length)
    : subnet_(subnet), gateway_(gateway), block_length_(block_length) {
  if (!subnet_.is_network()) {
    throw Error(Errc::invalid_argument,
                "subnet " + subnet_.str() + " has host bits set (did you mean " +
                    Ipv4Prefix(subnet_.network(), subnet_.length()).str() + "?)");
  }
  if (subnet_.length() > kLongestUsable) {
    throw Error(Errc::invalid_argument,
                "subnet " + subnet_.str() +
                    " is too small: it needs to be /30 or larger to keep an address after the "
                    "network, broadcast and gateway addresses");
  }
  if (!subnet_.contains(gateway_) || gateway_ == subnet_.network() ||
      gateway_ == subnet_.broadcast()) {
    throw Error(
        Errc::invalid_argument,
        "gateway " + gateway_.str() + " is not a usable host address of subnet " + subnet_.str());
  }
  if (block_length_ < subnet_.length() || block_length_ > kLongestUsable) {
    throw Error(Errc::invalid_argument, "block length /" + std::to_string(block_length_) +
                                            " for subnet " + subnet_.str() + " must be between /" +
                                            std::to_string(subnet_.length()) + " and /" +
                                            std::to_string(kLongestUsable));
  }
}

uint32_t AddressSpace::block_index(Ipv4Address address) const {
  return static_cast<uint32_t>((uint64_t{address.value()} - subnet_.network().value()) >>
                               (32 - block_length_));
}

uint32_t AddressSpace::block_index(const Ipv4Prefix& block) const {
  if (block.length() != block_length_ || !block.is_network() || !subnet_.contains(block)) {
    throw Error(Errc::invalid_argument, block.str() + " is not a /" +
                                            std::to_string(block_length_) + " block of subnet " +
                                            subnet_.str());
  }
  return block_index(block.address());
}

Ipv4Prefix AddressSpace::block_prefix(uint32_t index) const {
  return Ipv4Prefix(address_at(index, 0), block_length_);
}

uint64_t AddressSpace::offset_in_block(Ipv4Address address) const {
  return (uint64_t{address.value()} - subnet_.network().value()) &
         ((uint64_t{1} << (32 - block_length_)) - 1);
}

Ipv4Address AddressSpace::address_at(uint32_t index, uint64_t offset) const {
  return Ipv4Address(static_cast<uint32_t>(subnet_.network().value() +
                                           (uint64_t{index} << (32 - block_length_)) + offset));
}

AddressSpace::Block AddressSpace::make_block(uint32_t index) const {
  const Ipv4Prefix prefix = block_prefix(index);
  std::vector<uint64_t> reserved;
  for (Ipv4Address a : {subnet_.network(), subnet_.broadcast(), gateway_}) {
    if (prefix.contains(a)) reserved.push_back(offset_in_block(a));
  }
  return Block(prefix.size(), reserved);
}

void AddressSpace::check_assignable(Ipv4Address address) const {
  if (!subnet_.contains(address)) {
    throw Error(Errc::invalid_argument, address.str() + " is outside subnet " + subnet_.str());
  }
  const char* what = address == subnet_.network()     ? "network address"
                     : address == subnet_.broadcast() ? "broadcast address"
                     : address == gateway_            ? "gateway"
                                                      : nullptr;
  if (what != nullptr) {
    throw Error(Errc::invalid_argument,
                address.str() + " is reserved in subnet " + subnet_.str() + " (" + what + ")");
  }
}

AddressSpace::Block* AddressSpace::find_block(uint32_t index) {
  if (auto it = owned_.find(index); it != owned_.end()) return &it->second;
  if (auto it = foreign_.find(index); it != foreign_.end()) return &it->second;
  return nullptr;
}

const AddressSpace::Block* AddressSpace::find_block(uint32_t index) const {
  return const_cast<AddressSpace*>(this)->find_block(index);
}

std::vector<Ipv4Prefix> AddressSpace::all_blocks() const {
  const uint64_t count = uint64_t{1} << (block_length_ - subnet_.length());
  std::vector<Ipv4Prefix> blocks;
  blocks.reserve(count);
  for (uint64_t i = 0; i < count; ++i) blocks.push_back(block_prefix(static_cast<uint32_t>(i)));
  return blocks;
}

Ipv4Prefix AddressSpace::block_of(Ipv4Address address) const {
  if (!subnet_.contains(address)) {
    throw Error(Errc::invalid_argument, address.str() + " is outside subnet " + subnet_.str());
  }
  return block_prefix(block_index(address));
}

void AddressSpace::own_block(const Ipv4Prefix& block) {
  const uint32_t index = block_index(block);
  if (owned_.contains(index)) return;
  // Addresses marked used before the block was owned stay used.
  auto node = foreign_.extract(index);
  auto [it, inserted] =
      owned_.emplace(index, node.empty() ? make_block(index) : std::move(node.mapped()));
  free_in_owned_ += it->second.free();
  if (it->second.free() > 0) not_full_.insert(index);
}

void AddressSpace::disown_block(const Ipv4Prefix& block) {
  const uint32_t index = block_index(block);
  auto it = owned_.find(index);
  if (it == owned_.end()) return;
  if (it->second.used > 0) {
    throw Error(Errc::conflict, "cannot give up block " + block.str() + " of subnet " +
                                    subnet_.str() + ": " + std::to_string(it->second.used) +
                                    " address(es) still in use");
  }
  free_in_owned_ -= it->second.free();
  not_full_.erase(index);
  owned_.erase(it);
}

bool AddressSpace::owns_block(const Ipv4Prefix& block) const {
  if (block.length() != block_length_ || !block.is_network() || !subnet_.contains(block)) {
    return false;
  }
  return owned_.contains(block_index(block.address()));
}

bool AddressSpace::owns(Ipv4Address address) const {
  return subnet_.contains(address) && owned_.contains(block_index(address));
}

std::vector<Ipv4Prefix> AddressSpace::owned_blocks() const {
  std::vector<Ipv4Prefix> blocks;
  blocks.reserve(owned_.size());
  for (const auto& [index, block] : owned_) blocks.push_back(block_prefix(index));
  return blocks;
}

bool AddressSpace::is_reserved(Ipv4Address address) const {
  return address == subnet_.network() || address == subnet_.broadcast() || address == gateway_;
}

void AddressSpace::mark(uint32_t index, Block& block, uint64_t offset) {
  block.set(offset);
  ++block.used;
  ++used_;
  if (owned_.contains(index)) {
    --free_in_owned_;
    if (block.free() == 0) not_full_.erase(index);
  }
}

std::optional<Ipv4Address> AddressSpace::take_from(uint32_t index, uint64_t offset) {
  Block& block = owned_.at(index);
  auto found = block.find_clear_from(offset);
  if (!found) return std::nullopt;
  mark(index, block, *found);
  cursor_ = address_at(index, *found);
  return cursor_;
}

std::optional<Ipv4Address> AddressSpace::allocate_next(Wrap wrap) {
  if (not_full_.empty()) return std::nullopt;
  // Start right after the cursor; past the subnet's end means wrap to its start.
  uint64_t start = 0;
  if (cursor_ && subnet_.contains(*cursor_)) {
    start = uint64_t{cursor_->value()} - subnet_.network().value() + 1;
    if (start >= subnet_.size()) start = 0;
  }
  const auto start_index = static_cast<uint32_t>(start >> (32 - block_length_));
  const uint64_t start_offset = start & ((uint64_t{1} << (32 - block_length_)) - 1);

  if (not_full_.contains(start_index)) {
    if (auto a = take_from(start_index, start_offset)) return a;
  }
  // Every block in not_full_ has a free address, so the first one after the
  // start block (or, wrapping, the first one at all) is the answer. When
  // that is the start block again, its free address lies before the cursor.
  auto it = not_full_.upper_bound(start_index);
  if (it == not_full_.end()) {
    if (wrap == Wrap::no) return std::nullopt;
    it = not_full_.begin();
  }
  return take_from(*it, 0);
}

std::optional<Ipv4Address> AddressSpace::take_between(uint64_t first, uint64_t last) {
  const unsigned shift = 32 - block_length_;
  const uint64_t in_block = (uint64_t{1} << shift) - 1;
  const auto first_index = static_cast<uint32_t>(first >> shift);
  const auto last_index = static_cast<uint32_t>(last >> shift);
  for (auto it = not_full_.lower_bound(first_index); it != not_full_.end() && *it <= last_index; ++it) {
    Block& block = owned_.at(*it);
    const uint64_t from = *it == first_index ? first & in_block : 0;
    const uint64_t to = *it == last_index ? last & in_block : in_block;
    auto found = block.find_clear_from(from);
    if (!found || *found > to) continue;
    mark(*it, block, *found);
    cursor_ = address_at(*it, *found);
    return cursor_;
  }
  return std::nullopt;
}

std::optional<Ipv4Address> AddressSpace::allocate_next_in(const Ipv4Prefix& range) {
  if (!subnet_.contains(range)) {
    throw Error(Errc::invalid_argument, "range " + range.str() + " is not inside subnet " + subnet_.str());
  }
  const uint64_t base = subnet_.network().value();
  return take_between(range.network().value() - base, range.broadcast().value() - base);
}

std::vector<Ipv4Prefix> AddressSpace::blocks_in(const Ipv4Prefix& range) const {
  std::vector<Ipv4Prefix> out;
  if (!subnet_.overlaps(range)) return out;
  const Ipv4Address first = subnet_.contains(range.network()) ? range.network() : subnet_.network();
  const Ipv4Address last = subnet_.contains(range.broadcast()) ? range.broadcast() : subnet_.broadcast();
  for (uint64_t i = block_index(first); i <= block_index(last); ++i) {
    out.push_back(block_prefix(static_cast<uint32_t>(i)));
  }
  return out;
}

void AddressSpace::allocate(Ipv4Address address) {
  check_assignable(address);
  const uint32_t index = block_index(address);
  auto it = owned_.find(index);
  if (it == owned_.end()) {
    throw Error(Errc::conflict, "cannot allocate " + address.str() + ": its block " +
                                    block_prefix(index).str() + " of subnet " + subnet_.str() +
                                    " is not owned by this node");
  }
  const uint64_t offset = offset_in_block(address);
  if (it->second.test(offset)) {
    throw Error(Errc::conflict, address.str() + " is already in use in subnet " + subnet_.str());
  }
  mark(index, it->second, offset);
}

void AddressSpace::mark_used(Ipv4Address address) {
  check_assignable(address);
  const uint32_t index = block_index(address);
  Block* block = find_block(index);
  if (block == nullptr) block = &foreign_.emplace(index, make_block(index)).first->second;
  const uint64_t offset = offset_in_block(address);
  if (!block->test(offset)) mark(index, *block, offset);
}

void AddressSpace::release(Ipv4Address address) {
  if (!subnet_.contains(address)) {
    throw Error(Errc::invalid_argument,
                "cannot release " + address.str() + ": outside subnet " + subnet_.str());
  }
  if (is_reserved(address)) return;
  const uint32_t index = block_index(address);
  const uint64_t offset = offset_in_block(address);
  if (auto it = owned_.find(index); it != owned_.end()) {
    Block& block = it->second;
    if (!block.test(offset)) return;
    block.clear(offset);
    --block.used;
    --used_;
    ++free_in_owned_;
    not_full_.insert(index);
  } else if (auto f = foreign_.find(index); f != foreign_.end()) {
    Block& block = f->second;
    if (!block.test(offset)) return;
    block.clear(offset);
    --block.used;
    --used_;
    if (block.used == 0) foreign_.erase(f);  // nothing left worth remembering
  }
}

bool AddressSpace::in_use(Ipv4Address address) const {
  if (!subnet_.contains(address) || is_reserved(address)) return false;
  const Block* block = find_block(block_index(address));
  return block != nullptr && block->test(offset_in_block(address));
}

size_t AddressSpace::used_in_block(const Ipv4Prefix& block) const {
  const Block* b = find_block(block_index(block));
  return b == nullptr ? 0 : b->used;
}

uint64_t AddressSpace::capacity() const {
  return subnet_.size() - 3;
}

}  // namespace swarmnet::ipam
