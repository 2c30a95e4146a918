#include "daemon/cluster_ipam.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <set>

#include "common/api.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::daemon {

namespace asio = boost::asio;

boost::json::object to_json(const BlockRequest& r) {
  boost::json::object o{{"type", "block_request"}, {"network", r.network_id}, {"from", r.from}};
  if (r.range) o["range"] = r.range->str();
  return o;
}

BlockRequest block_request_from_json(const boost::json::object& o) {
  BlockRequest r{json_fields::required_string(o, "network"), json_fields::required_string(o, "from"),
                 std::nullopt};
  if (auto range = json_fields::optional_string(o, "range")) {
    try {
      r.range = Ipv4Prefix::parse_network(*range);
    } catch (const Error& e) {
      throw Error(Errc::invalid_argument, std::string("field \"range\": ") + e.what());
    }
  }
  return r;
}

struct ClusterIpam::Waiter {
  asio::steady_timer timer;
};

ClusterIpam::ClusterIpam(Store& store, BlockWait timing) : store_(store), timing_(timing) {}

ClusterIpam::~ClusterIpam() = default;

void ClusterIpam::set_cluster(const Membership* membership, BlockExchange* blocks) {
  membership_ = membership;
  blocks_ = blocks;
}

bool ClusterIpam::alive(const std::string& node_id) const {
  if (node_id == store_.node_id()) return true;
  return membership_ && membership_->is_alive(node_id);
}

const std::string& ClusterIpam::owner_of(const NetworkRecord& network, const Ipv4Prefix& block) const {
  auto it = store_.blocks().find(block_key(network.id, block));
  if (it != store_.blocks().end() && !it->second.deleted) return it->second.value.owner;
  // A block nobody was given belongs to the node that created the network:
  // ownership then only ever moves by its owner's own write (donate_block).
  return network.created_by;
}


Ipv4Prefix ClusterIpam::pick_subnet(const std::vector<Ipv4Prefix>& taken) const {
  auto free = ipam::next_free_subnet(pools_, taken);
  if (!free) {
    std::string pools;
    for (const auto& p : pools_.pools) pools += (pools.empty() ? "" : ", ") + p.str();
    throw Error(Errc::exhausted, "the default address pools (" + pools + ") have no free /" +
                                     std::to_string(pools_.mask_length) +
                                     " left (networks and this host's routes hold the rest); give --subnet");
  }
  return *free;
}

unsigned ClusterIpam::block_length(const Ipv4Prefix& subnet, Ipv4Address gateway,
                                   const std::optional<Ipv4Prefix>& ip_range) {
  if (ip_range && !subnet.contains(*ip_range)) {
    throw Error(Errc::invalid_argument, "ip range " + ip_range->str() + " is not inside subnet " + subnet.str());
  }
  const unsigned length =
      ip_range ? ipam::default_block_length(subnet, *ip_range) : ipam::default_block_length(subnet);
  ipam::AddressSpace check(subnet, gateway, length);  // validates the layout
  return length;
}

void ClusterIpam::release(const NetworkRecord& network, Ipv4Address ip) {
  // Another live endpoint may hold it too (a clash): it stays used.
  if (store_.index().holders(network.id, ip) == 0) space_of(network).release(ip);
}

void ClusterIpam::request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range) {
  if (blocks_) blocks_->request_block(network_id, range);
}

asio::awaitable<void> ClusterIpam::allocating(std::function<void()> attempt) {
  const auto deadline = std::chrono::steady_clock::now() + timing_.wait;
  for (;;) {
    std::string network_id;
    std::optional<Ipv4Prefix> range;
    try {
      attempt();
      co_return;
    } catch (const BlockNeeded& e) {
      if (std::chrono::steady_clock::now() >= deadline) throw;
      network_id = e.network_id();
      range = e.range();
    }
    request_block(network_id, range);
    co_await wait_for_block(network_id, std::min(deadline, std::chrono::steady_clock::now() + timing_.ask_again));
  }
}

