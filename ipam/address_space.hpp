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
// this class only refuses to allocate outside owned blocks. That refusal is
// half of the "no two live nodes hand out the same address" guarantee: as
// long as the daemon lets a node own a block only when no other live node
// does, every address handed out here is unique in the cluster.
//
// How the daemon (daemon/cluster_ipam.cpp, daemon/cluster.cpp) keeps the other
// half, whatever the timing, partitions included:
//  1. A block with no record in the replicated block table belongs to the
//     node that created the network. Nobody else may use it.
//  2. Ownership moves only by the current owner's own write: an owner gives
//     an EMPTY block away (donate_block: disown locally, then write the new
//     owner) when another node asks. Since only one node may write a block's
//     record at any moment, there are never two concurrent writers, and last
//     writer wins can never pick between two owners. A node that cannot reach
//     any owner (a partition) cannot get a block: it fails the ADD instead.
//  3. Each allocation is journaled with fdatasync before the reply, and the
//     block claim before the first allocation in it, so a restart never
//     forgets what was handed out (test_daemon_crash.sh).
//  4. A node dead longer than --reclaim-after-s has its blocks taken over by
//     one node (the smallest id alive) of a majority. A node cut off from a
//     majority stops allocating after half that time (its lease), so a
//     reclaimed block is never still in use for new addresses by its former
//     owner. The lease survives restarts (cluster.json: all members, and when
//     a majority was last seen). Its old containers are presumed gone with
//     it, as swarm presumes of tasks on a lost node.
// Tests: tests/test_cluster_ipam.cpp (three controllers, lossy gossip,
// partitions, reclaim, the lease across restarts), test_cluster_ipam_alone.cpp
// (the block protocol and the wait for a block against a fake cluster),
// integration/test_cluster_partition.sh and test_cluster_lease.sh (3 hosts).
//
// Rules, as host-local's round robin: the network address, the broadcast
// address and the gateway are never handed out; allocation resumes after the
// last address handed out (the cursor), wrapping around, so a released
// address is reused only after the rest of the owned range.
//
// Cost: each owned block (and each unowned block holding addresses marked
// used) keeps a bitmap of block-size bits, so memory follows what this node
// owns, not the subnet's size. allocate_next looks only at owned blocks with
// a free address, and inside a block skips full 64-address words 64 words
// at a time, so it stays fast in a /8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::ipam {

// Picks the block prefix length for a subnet:
//   min(30, max(24, subnet length + 5))
// so /19 and larger subnets get /24 blocks (256 addresses: few claims for a
// busy node, and a /8 has 65,536 of them), /20 to /25 subnets get 32 blocks
// (a /24 network, Docker's usual size, is cut into 32 /29s so 32 nodes can
// hold addresses on it), and /26 to /30 subnets get /30 blocks (the smallest
// with a usable address once network, gateway and broadcast are taken; a /30
// subnet is a single block). Throws Error(invalid_argument) for /31 and /32:
// no address is left once network, broadcast and gateway are reserved.
unsigned default_block_length(const Ipv4Prefix& subnet);
// The same for a network whose addresses without a static one come from
// `ip_range` (inside the subnet): blocks short enough that the range holds
// four of them (/30 at most), so that several nodes can each own a part of
// the range, and never longer than default_block_length.
unsigned default_block_length(const Ipv4Prefix& subnet, const Ipv4Prefix& ip_range);

class AddressSpace {
 public:
  // Throws Error(invalid_argument) if subnet has host bits set, is longer
  // than /30, the gateway is not a usable host address of the subnet, or
  // block_length is shorter than the subnet's or longer than /30.
  AddressSpace(Ipv4Prefix subnet, Ipv4Address gateway, unsigned block_length);

  const Ipv4Prefix& subnet() const { return subnet_; }
  Ipv4Address gateway() const { return gateway_; }
  unsigned block_length() const { return block_length_; }

  // Every block of the subnet, in address order. A vector of
  // 2^(block_length - subnet length) prefixes: 65,536 for a /8 in /24s.
  std::vector<Ipv4Prefix> all_blocks() const;
  // The block holding an address of the subnet. Throws
  // Error(invalid_argument) if outside.
  Ipv4Prefix block_of(Ipv4Address address) const;

  // Ownership of blocks by this node. Throws Error(invalid_argument) for a
  // prefix that is not one of all_blocks(). Owning an owned block, or
  // disowning an unowned one, is a no-op.
  void own_block(const Ipv4Prefix& block);
  // Only a block with no address in use can be given up: Error(conflict).
  void disown_block(const Ipv4Prefix& block);
  // False for anything that is not one of all_blocks().
  bool owns_block(const Ipv4Prefix& block) const;
  bool owns(Ipv4Address address) const;
  std::vector<Ipv4Prefix> owned_blocks() const;

  // True for network, broadcast and gateway.
  bool is_reserved(Ipv4Address address) const;

