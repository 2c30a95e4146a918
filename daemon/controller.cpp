#include "daemon/controller.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "common/error.hpp"
#include "common/random.hpp"
#include "common/version.hpp"
#include "ipam/subnet_pool.hpp"

namespace swarmnet::daemon {

namespace {

// VXLAN overhead: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
constexpr unsigned kVxlanOverhead = 50;
// ESP in transport mode with AES-GCM (rfc4106): header 8 + IV 8 + padding
// to 4 bytes (at most 3) + pad length and next header 2 + ICV 16 = 37,
// rounded up.
constexpr unsigned kEspOverhead = 40;
constexpr unsigned kMinMtu = 576;
// Swarm's overlay VNIs start at 4096; we do the same so they are recognisable.
constexpr uint32_t kFirstVni = 4096;
constexpr uint32_t kMaxVni = (1u << 24) - 1;

// CNI: "alphanumeric, then alphanumerics, underscore, dot or hyphen".
void check_container_id(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 256 && std::isalnum(static_cast<unsigned char>(id[0]));
  for (char c : id) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  }
  if (!ok) {
    throw Error(Errc::invalid_argument,
                "invalid container id \"" + id +
                    "\": must start with a letter or digit and hold only letters, digits, _ . -");
  }
}

void check_ifname(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 15 && name != "." && name != "..";
  for (char c : name) ok = ok && c != '/' && c != ':' && !std::isspace(static_cast<unsigned char>(c));
  if (!ok) throw Error(Errc::invalid_argument, "invalid interface name \"" + name + "\"");
}

// An endpoint's name, aliases and labels travel in every copy of its record
// (gossip, journal, DNS): bounded, so that no request makes a record of
// megabytes. A name or alias is a DNS name (253 bytes at most).
void check_names(const std::optional<std::string>& name,
                 const std::optional<std::vector<std::string>>& aliases,
                 const std::map<std::string, std::string>& labels) {
  constexpr size_t kMaxName = 253, kMaxAliases = 32, kMaxLabels = 64, kMaxLabelKey = 128,
                   kMaxLabelValue = 1024;
  auto too_long = [](const std::string& what, const std::string& s, size_t max) {
    return Error(Errc::invalid_argument, what + " \"" + s.substr(0, 32) + "...\" is " +
                                             std::to_string(s.size()) + " bytes long, at most " +
                                             std::to_string(max) + " are allowed");
  };
  if (name && name->size() > kMaxName) throw too_long("name", *name, kMaxName);
  if (aliases) {
    if (aliases->size() > kMaxAliases)
      throw Error(Errc::invalid_argument, std::to_string(aliases->size()) + " aliases, at most " +
                                              std::to_string(kMaxAliases) + " are allowed");
    for (const auto& a : *aliases)
      if (a.size() > kMaxName) throw too_long("alias", a, kMaxName);
  }
  if (labels.size() > kMaxLabels)
    throw Error(Errc::invalid_argument, std::to_string(labels.size()) + " labels, at most " +
                                            std::to_string(kMaxLabels) + " are allowed");
  for (const auto& [k, v] : labels) {
    if (k.size() > kMaxLabelKey) throw too_long("label key", k, kMaxLabelKey);
    if (v.size() > kMaxLabelValue) throw too_long("value of label " + k.substr(0, 32) + ":", v, kMaxLabelValue);
  }
}

// Docker derives the MAC from the IP (02:42 + the 4 address bytes): stable
// across restarts and unique within a network without any bookkeeping.
std::string mac_for(Ipv4Address ip) {
  char buf[18];
  uint32_t v = ip.value();
  std::snprintf(buf, sizeof(buf), "02:42:%02x:%02x:%02x:%02x", v >> 24, (v >> 16) & 0xff,
                (v >> 8) & 0xff, v & 0xff);
  return buf;
}

}  // namespace

Controller::Controller(Store& store, Dataplane& dataplane, std::string node_name)
    : store_(store), dataplane_(dataplane), node_name_(std::move(node_name)) {
  listener_id_ = store_.add_change_listener(
      [this](const std::string& table, const std::string& key, const Store::Line* local) {
        // Our own writes are handled where they are made; this is for what
        // other nodes changed.
        if (!local) on_store_change(table, key);
      });
}

