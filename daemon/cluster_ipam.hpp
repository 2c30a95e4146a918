// Cluster IPAM: which addresses of a network this node may hand out, and
// the protocol by which address blocks move between nodes.
//
// Every network's subnet is split into blocks (ipam/address_space.hpp). A
// block belongs to one node: the node that created the network owns every
// block nobody was given; a block changes hands only by its owner's own
// write (donate_block) or, once its owner has been dead past the reclaim
// time, by the majority's reclaim (reclaim_from). A node hands out
// addresses only from its own blocks, so two live nodes never hand out the
// same address, whatever the timing of gossip; a node cut off from the
// majority past its lease stops allocating (BlockExchange::may_allocate)
// before the majority may reclaim its blocks.
//
// A node out of addresses while others own blocks with room throws
// BlockNeeded; allocating() runs a request again when a block arrives.
// Runs on the daemon's thread; reads and writes the Store's tables.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/ipv4.hpp"
#include "daemon/dataplane.hpp"
#include "daemon/membership.hpp"
#include "daemon/store.hpp"
#include "ipam/address_space.hpp"
#include "ipam/subnet_pool.hpp"

namespace swarmnet::daemon {

// What the cluster IPAM needs of the cluster beyond its membership: a way
// to ask other nodes for an address block, and whether this node may still
// hand out addresses. The cluster (daemon/cluster.hpp) implements it.
class BlockExchange {
 public:
  virtual ~BlockExchange() = default;
  // Asks the nodes that own address blocks of a network to give one to us
  // (they answer by writing us as the block's owner); with a range, a block
  // holding addresses of it.
  virtual void request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range) = 0;
  // False once this node has been cut off from a majority of the cluster
  // for longer than its lease: the majority may then reclaim its blocks, so
  // it must stop handing out addresses from them.
  virtual bool may_allocate() const { return true; }
};

// Thrown when this node owns no free address in a network but other live
// nodes own blocks of it: ClusterIpam::allocating() asks them for a block
// and runs the request again.
class BlockNeeded : public Error {
 public:
  explicit BlockNeeded(std::string network_id, const std::string& message,
                       std::optional<Ipv4Prefix> range = std::nullopt)
      : Error(Errc::exhausted, message), network_id_(std::move(network_id)), range_(range) {}
  const std::string& network_id() const { return network_id_; }
  // The request wanted an address of this range: a block must hold some.
  const std::optional<Ipv4Prefix>& range() const { return range_; }

 private:
  std::string network_id_;
  std::optional<Ipv4Prefix> range_;
};

// The gossip message by which a node asks for a block:
//   {"type": "block_request", "network": ID, "from": NODE[, "range": CIDR]}
// "range" came later: a daemon of an earlier release ignores it and gives
// any free block, and one without it is read as asking for any block.
struct BlockRequest {
  std::string network_id;
  std::string from;
  std::optional<Ipv4Prefix> range;
};
boost::json::object to_json(const BlockRequest& r);
// Throws Error(invalid_argument) naming the field.
BlockRequest block_request_from_json(const boost::json::object& o);

// How long a request waits for a block from another node, and how often it
// asks again meanwhile (a request or its answer may be lost).
struct BlockWait {
  std::chrono::milliseconds wait{5000};
  std::chrono::milliseconds ask_again{500};
};

class ClusterIpam {
 public:
  explicit ClusterIpam(Store& store, BlockWait timing = {});
  ~ClusterIpam();

  // The cluster (nullptrs: this node alone, which owns every block).
  void set_cluster(const Membership* membership, BlockExchange* blocks);

  // Where networks created without a subnet come from: the cluster's
  // default address pools (swarm's 10.0.0.0/8 in /24s outside a cluster).
  void set_address_pools(ipam::AddressPools pools) { pools_ = std::move(pools); }
  const ipam::AddressPools& address_pools() const { return pools_; }
  // The first subnet of the pools clear of `taken`; Error(exhausted) if none.
  Ipv4Prefix pick_subnet(const std::vector<Ipv4Prefix>& taken) const;
  // Pools against this host's routes: Error(invalid_argument) naming the
  // route when a pool has no subnet clear of them; else one warning per pool
  // that overlaps a route (its subnets overlapping one are skipped).
  static std::vector<std::string> check_pools_against_routes(const ipam::AddressPools& pools,
                                                             const std::vector<HostRoute>& routes);
  // The block length of a new network (ipam::default_block_length);
  // Error(invalid_argument) if the subnet and gateway make no valid layout
  // or the range is not inside the subnet.
  static unsigned block_length(const Ipv4Prefix& subnet, Ipv4Address gateway,
                               const std::optional<Ipv4Prefix>& ip_range = std::nullopt);