  // Next free address in the owned blocks after the cursor, wrapping; moves
  // the cursor to it and marks it used. nullopt when the owned blocks are
  // full (the caller then claims another block or reports exhaustion).
  // Without a cursor (or with one outside the subnet) it starts at the
  // beginning of the subnet. With Wrap::no it returns nullopt instead of
  // going back to the start of the subnet, so the daemon can claim a fresh
  // block ahead of the cursor before reusing released addresses.
  enum class Wrap { yes, no };
  std::optional<Ipv4Address> allocate_next(Wrap wrap = Wrap::yes);
  // The lowest free address of the owned blocks inside `range` (any prefix
  // inside the subnet, larger or smaller than a block), as Docker hands out
  // an --ip-range; moves the cursor to it. Throws Error(invalid_argument)
  // for a range not inside the subnet.
  std::optional<Ipv4Address> allocate_next_in(const Ipv4Prefix& range);
  // The blocks that hold an address of `range`, in address order.
  std::vector<Ipv4Prefix> blocks_in(const Ipv4Prefix& range) const;

  // A specific address (a static request). Throws Error(invalid_argument) if
  // it is outside the subnet or reserved, Error(conflict) if in use; the
  // caller must own its block first (Error(conflict) otherwise). Does not
  // move the cursor.
  void allocate(Ipv4Address address);

  // Marks an address used while rebuilding from saved state: no ownership
  // check (a block may be re-owned right after), but the same range checks.
  // Marking a used address again is a no-op, so a replay may repeat.
  void mark_used(Ipv4Address address);

  // Frees an address; releasing a free address is a no-op (DEL may repeat),
  // and so is releasing a reserved one (it is never in use). Throws
  // Error(invalid_argument) outside the subnet: that is the wrong network.
  void release(Ipv4Address address);

  // False outside the subnet and for reserved addresses.
  bool in_use(Ipv4Address address) const;
  // Throws Error(invalid_argument) if block is not one of all_blocks().
  size_t used_in_block(const Ipv4Prefix& block) const;
  size_t used() const { return used_; }
  // Assignable addresses in the subnet (size minus reserved).
  uint64_t capacity() const;
  // Assignable addresses in the owned blocks that are free.
  uint64_t free_in_owned() const { return free_in_owned_; }

  std::optional<Ipv4Address> cursor() const { return cursor_; }
  void set_cursor(std::optional<Ipv4Address> cursor) { cursor_ = cursor; }

 private:
  // Bitmap of one block. A set bit is an address that cannot be handed out:
  // in use, reserved, or padding past the end of a block smaller than 64.
  class Block {
   public:
    Block(uint64_t size, const std::vector<uint64_t>& reserved_offsets);
    bool test(uint64_t offset) const;
    void set(uint64_t offset);
    void clear(uint64_t offset);
    // The first clear bit at or after offset.
    std::optional<uint64_t> find_clear_from(uint64_t offset) const;

    uint64_t used = 0;        // addresses in use (not reserved ones)
    uint64_t assignable = 0;  // size minus reserved addresses in the block
    uint64_t free() const { return assignable - used; }

   private:
    std::vector<uint64_t> words_;
    // Bit i set when words_[i] is all ones, so a search skips full words
    // 64 at a time; padding past the last word is set too.
    std::vector<uint64_t> full_;
  };

  uint32_t block_index(Ipv4Address address) const;      // address must be inside
  uint32_t block_index(const Ipv4Prefix& block) const;  // throws if not a block
  Ipv4Prefix block_prefix(uint32_t index) const;
  uint64_t offset_in_block(Ipv4Address address) const;
  Ipv4Address address_at(uint32_t index, uint64_t offset) const;
  Block make_block(uint32_t index) const;
  // Throws Error(invalid_argument) unless address could ever be handed out.
  void check_assignable(Ipv4Address address) const;
  // The state of the block holding address, if this node tracks it.
  Block* find_block(uint32_t index);
  const Block* find_block(uint32_t index) const;
  void mark(uint32_t index, Block& block, uint64_t offset);
  std::optional<Ipv4Address> take_from(uint32_t index, uint64_t offset);
  // The first free address of the owned blocks between two offsets from
  // the subnet's start (inclusive), taken.
  std::optional<Ipv4Address> take_between(uint64_t first, uint64_t last);

  Ipv4Prefix subnet_;
  Ipv4Address gateway_;
  unsigned block_length_;
  std::map<uint32_t, Block> owned_;    // block index -> bitmap
  std::map<uint32_t, Block> foreign_;  // unowned blocks with addresses marked used
  std::set<uint32_t> not_full_;        // owned blocks with a free address
  size_t used_ = 0;
  uint64_t free_in_owned_ = 0;
  std::optional<Ipv4Address> cursor_;
};

}  // namespace swarmnet::ipam