Controller::~Controller() { store_.remove_change_listener(listener_id_); }

void Controller::set_membership(Membership* membership, std::optional<Ipv4Address> local_vtep) {
  membership_ = membership;
  local_vtep_ = local_vtep;
  on_membership_change();
}

void Controller::forget_membership() {
  membership_ = nullptr;
  local_vtep_.reset();
}

void Controller::on_membership_change() {
  // Without a membership (also while the daemon shuts down) the filter
  // keeps its members, as the overlays keep their entries, so traffic goes
  // on across a restart; leaving a cluster empties it (Cluster::stop).
  if (membership_) sync_underlay_peers();
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted && local_attached_endpoints(id) > 0) sync_network(id);
  }
  for (const auto& listener : membership_listeners_) listener();
}

void Controller::sync_underlay_peers() {
  std::vector<Ipv4Address> peers;
  if (membership_) peers = membership_->underlay_peers();
  if (underlay_peers_ == peers) return;
  dataplane_.set_underlay_peers(peers);
  underlay_peers_ = std::move(peers);
}

bool Controller::alive(const std::string& node_id) const {
  if (node_id == store_.node_id()) return true;
  return membership_ && membership_->is_alive(node_id);
}

const std::string& Controller::owner_of(const NetworkRecord& network, const Ipv4Prefix& block) const {
  auto it = store_.blocks().find(block_key(network.id, block));
  if (it != store_.blocks().end() && !it->second.deleted) return it->second.value.owner;
  // A block nobody was given belongs to the node that created the network:
  // ownership then only ever moves by its owner's own write (donate_block).
  return network.created_by;
}

void Controller::sync_network(const std::string& network_id) {
  const NetworkRecord* n = store_.find_network(network_id);
  if (!n || local_attached_endpoints(network_id) == 0) return;
  const NetworkRecord network = *n;
  const std::string bridge = bridge_name(network.id);
  dataplane_.ensure_network(network, bridge);
  if (!membership_ || !local_vtep_) return;
  dataplane_.ensure_overlay(network, bridge, *local_vtep_);
  std::vector<RemoteEndpoint> remote;
  for (const auto& [key, e] : store_.endpoints()) {
    const EndpointRecord& ep = e.value;
    if (e.deleted || ep.network_id != network.id || ep.node == store_.node_id() || !ep.attach) {
      continue;
    }
    // An endpoint of a dead node leaves the overlay at once; it comes back
    // when its node does (the tables keep it meanwhile).
    if (!alive(ep.node)) continue;
    auto vtep = membership_->address_of(ep.node);
    if (!vtep) continue;
    remote.push_back(RemoteEndpoint{ep.ip, ep.mac, *vtep});
  }
  std::sort(remote.begin(), remote.end());
  dataplane_.sync_remote_endpoints(network, remote);
}

// Two nodes that create networks at the same moment, before either hears of
// the other, can pick the same name or overlapping subnets (a VNI clash is
// made unlikely by drawing VNIs at random). Nothing can undo that without a
// coordinator; say it loudly so the operator removes one.
void Controller::warn_conflicts(const NetworkRecord& n) const {
  for (const auto& [id, e] : store_.networks()) {
    if (e.deleted || id == n.id) continue;
    if (e.value.name == n.name || e.value.subnet.overlaps(n.subnet) || e.value.vni == n.vni) {
      spdlog::error("networks {} ({} {} vni {}) and {} ({} {} vni {}) were created concurrently on two "
                    "nodes and clash; remove one of them",
                    n.name, n.id.substr(0, 12), n.subnet.str(), n.vni, e.value.name,
                    id.substr(0, 12), e.value.subnet.str(), e.value.vni);
    }
  }
}