  // An address of the network for a new endpoint: `static_ip` if given
  // (and free, and in a block of ours), else the next free one inside
  // `range`, or the network's ip_range, or anywhere in the subnet. Journals
  // a block it claims before the address is used. Throws BlockNeeded when
  // other live nodes own the free space, Error(unavailable) when this node
  // may not allocate or the owners of the free space are unreachable,
  // Error(exhausted) when the subnet (or range) is full,
  // Error(invalid_argument) for a range not inside the subnet.
  Ipv4Address allocate(const NetworkRecord& network, std::optional<Ipv4Address> static_ip,
                       std::optional<Ipv4Prefix> range = std::nullopt);
  // Gives an address of this node's back (its endpoint record is gone or
  // was never stored).
  void release(const NetworkRecord& network, Ipv4Address ip);

  // Runs `attempt` (a request that may allocate). While it throws
  // BlockNeeded, asks the owners of that network's blocks for one and runs
  // it again as soon as a block arrives (or after BlockWait::ask_again); once
  // BlockWait::wait has passed, the last BlockNeeded escapes. Any other
  // exception escapes at once.
  boost::asio::awaitable<void> allocating(std::function<void()> attempt);
  // Asks the owners of a network's blocks for one (no-op on a single node),
  // holding addresses of `range` if given (BlockNeeded::range).
  void request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range);

  // Another node asks for an address block of a network (holding addresses
  // of `range` if given). If this node owns such a block with no address in
  // use, it hands it over (writes the new owner) and returns true.
  bool donate_block(const std::string& network_id, const std::string& requester,
                    const std::optional<Ipv4Prefix>& range = std::nullopt);
  // Takes over the address blocks of a node that has been dead longer than
  // the reclaim time (the cluster layer decides when, and that only one
  // node does it); the addresses its endpoints hold stay held. Returns the
  // number of blocks taken (0 for this node or a live one).
  size_t reclaim_from(const std::string& dead_node);
  // The operator says a dead node is gone for good: the addresses its
  // endpoints hold are released (the endpoint records deleted), but not
  // the service VIPs it reserved. Returns the number of endpoints released.
  size_t release_endpoints_of(const std::string& gone_node);

  // What other nodes changed in the tables.
  void endpoint_changed(const std::string& network_id, const std::string& endpoint_key);
  void block_changed(const std::string& block_key);
  void network_changed(const std::string& network_id);
  // A network removed here: its block records go with it.
  void remove_network(const std::string& network_id);
  // How often a network's address space was rebuilt from the tables (tests).
  size_t space_rebuilds() const { return space_rebuilds_; }

 private:
  struct Waiter;

  bool alive(const std::string& node_id) const;
  const std::string& owner_of(const NetworkRecord& network, const Ipv4Prefix& block) const;
  ipam::AddressSpace& space_of(const NetworkRecord& network);
  void claim_block(const NetworkRecord& network, ipam::AddressSpace& space, const Ipv4Prefix& block);
  Ipv4Address allocate_in(const NetworkRecord& network, ipam::AddressSpace& space, const Ipv4Prefix& range);
  // Throws what allocate throws when this node has no free address left in
  // `blocks`: BlockNeeded if a live node owns one of them, else unavailable
  // or exhausted with `full`.
  [[noreturn]] void out_of_blocks(const NetworkRecord& network, const std::vector<Ipv4Prefix>& blocks,
                                  const std::string& full, const std::optional<Ipv4Prefix>& range);
  boost::asio::awaitable<void> wait_for_block(const std::string& network_id,
                                              std::chrono::steady_clock::time_point until);

  Store& store_;
  BlockWait timing_;
  const Membership* membership_ = nullptr;
  BlockExchange* blocks_ = nullptr;
  std::map<std::string, ipam::AddressSpace> spaces_;  // network id -> its addresses
  ipam::AddressPools pools_ = ipam::default_address_pools();
  std::multimap<std::string, Waiter*> waiters_;  // network id -> requests waiting for a block
  size_t space_rebuilds_ = 0;
};

}  // namespace swarmnet::daemon
