// The address space of one network, as one node sees it: the subnet cut into
// equal blocks, the blocks this node owns, and which addresses are in use.
//
// Pure logic, no I/O. swarmnetd owns one AddressSpace per network, rebuilds
// it from its tables at start (own_block + mark_used), and persists every
// allocation before it answers, so the AddressSpace never needs saving.
//
// Why blocks: a node hands out addresses only from blocks it owns, so the
// cluster needs to agree on block ownership, not on every address. Which
// node owns a block is the daemon's business (its replicated block table);
// this class only refuses to allocate outside owned blocks.
//
// Rules, as host-local's round robin: the network address, the broadcast
// address and the gateway are never handed out; allocation resumes after the
// last address handed out (the cursor), wrapping around, so a released
// address is reused only after the rest of the owned range.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::ipam {

// Picks the block prefix length for a subnet: /24 blocks for subnets of /22
// or larger (enough blocks for many nodes), otherwise 4 blocks, or the whole
// subnet when it is smaller than /28... see the implementation for numbers.
unsigned default_block_length(const Ipv4Prefix& subnet);

class AddressSpace {
 public:
  // Throws Error(invalid_argument) if subnet has host bits set, is longer
  // than /30, the gateway is not a usable host address of the subnet, or
  // block_length is shorter than the subnet's or longer than /30.
  AddressSpace(Ipv4Prefix subnet, Ipv4Address gateway, unsigned block_length);

  const Ipv4Prefix& subnet() const { return subnet_; }
  Ipv4Address gateway() const { return gateway_; }
  unsigned block_length() const { return block_length_; }

  // Every block of the subnet, in address order.
  std::vector<Ipv4Prefix> all_blocks() const;
  // The block holding an address of the subnet. Throws if outside.
  Ipv4Prefix block_of(Ipv4Address address) const;

  // Ownership of blocks by this node. Throws Error(invalid_argument) for a
  // prefix that is not one of all_blocks().
  void own_block(const Ipv4Prefix& block);
  // Only a block with no address in use can be given up: Error(conflict).
  void disown_block(const Ipv4Prefix& block);
  bool owns_block(const Ipv4Prefix& block) const;
  bool owns(Ipv4Address address) const;
  std::vector<Ipv4Prefix> owned_blocks() const;

  // True for network, broadcast and gateway.
  bool is_reserved(Ipv4Address address) const;

  // Next free address in the owned blocks after the cursor, wrapping; moves
  // the cursor to it and marks it used. nullopt when the owned blocks are
  // full (the caller then claims another block or reports exhaustion).
  std::optional<Ipv4Address> allocate_next();

  // A specific address (a static request). Throws Error(invalid_argument) if
  // it is outside the subnet or reserved, Error(conflict) if in use; the
  // caller must own its block first (Error(conflict) otherwise). Does not
  // move the cursor.
  void allocate(Ipv4Address address);

  // Marks an address used while rebuilding from saved state: no ownership
  // check (a block may be re-owned right after), but the same range checks.
  void mark_used(Ipv4Address address);

  // Frees an address; releasing a free address is a no-op (DEL may repeat).
  void release(Ipv4Address address);

  bool in_use(Ipv4Address address) const;
  size_t used_in_block(const Ipv4Prefix& block) const;
  size_t used() const;
  // Assignable addresses in the subnet (size minus reserved).
  uint64_t capacity() const;
  // Assignable addresses in the owned blocks that are free.
  uint64_t free_in_owned() const;

  std::optional<Ipv4Address> cursor() const { return cursor_; }
  void set_cursor(std::optional<Ipv4Address> cursor) { cursor_ = cursor; }

 private:
  Ipv4Prefix subnet_;
  Ipv4Address gateway_;
  unsigned block_length_;
  std::map<Ipv4Prefix, std::vector<bool>> owned_;  // block -> used bitmap
  std::map<uint32_t, bool> used_outside_owned_;     // from mark_used before own_block
  std::optional<Ipv4Address> cursor_;
};

}  // namespace swarmnet::ipam