void Controller::sync_firewall() {
  // Oldest first, so that of two clashing networks (see warn_conflicts) the
  // one created first keeps its rules; the other gets none until removed.
  std::vector<std::pair<Version, NetworkRecord>> all;
  // Every encrypted network, clashing or not: its VXLAN is never in clear.
  std::set<uint32_t> encrypted;
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted && e.value.encrypted) encrypted.insert(e.value.vni);
  }
  dataplane_.set_encrypted_vnis(encrypted);
  for (const auto& [id, e] : store_.networks()) {
    // The ingress network holds no container: nothing to isolate, and its
    // traffic between sandboxes is the routing mesh's (ingress_sandbox.hpp).
    if (!e.deleted && !e.value.ingress) all.emplace_back(e.version, e.value);
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<NetworkRecord> networks;
  for (const auto& [version, n] : all) {
    bool clash = false;
    for (const auto& kept : networks) clash = clash || kept.subnet.overlaps(n.subnet);
    if (!clash) networks.push_back(n);
  }
  dataplane_.sync_firewall(networks);
}

void Controller::on_store_change(const std::string& table, const std::string& key) {
  std::string network_id;
  if (table == "endpoints") {
    auto it = store_.endpoints().find(key);
    if (it == store_.endpoints().end()) return;
    network_id = it->second.value.network_id;
  } else if (table == "blocks") {
    auto it = store_.blocks().find(key);
    if (it == store_.blocks().end()) return;
    network_id = it->second.value.network_id;
    const NetworkRecord* n = store_.find_network(network_id);
    auto space = spaces_.find(network_id);
    if (n && space != spaces_.end()) {
      const Ipv4Prefix block = it->second.value.block;
      const bool ours = owner_of(*n, block) == store_.node_id();
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
    return;
  } else if (table == "networks") {
    auto it = store_.networks().find(key);
    if (it == store_.networks().end()) return;
    network_id = key;
    if (!it->second.deleted) warn_conflicts(it->second.value);
    sync_firewall();
    if (it->second.deleted) {
      spaces_.erase(key);
      if (local_attached_endpoints(key) == 0) dataplane_.remove_network(bridge_name(key));
      return;
    }
  } else {
    return;
  }
  // Addresses used elsewhere changed: rebuild this network's address space
  // lazily from the tables, and reprogram the overlay.
  spaces_.erase(network_id);
  sync_network(network_id);
}

size_t Controller::reclaim_from(const std::string& dead_node) {
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
  on_membership_change();
  return taken;
}

size_t Controller::release_node(const std::string& gone_node) {
  if (gone_node == store_.node_id() || alive(gone_node)) return 0;
  reclaim_from(gone_node);
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
    on_membership_change();
  }
  return endpoints.size();
}

bool Controller::donate_block(const std::string& network_id, const std::string& requester) {
  const NetworkRecord* n = store_.find_network(network_id);
  if (!n || requester == store_.node_id()) return false;
  const NetworkRecord network = *n;
  ipam::AddressSpace& space = space_of(network);
  std::set<Ipv4Prefix> in_use;
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && e.value.network_id == network.id) in_use.insert(space.block_of(e.value.ip));
  }
  const auto cursor = space.cursor();
  const std::vector<Ipv4Prefix> blocks = space.all_blocks();
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

std::string Controller::bridge_name(const std::string& network_id) {
  return daemon::bridge_name(network_id);
}

void Controller::reconcile() {
  sync_firewall();
  for (const auto& [id, e] : store_.networks()) {
    const std::string bridge = bridge_name(id);
    if (!e.deleted && local_attached_endpoints(id) > 0) {
      sync_network(id);
    } else {
      dataplane_.remove_network(bridge);
    }
  }
  // Host ends of endpoints deleted while we were down (DEL arrived while the
  // daemon was restarting and failed, then GC or a later DEL cleaned the
  // record) are removed with their tombstones' names.
  for (const auto& [key, e] : store_.endpoints()) {
    if (e.deleted && e.value.node == store_.node_id() && !e.value.host_ifname.empty()) {
      dataplane_.remove_host_link(e.value.host_ifname);
    }
  }
}

const NetworkRecord& Controller::resolve(const std::string& name_or_id) const {
  if (const auto* n = store_.find_network_by_name(name_or_id)) return *n;
  if (const auto* n = store_.find_network(name_or_id)) return *n;
  throw Error(Errc::not_found, "network \"" + name_or_id + "\" not found");
}