asio::awaitable<void> ClusterIpam::wait_for_block(const std::string& network_id,
                                                  std::chrono::steady_clock::time_point until) {
  Waiter waiter{asio::steady_timer(co_await asio::this_coro::executor, until)};
  // Listed while it waits, also when the wait ends by the io_context going.
  struct Listed {
    std::multimap<std::string, Waiter*>& waiters;
    std::multimap<std::string, Waiter*>::iterator it;
    ~Listed() { waiters.erase(it); }
  } listed{waiters_, waiters_.emplace(network_id, &waiter)};
  boost::system::error_code ec;  // cancelled: a block arrived
  co_await waiter.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

size_t ClusterIpam::release_endpoints_of(const std::string& gone_node) {
  if (gone_node == store_.node_id() || alive(gone_node)) return 0;
  std::vector<std::string> endpoints;
  for (const auto& [key, e] : store_.endpoints()) {
    // A service's VIP outlives the node that reserved it: the service is
    // the cluster's, and `service rm` releases it from any node.
    if (!e.deleted && e.value.node == gone_node && e.value.owner != api::kOwnerServiceVip) endpoints.push_back(key);
  }
  for (const auto& key : endpoints) store_.erase_endpoint(key);
  if (!endpoints.empty()) {
    spdlog::warn("released the {} endpoint(s) of node {}, removed by the operator: their addresses are free",
                 endpoints.size(), gone_node);
    spaces_.clear();
  }
  return endpoints.size();
}

void ClusterIpam::endpoint_changed(const std::string& network_id, const std::string& endpoint_key) {
  auto space = spaces_.find(network_id);
  if (space == spaces_.end()) return;  // built from the tables when next used
  // The space follows each change as the rebuild would see it, so that a
  // change anywhere costs O(1), not a rebuild from every endpoint at the next
  // local ADD (O(the store), after every change of any node while a cluster
  // fills or churns). A live endpoint's address is marked used; a deleted
  // one's is freed once no live endpoint holds it (more than one holds it
  // after a clash: the read model counts them).
  auto it = store_.endpoints().find(endpoint_key);
  if (it != store_.endpoints().end() && it->second.value.network_id == network_id) {
    const Ipv4Address ip = it->second.value.ip;
    try {
      if (!it->second.deleted) {
        space->second.mark_used(ip);
      } else if (store_.index().holders(network_id, ip) == 0) {
        space->second.release(ip);
      }
      return;
    } catch (const Error&) {
      // Not an address of the subnet: the rebuild says what it says.
    }
  }
  spaces_.erase(space);
}

void ClusterIpam::network_changed(const std::string& network_id) { spaces_.erase(network_id); }

void ClusterIpam::remove_network(const std::string& network_id) {
  std::vector<std::string> blocks;
  for (const auto& [key, e] : store_.blocks()) {
    if (!e.deleted && e.value.network_id == network_id) blocks.push_back(key);
  }
  for (const auto& key : blocks) store_.erase_block(key);
  spaces_.erase(network_id);
}

void ClusterIpam::block_changed(const std::string& key) {
  auto it = store_.blocks().find(key);
  if (it == store_.blocks().end()) return;
  const std::string network_id = it->second.value.network_id;
  const NetworkRecord* n = store_.find_network(network_id);
  if (!n) return;
  const Ipv4Prefix block = it->second.value.block;
  const bool ours = owner_of(*n, block) == store_.node_id();
  auto space = spaces_.find(network_id);
  if (space != spaces_.end()) {
    if (ours && !space->second.owns_block(block)) {
      space->second.own_block(block);
      spdlog::info("network {}: received address block {}", n->name, block.str());
    } else if (!ours && space->second.owns_block(block)) {
      // Only the majority's reclaim takes a block from its owner, and only
      // once the owner's lease has run out (so it no longer allocates);
      // anything else is a bug: loud either way.
      spdlog::error("network {}: block {} now belongs to {} while this node owned it (reclaimed by the "
                    "cluster while this node was cut off past its lease?)",
                    n->name, block.str(), owner_of(*n, block));
      spaces_.erase(space);
    }
  }
  if (ours) {
    // Requests waiting for a block of this network try again now.
    auto [first, last] = waiters_.equal_range(network_id);
    for (auto w = first; w != last; ++w) w->second->timer.cancel();
  }
}

size_t ClusterIpam::reclaim_from(const std::string& dead_node) {
  if (dead_node == store_.node_id() || alive(dead_node)) return 0;
  // Its blocks become ours, so their free addresses serve the cluster
  // again. The addresses its endpoints hold stay held: a node "dead" this
  // long may be cut off with its containers running, and handing their
  // addresses out would make them live twice when it comes back. They are
  // freed by their owner (DEL, GC, the reaper) once it is back, or by
  // `swarmnetctl node rm` if it is gone for good.
  size_t taken = 0;
  std::vector<BlockRecord> blocks;
  for (const auto& [key, e] : store_.blocks()) {
    if (!e.deleted && e.value.owner == dead_node) blocks.push_back(e.value);
  }
  for (auto b : blocks) {
    b.owner = store_.node_id();
    store_.put(b);
    ++taken;
  }
  // Blocks it held implicitly, as creator of a network, become explicit ours.
  for (const auto& [id, e] : store_.networks()) {
    if (e.deleted || e.value.created_by != dead_node) continue;
    ipam::AddressSpace space(e.value.subnet, e.value.gateway, e.value.block_length);
    for (const Ipv4Prefix& block : space.all_blocks()) {
      auto it = store_.blocks().find(block_key(id, block));
      if (it != store_.blocks().end() && !it->second.deleted) continue;
      store_.put(BlockRecord{id, block, store_.node_id()});
      ++taken;
    }
  }
  spaces_.clear();  // rebuilt from the tables on next use
  size_t held = 0;
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && e.value.node == dead_node) ++held;
  }
  if (taken || held) {
    spdlog::warn("reclaimed {} address block(s) of node {}, dead past the reclaim time; the {} address(es) its "
                 "endpoints hold stay held until it comes back and releases them, or `swarmnetctl node rm`",
                 taken, dead_node, held);
  }
  return taken;
}