ipam::AddressSpace& Controller::space_of(const NetworkRecord& network) {
  auto it = spaces_.find(network.id);
  if (it != spaces_.end()) return it->second;
  // Rebuilt from the tables: the blocks this node owns, every live address.
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
void Controller::claim_block(const NetworkRecord& network, ipam::AddressSpace& space,
                             const Ipv4Prefix& block) {
  auto it = store_.blocks().find(block_key(network.id, block));
  if (it == store_.blocks().end() || it->second.deleted) {
    store_.put(BlockRecord{network.id, block, store_.node_id()});
  }
  space.own_block(block);
  spdlog::info("network {}: this node now owns address block {}", network.name, block.str());
}

Ipv4Address Controller::allocate(const NetworkRecord& network, const api::EndpointCreate& request) {
  if (membership_ && !membership_->may_allocate()) {
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

  if (!request.static_ips.empty()) {
    if (request.static_ips.size() > 1) {
      throw Error(Errc::invalid_argument, "only one static IPv4 address per endpoint is supported");
    }
    Ipv4Address ip = request.static_ips.front();
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
  const std::string full = "no free address in network " + network.name + " (subnet " +
                           network.subnet.str() + ", " + std::to_string(space.used()) + " of " +
                           std::to_string(space.capacity()) + " in use)";
  // Blocks of other live nodes may have room: they can give one away.
  bool unreachable_owner = false;
  for (const Ipv4Prefix& block : blocks) {
    const std::string& owner = owner_of(network, block);
    if (owner == me) continue;
    if (alive(owner)) {
      throw BlockNeeded(network.id, full + " on this node; asked the other nodes for a block");
    }
    unreachable_owner = true;
  }
  if (unreachable_owner) {
    throw Error(Errc::unavailable,
                "no free address in this node's blocks of network " + network.name +
                    ", and the nodes that own its other blocks are unreachable (a partition, or "
                    "dead nodes not yet reclaimed); try again when they are back");
  }
  throw Error(Errc::exhausted, full);
}

std::optional<std::string> Controller::encryption_missing() const {
  if (!encryption_) return std::string("this swarmnetd runs without encryption support");
  return encryption_->missing();
}

api::Network Controller::create_network(const api::NetworkCreate& req) {
  if (!api::valid_network_name(req.name)) {
    throw Error(Errc::invalid_argument,
                "invalid network name \"" + req.name +
                    "\": 1-63 letters, digits, _ . -, starting with a letter or digit");
  }
  if (store_.find_network_by_name(req.name)) {
    throw Error(Errc::conflict, "network \"" + req.name + "\" already exists");
  }
  if (req.encrypted && req.ingress) throw Error(Errc::invalid_argument, "the routing mesh's network is never encrypted");
  if (req.encrypted && encryption_missing()) {
    throw Error(Errc::unavailable, "--encrypted needs IPsec ESP with AES-GCM in this host's kernel, which it lacks: " +
                                       *encryption_missing());
  }

  std::vector<Ipv4Prefix> taken;
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted) taken.push_back(e.value.subnet);
  }

  NetworkRecord n;
  n.name = req.name;
  if (req.subnet) {
    if (!req.subnet->is_network()) {
      throw Error(Errc::invalid_argument,
                  "invalid subnet " + req.subnet->str() + ": host bits set (did you mean " +
                      Ipv4Prefix(req.subnet->network(), req.subnet->length()).str() + "?)");
    }
    if (auto why = api::subnet_refusal(*req.subnet)) throw Error(Errc::invalid_argument, *why);
    if (req.subnet->length() > 30) {
      throw Error(Errc::invalid_argument, "subnet " + req.subnet->str() +
                                              " is too small: a network needs at least a /30");
    }
    for (const auto& [id, e] : store_.networks()) {
      if (!e.deleted && e.value.subnet.overlaps(*req.subnet)) {
        throw Error(Errc::conflict, "subnet " + req.subnet->str() + " overlaps network \"" +
                                        e.value.name + "\" (" + e.value.subnet.str() + ")");
      }
    }
    n.subnet = *req.subnet;
  } else {
    // Clear of this host's routes too: a network over a route would cut the
    // host off from whatever that route reaches.
    for (const HostRoute& r : dataplane_.host_routes()) taken.push_back(r.destination);
    auto free = ipam::next_free_subnet(pools_, taken);
    if (!free) {
      std::string pools;
      for (const auto& p : pools_.pools) pools += (pools.empty() ? "" : ", ") + p.str();
      throw Error(Errc::exhausted, "the default address pools (" + pools + ") have no free /" +
                                       std::to_string(pools_.mask_length) +
                                       " left (networks and this host's routes hold the rest); give --subnet");
    }
    n.subnet = *free;
  }

  n.gateway = req.gateway.value_or(Ipv4Address(n.subnet.network().value() + 1));
  if (!n.subnet.contains(n.gateway) || n.gateway == n.subnet.network() ||
      n.gateway == n.subnet.broadcast()) {
    throw Error(Errc::invalid_argument, "gateway " + n.gateway.str() +
                                            " is not a usable address of subnet " + n.subnet.str());
  }

  if (req.mtu) {
    if (*req.mtu < kMinMtu || *req.mtu > 65535) {
      throw Error(Errc::invalid_argument, "mtu " + std::to_string(*req.mtu) + " out of range " +
                                              std::to_string(kMinMtu) + "-65535");
    }
    n.mtu = *req.mtu;
  } else {
    const unsigned overhead = kVxlanOverhead + (req.encrypted ? kEspOverhead : 0);
    n.mtu = std::max(kMinMtu, dataplane_.underlay_mtu() - overhead);
  }

  // The VNI must be unique in the whole cluster, and networks may be created
  // on two nodes at the same moment, before either hears of the other. So
  // it is drawn from the network's random id (24 bits, 16.7 million values)
  // rather than "next free", which two nodes would pick alike; a value
  // already known here is skipped.
  n.id = random_hex(16);
  std::set<uint32_t> vnis;
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted) vnis.insert(e.value.vni);
  }
  if (vnis.size() >= kMaxVni - kFirstVni) throw Error(Errc::exhausted, "no VXLAN network identifier left");
  n.vni = kFirstVni + static_cast<uint32_t>(std::stoull(n.id.substr(0, 8), nullptr, 16) %
                                            (kMaxVni - kFirstVni + 1));
  while (vnis.count(n.vni)) n.vni = n.vni == kMaxVni ? kFirstVni : n.vni + 1;

  n.internal = req.internal;
  n.encrypted = req.encrypted;
  n.ingress = req.ingress;
  n.block_length = ipam::default_block_length(n.subnet);
  n.created_by = store_.node_id();

  ipam::AddressSpace check(n.subnet, n.gateway, n.block_length);  // validates the layout
  store_.put(n);
  sync_firewall();
  spdlog::info("network {} created: id {} subnet {} gateway {} mtu {} vni {}{}{}", n.name, n.id,
               n.subnet.str(), n.gateway.str(), n.mtu, n.vni, n.internal ? " internal" : "",
               n.encrypted ? " encrypted" : "");
  return to_api(n);
}

std::vector<std::string> Controller::check_pools_against_routes(const ipam::AddressPools& pools) {
  const std::vector<HostRoute> routes = dataplane_.host_routes();
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

std::vector<api::Network> Controller::list_networks() const {
  std::vector<api::Network> out;
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted) out.push_back(to_api(e.value));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

api::Network Controller::inspect_network(const std::string& name_or_id) const {
  return to_api(resolve(name_or_id));
}

void Controller::remove_network(const std::string& name_or_id) {
  const NetworkRecord network = resolve(name_or_id);
  size_t count = 0;
  std::string example;
  std::vector<std::string> orphans;  // endpoints of nodes that are gone
  for (const auto& [key, e] : store_.endpoints()) {
    if (e.deleted || e.value.network_id != network.id) continue;
    if (!alive(e.value.node)) {
      orphans.push_back(key);
      continue;
    }
    if (count++ == 0) example = e.value.container_id;
  }
  if (count > 0) {
    throw Error(Errc::conflict, "network " + network.name + " has " + std::to_string(count) +
                                    " endpoint(s) (e.g. container " + example +
                                    "); remove them first");
  }
  // A node that died or left cannot delete its endpoints any more: they go
  // with the network.
  for (const auto& key : orphans) store_.erase_endpoint(key);
  dataplane_.remove_network(bridge_name(network.id));
  std::vector<std::string> blocks;
  for (const auto& [key, e] : store_.blocks()) {
    if (!e.deleted && e.value.network_id == network.id) blocks.push_back(key);
  }
  for (const auto& key : blocks) store_.erase_block(key);
  store_.erase_network(network.id);
  spaces_.erase(network.id);
  sync_firewall();
  spdlog::info("network {} removed{}", network.name,
               orphans.empty() ? "" : " with " + std::to_string(orphans.size()) +
                                          " endpoint(s) of nodes no longer in the cluster");
}

std::pair<api::Endpoint, bool> Controller::create_endpoint(const std::string& network_name,
                                                           const api::EndpointCreate& req) {
  const NetworkRecord network = resolve(network_name);
  check_container_id(req.container_id);
  check_ifname(req.ifname);
  check_names(req.name, req.aliases, req.labels);

  if (network.ingress && req.container_id != kSandboxContainerId && !(req.labels.count("swarmnet.vip") && !req.attach)) {
    throw Error(Errc::invalid_argument, "network \"" + network.name +
                                            "\" is the routing mesh's: no container joins it (publish a "
                                            "service's port in ingress mode instead)");
  }
  if (network.encrypted && req.attach && encryption_missing()) {
    throw Error(Errc::unavailable, "network \"" + network.name + "\" is encrypted and this node cannot carry it: " +
                                       *encryption_missing());
  }
  const std::string key = endpoint_key(network.id, store_.node_id(), req.container_id, req.ifname);
  if (const EndpointRecord* existing = store_.find_endpoint(key)) {
    // ADD repeated (a runtime retry): same answer, kernel side repaired.
    if (existing->attach) dataplane_.ensure_network(network, bridge_name(network.id));
    return {to_api(network, *existing), false};
  }

  EndpointRecord e;
  e.ip = allocate(network, req);
  // Until the journal holds the endpoint, the address must go back on failure.
  struct Release {
    ipam::AddressSpace& space;
    Ipv4Address ip;
    bool armed = true;
    ~Release() {
      if (armed) space.release(ip);
    }
  } release{space_of(network), e.ip};

  e.id = random_hex(16);
  e.network_id = network.id;
  e.node = store_.node_id();
  e.container_id = req.container_id;
  e.ifname = req.ifname;
  e.netns = req.netns;
  e.mac = mac_for(e.ip);
  e.attach = req.attach;
  e.host_ifname = !req.attach                              ? ""
                  : req.container_id == kSandboxContainerId ? kSandboxHostLink
                                                            : "swv" + e.id.substr(0, 12);
  e.name = req.name;
  e.aliases = req.aliases;
  e.service = req.service;
  e.labels = req.labels;
  e.owner = req.owner;
  e.cni_config = req.cni_config;
  if (e.attach) {
    for (const auto& m : req.port_mappings) {
      e.host_ports.push_back(HostPortRecord{m.protocol, m.host_port, m.container_port, "runtime"});
    }
    if (endpoint_completer_) endpoint_completer_(e);  // throws when a host port is taken
  }
  // The bridge before the record: the record's listeners act on it at once
  // (the balancer puts the network's VIP addresses on it when this is the
  // network's first container here, and nothing would tell it again).
  if (e.attach) {
    try {
      dataplane_.ensure_network(network, bridge_name(network.id));
    } catch (...) {
      if (local_attached_endpoints(network.id) == 0) dataplane_.remove_network(bridge_name(network.id));
      throw;
    }
  }
  store_.put(e);
  release.armed = false;

  if (e.attach) {
    try {
      // A local ADD changes no remote entry: the overlay (a VXLAN lookup and
      // two netlink dumps) is programmed only when this endpoint brings the
      // network to this host; otherwise the bridge is just checked.
      if (local_attached_endpoints(network.id) == 1) {
        sync_network(network.id);
      } else {
        dataplane_.ensure_network(network, bridge_name(network.id));
      }
    } catch (...) {
      delete_endpoint_record(network, e);
      throw;
    }
  }
  spdlog::info("endpoint {} on {}: container {} {} address {}{}", e.id.substr(0, 12), network.name,
               e.container_id, e.ifname, e.ip.str(), e.attach ? "" : " (address only)");
  return {to_api(network, e), true};
}

std::vector<api::Endpoint> Controller::list_endpoints(const std::string& network_name) const {
  const NetworkRecord& network = resolve(network_name);
  std::vector<api::Endpoint> out;
  for (const auto& [key, e] : store_.endpoints()) {
    // A node's own address is no container's (the balancer's, see
    // load_balancing.hpp): neither listed nor counted (to_api).
    if (!e.deleted && e.value.network_id == network.id && e.value.owner != api::kOwnerNode) {
      out.push_back(to_api(network, e.value));
    }
  }
  return out;
}

api::Endpoint Controller::get_endpoint(const std::string& network_name,
                                       const std::string& container_id,
                                       const std::string& ifname) const {
  const NetworkRecord& network = resolve(network_name);
  const auto* e = store_.find_endpoint(endpoint_key(network.id, store_.node_id(), container_id, ifname));
  if (!e) {
    throw Error(Errc::not_found, "no endpoint for container " + container_id + " interface " +
                                     ifname + " on network " + network.name);
  }
  return to_api(network, *e);
}

void Controller::delete_endpoint_record(const NetworkRecord& network, const EndpointRecord& e) {
  const EndpointRecord copy = e;  // e may live in the table we are about to change
  // The record goes first: its listeners (balancers, DNS) drop the task
  // while its interface still exists, then the interface goes.
  store_.erase_endpoint(endpoint_key(copy.network_id, copy.node, copy.container_id, copy.ifname));
  if (copy.attach && !copy.host_ifname.empty()) dataplane_.remove_host_link(copy.host_ifname);
  space_of(network).release(copy.ip);
  if (copy.attach && local_attached_endpoints(network.id) == 0) {
    dataplane_.remove_network(bridge_name(network.id));
  }
}

void Controller::release_endpoint(const std::string& key) {
  const EndpointRecord* e = store_.find_endpoint(key);
  if (!e) return;
  const NetworkRecord* n = store_.find_network(e->network_id);
  if (e->node == store_.node_id() && n) {
    const NetworkRecord network = *n;
    delete_endpoint_record(network, *e);
    return;
  }
  // Another node's: only the owner of the address's block may hand the
  // address out again, and it learns of this deletion by gossip; until its
  // next start it keeps the address as used (a leak, never a duplicate).
  store_.erase_endpoint(key);
}

api::Endpoint Controller::update_endpoint(const std::string& network_name,
                                         const std::string& container_id,
                                         const std::string& ifname,
                                         const api::EndpointUpdate& update) {
  const NetworkRecord network = resolve(network_name);
  const auto* e = store_.find_endpoint(endpoint_key(network.id, store_.node_id(), container_id, ifname));
  if (!e) {
    throw Error(Errc::not_found, "no endpoint for container " + container_id + " interface " +
                                     ifname + " on network " + network.name);
  }
  check_names(update.name, update.aliases, {});
  EndpointRecord changed = *e;
  if (update.name) changed.name = *update.name;
  if (update.aliases) changed.aliases = *update.aliases;
  if (update.service && *update.service != changed.service) {
    changed.service = *update.service;
    changed.healthy = true;  // checked anew for the new service
    if (changed.attach && endpoint_completer_) endpoint_completer_(changed);  // its host ports
  }
  store_.put(changed);
  return to_api(network, changed);
}

bool Controller::delete_endpoint(const std::string& network_name, const std::string& container_id,
                                 const std::string& ifname) {
  const NetworkRecord* network = store_.find_network_by_name(network_name);
  if (!network) network = store_.find_network(network_name);
  if (!network) return false;  // the network went first; nothing of ours is left
  const NetworkRecord n = *network;
  const auto* e = store_.find_endpoint(endpoint_key(n.id, store_.node_id(), container_id, ifname));
  if (!e) return false;
  const EndpointRecord copy = *e;
  delete_endpoint_record(n, copy);
  spdlog::info("endpoint {} on {}: container {} {} released {}", copy.id.substr(0, 12), n.name,
               copy.container_id, copy.ifname, copy.ip.str());
  return true;
}

// CNI GC speaks for the CNI plugin only, and for one network configuration:
// the runtime's valid list says nothing of a service's VIP, the ingress
// sandbox, a Docker container, or a container of another configuration, so
// those are never candidates. Records without an owner (written before
// owners were recorded) are not provably the plugin's: kept.
api::GcResult Controller::gc(const std::string& network_name, const api::GcRequest& req) {
  const NetworkRecord network = resolve(network_name);
  std::vector<api::AttachmentKey> valid = req.valid;
  std::sort(valid.begin(), valid.end());
  std::vector<EndpointRecord> stale;
  size_t unowned = 0;
  for (const auto& [key, e] : store_.endpoints()) {
    if (e.deleted || e.value.network_id != network.id || e.value.node != store_.node_id()) continue;
    if (e.value.owner.empty()) ++unowned;
    if (e.value.owner != api::kOwnerCni || e.value.cni_config != req.cni_config) continue;
    api::AttachmentKey k{e.value.container_id, e.value.ifname};
    if (!std::binary_search(valid.begin(), valid.end(), k)) stale.push_back(e.value);
  }
  api::GcResult result;
  for (const auto& e : stale) {
    delete_endpoint_record(network, e);
    spdlog::info("gc on {} (CNI configuration {}): released {} of container {} {}", network.name,
                 req.cni_config, e.ip.str(), e.container_id, e.ifname);
    result.released.push_back({e.container_id, e.ifname});
  }
  if (unowned > 0) {
    spdlog::info("gc on {}: kept {} endpoint(s) recorded before endpoints had owners (DEL releases them)",
                 network.name, unowned);
  }
  return result;
}

api::Status Controller::status() const {
  api::Status s;
  s.node_id = store_.node_id();
  s.node_name = node_name_;
  s.version = kVersion;
  for (const auto& [id, e] : store_.networks()) s.networks += e.deleted ? 0 : 1;
  for (const auto& [key, e] : store_.endpoints()) s.endpoints += e.deleted ? 0 : 1;
  return s;
}

size_t Controller::local_attached_endpoints(const std::string& network_id) const {
  size_t count = 0;
  for (const auto& [key, e] : store_.endpoints()) {
    // The node's own address (owner node) follows the network here; it
    // does not keep it here.
    if (!e.deleted && e.value.network_id == network_id && e.value.node == store_.node_id() &&
        e.value.attach && e.value.owner != api::kOwnerNode) {
      ++count;
    }
  }
  return count;
}

api::Network Controller::to_api(const NetworkRecord& n) const {
  api::Network a;
  a.id = n.id;
  a.name = n.name;
  a.subnet = n.subnet;
  a.gateway = n.gateway;
  a.mtu = n.mtu;
  a.vni = n.vni;
  a.internal = n.internal;
  a.encrypted = n.encrypted;
  if (n.encrypted) {
    a.key_generation = encryption_ ? encryption_->generation() : 0;
    a.encryption_missing = encryption_missing().value_or("");
  }
  a.block_length = n.block_length;
  a.created_by = n.created_by;
  a.endpoints = 0;
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && e.value.network_id == n.id && e.value.node == store_.node_id() &&
        e.value.owner != api::kOwnerNode) {
      ++a.endpoints;
    }
  }
  a.bridge = local_attached_endpoints(n.id) > 0 ? bridge_name(n.id) : "";
  return a;
}

api::Endpoint Controller::to_api(const NetworkRecord& n, const EndpointRecord& e) const {
  api::Endpoint a;
  a.id = e.id;
  a.network_id = n.id;
  a.network = n.name;
  a.container_id = e.container_id;
  a.ifname = e.ifname;
  a.netns = e.netns;
  a.node = e.node;
  a.address = Ipv4Prefix(e.ip, n.subnet.length());
  a.gateway = n.gateway;
  a.mac = e.mac;
  a.mtu = n.mtu;
  a.bridge = e.attach ? bridge_name(n.id) : "";
  a.host_ifname = e.host_ifname;
  a.attach = e.attach;
  a.name = e.name;
  a.aliases = e.aliases;
  a.service = e.service;
  a.labels = e.labels;
  a.owner = e.owner;
  a.cni_config = e.cni_config;
  if (dns_enabled_) {
    a.dns_servers = {n.gateway};
    a.dns_search = {n.name};
  }
  return a;
}

}  // namespace swarmnet::daemon