bool ClusterIpam::donate_block(const std::string& network_id, const std::string& requester,
                               const std::optional<Ipv4Prefix>& range) {
  const NetworkRecord* n = store_.find_network(network_id);
  if (!n || requester == store_.node_id()) return false;
  const NetworkRecord network = *n;
  ipam::AddressSpace& space = space_of(network);
  std::set<Ipv4Prefix> in_use;
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && e.value.network_id == network.id) in_use.insert(space.block_of(e.value.ip));
  }
  const auto cursor = space.cursor();
  const std::vector<Ipv4Prefix> blocks = range ? space.blocks_in(*range) : space.all_blocks();
  // From the top of the subnet down: the owner keeps filling from the bottom.
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    const Ipv4Prefix& block = *it;
    if (owner_of(network, block) != store_.node_id() || in_use.count(block)) continue;
    if (cursor && block.contains(*cursor)) continue;
    if (space.owns_block(block)) space.disown_block(block);
    store_.put(BlockRecord{network.id, block, requester});
    spdlog::info("network {}: gave address block {} to node {}", network.name, block.str(), requester);
    return true;
  }
  return false;
}

ipam::AddressSpace& ClusterIpam::space_of(const NetworkRecord& network) {
  auto it = spaces_.find(network.id);
  if (it != spaces_.end()) return it->second;
  // Rebuilt from the tables: the blocks this node owns, every live address.
  ++space_rebuilds_;
  ipam::AddressSpace space(network.subnet, network.gateway, network.block_length);
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && e.value.network_id == network.id) space.mark_used(e.value.ip);
  }
  for (const auto& [key, e] : store_.blocks()) {
    if (!e.deleted && e.value.network_id == network.id && e.value.owner == store_.node_id()) {
      space.own_block(e.value.block);
    }
  }
  if (auto c = store_.cursors().find(network.id); c != store_.cursors().end()) {
    space.set_cursor(c->second.value.last_allocated);
  }
  return spaces_.emplace(network.id, std::move(space)).first->second;
}

// How no address is handed out twice on this host: addresses come only from
// blocks this node owns (a BlockRecord naming it, journaled before the first
// address of the block is used); every allocation is journaled with fdatasync
// before the reply, and at start the AddressSpace is rebuilt from the journal.
// So a daemon killed at any moment restarts knowing every address it ever
// answered with. Across nodes, block ownership is what keeps nodes apart.
void ClusterIpam::claim_block(const NetworkRecord& network, ipam::AddressSpace& space,
                             const Ipv4Prefix& block) {
  auto it = store_.blocks().find(block_key(network.id, block));
  if (it == store_.blocks().end() || it->second.deleted) {
    store_.put(BlockRecord{network.id, block, store_.node_id()});
  }
  space.own_block(block);
  spdlog::info("network {}: this node now owns address block {}", network.name, block.str());
}

Ipv4Address ClusterIpam::allocate(const NetworkRecord& network, std::optional<Ipv4Address> static_ip,
                                   std::optional<Ipv4Prefix> range) {
  if (blocks_ && !blocks_->may_allocate()) {
    const std::string why =
        "this node has been cut off from most of the cluster for longer than its lease (half of "
        "--reclaim-after-s), also across restarts; it hands out no address until it sees a majority "
        "again (the others may have taken its address blocks back). If the rest of the cluster is gone "
        "for good: swarmnetctl cluster force-new-cluster";
    spdlog::warn("network {}: address refused: {}", network.name, why);
    throw Error(Errc::unavailable, why);
  }
  ipam::AddressSpace& space = space_of(network);
  const std::string& me = store_.node_id();

  if (static_ip) {
    const Ipv4Address ip = *static_ip;
    if (!network.subnet.contains(ip)) {
      throw Error(Errc::invalid_argument, "requested address " + ip.str() + " is outside network " +
                                              network.name + "'s subnet " + network.subnet.str());
    }
    if (space.is_reserved(ip)) {
      throw Error(Errc::invalid_argument, "requested address " + ip.str() +
                                              " is reserved (network, broadcast or gateway)");
    }
    if (space.in_use(ip)) {
      throw Error(Errc::conflict, "requested address " + ip.str() + " is already in use on network " +
                                      network.name);
    }
    Ipv4Prefix block = space.block_of(ip);
    if (owner_of(network, block) != me) {
      throw Error(Errc::conflict, "requested address " + ip.str() + " is in block " + block.str() +
                                      " owned by node " + owner_of(network, block) +
                                      "; request it on that node");
    }
    if (!space.owns_block(block)) claim_block(network, space, block);
    space.allocate(ip);
    return ip;
  }

  if (!range) range = network.ip_range;
  if (range) return allocate_in(network, space, *range);

  // Round robin over the whole subnet, as host-local does: go forward from
  // the cursor, into a block of ours ahead of it if those in use are full
  // there, and only then wrap around to reuse released addresses.
  using Wrap = ipam::AddressSpace::Wrap;
  const std::vector<Ipv4Prefix> blocks = space.all_blocks();
  auto claimable = [&](const Ipv4Prefix& block) {
    return !space.owns_block(block) && owner_of(network, block) == me;
  };
  if (auto ip = space.allocate_next(Wrap::no)) return *ip;
  const auto cursor = space.cursor();
  for (const Ipv4Prefix& block : blocks) {
    if ((cursor && block.network() <= *cursor) || !claimable(block)) continue;
    claim_block(network, space, block);
    if (auto ip = space.allocate_next(Wrap::no)) return *ip;
  }
  if (auto ip = space.allocate_next(Wrap::yes)) return *ip;
  for (const Ipv4Prefix& block : blocks) {
    if (!claimable(block)) continue;
    claim_block(network, space, block);
    if (auto ip = space.allocate_next(Wrap::yes)) return *ip;
  }
  out_of_blocks(network, blocks,
                "no free address in network " + network.name + " (subnet " + network.subnet.str() + ", " +
                    std::to_string(space.used()) + " of " + std::to_string(space.capacity()) + " in use)",
                std::nullopt);
}

// A range takes the same steps inside its blocks: this node's free
// addresses of the range, then a block of the range nobody was given yet
// (when this node created the network), then a block from its owner.
Ipv4Address ClusterIpam::allocate_in(const NetworkRecord& network, ipam::AddressSpace& space,
                                     const Ipv4Prefix& range) {
  if (!network.subnet.contains(range)) {
    throw Error(Errc::invalid_argument, "ip range " + range.str() + " is not inside network " + network.name +
                                            "'s subnet " + network.subnet.str());
  }
  if (auto ip = space.allocate_next_in(range)) return *ip;
  const std::vector<Ipv4Prefix> blocks = space.blocks_in(range);
  for (const Ipv4Prefix& block : blocks) {
    if (space.owns_block(block) || owner_of(network, block) != store_.node_id()) continue;
    claim_block(network, space, block);
    if (auto ip = space.allocate_next_in(range)) return *ip;
  }
  out_of_blocks(network, blocks, "no free address in ip range " + range.str() + " of network " + network.name,
                range);
}

void ClusterIpam::out_of_blocks(const NetworkRecord& network, const std::vector<Ipv4Prefix>& blocks,
                                const std::string& full, const std::optional<Ipv4Prefix>& range) {
  // Blocks of other live nodes may have room: they can give one away.
  bool unreachable_owner = false;
  for (const Ipv4Prefix& block : blocks) {
    const std::string& owner = owner_of(network, block);
    if (owner == store_.node_id()) continue;
    if (alive(owner)) {
      throw BlockNeeded(network.id, full + " on this node; asked the other nodes for a block", range);
    }
    unreachable_owner = true;
  }
  if (unreachable_owner) {
    // Not `full`: the space may be nearly empty, only out of reach.
    throw Error(Errc::unavailable,
                "no free address" + (range ? " of ip range " + range->str() : std::string()) +
                    " in this node's blocks of network " + network.name +
                    ", and the nodes that own its other blocks are unreachable (a partition, or dead nodes not "
                    "yet reclaimed); try again when they are back");
  }
  throw Error(Errc::exhausted, full);
}

std::vector<std::string> ClusterIpam::check_pools_against_routes(const ipam::AddressPools& pools,
                                                             const std::vector<HostRoute>& routes) {
  auto describe = [](const HostRoute& r) {
    return r.destination.str() + (r.device.empty() ? "" : " (dev " + r.device + ")");
  };
  std::vector<std::string> warnings;
  for (const Ipv4Prefix& pool : pools.pools) {
    std::vector<Ipv4Prefix> routed;
    std::string overlapping;
    for (const HostRoute& r : routes) {
      if (!r.destination.overlaps(pool)) continue;
      routed.push_back(r.destination);
      overlapping += (overlapping.empty() ? "" : ", ") + describe(r);
    }
    if (routed.empty()) continue;
    if (!ipam::next_free_subnet(pool, pools.mask_length, routed)) {
      throw Error(Errc::invalid_argument, "default address pool " + pool.str() + " is refused: every /" +
                                              std::to_string(pools.mask_length) +
                                              " subnet of it overlaps a route of this host: " + overlapping);
    }
    warnings.push_back("default address pool " + pool.str() + " overlaps a route of this host: " + overlapping +
                       "; networks created without --subnet skip the subnets that overlap it");
  }
  return warnings;
}

}  // namespace swarmnet::daemon
