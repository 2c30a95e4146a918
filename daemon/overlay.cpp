#include "daemon/overlay.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "common/error.hpp"
#include "daemon/encryption.hpp"

namespace swarmnet::daemon {

namespace {

// VXLAN overhead: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
constexpr unsigned kVxlanOverhead = 50;
// ESP in transport mode with AES-GCM (rfc4106): header 8 + IV 8 + padding
// to 4 bytes (at most 3) + pad length and next header 2 + ICV 16 = 37,
// rounded up.
constexpr unsigned kEspOverhead = 40;
// Swarm's overlay VNIs start at 4096; we do the same so they are recognisable.
constexpr uint32_t kFirstVni = 4096;
constexpr uint32_t kMaxVni = (1u << 24) - 1;

}  // namespace

Overlay::Overlay(Store& store, Dataplane& dataplane) : store_(store), dataplane_(dataplane) {}

void Overlay::set_membership(const Membership* membership, std::optional<Ipv4Address> local_vtep) {
  membership_ = membership;
  local_vtep_ = local_vtep;
}

std::optional<std::string> Overlay::encryption_missing() const {
  if (!encryption_) return std::string("this swarmnetd runs without encryption support");
  return encryption_->missing();
}

uint32_t Overlay::key_generation() const { return encryption_ ? encryption_->generation() : 0; }

std::string Overlay::bridge_name(const std::string& network_id) { return daemon::bridge_name(network_id); }

bool Overlay::alive(const std::string& node_id) const {
  if (node_id == store_.node_id()) return true;
  return membership_ && membership_->is_alive(node_id);
}

void Overlay::membership_changed() {
  // Without a membership (also while the daemon shuts down) the filter
  // keeps its members, as the overlays keep their entries, so traffic goes
  // on across a restart; leaving a cluster empties it (Cluster::stop).
  if (membership_) sync_underlay_peers();
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted && local_attached_endpoints(id) > 0) sync_network(id);
  }
}

void Overlay::sync_underlay_peers() {
  std::vector<Ipv4Address> peers;
  if (membership_) peers = membership_->underlay_peers();
  if (underlay_peers_ == peers) return;
  dataplane_.set_underlay_peers(peers);
  underlay_peers_ = std::move(peers);
}

std::optional<RemoteEndpoint> Overlay::remote_endpoint(const EndpointRecord& ep) const {
  if (ep.node == store_.node_id() || !ep.attach) return std::nullopt;
  // An endpoint of a dead node leaves the overlay at once; it comes back
  // when its node does (the tables keep it meanwhile).
  if (!alive(ep.node)) return std::nullopt;
  auto vtep = membership_->address_of(ep.node);
  if (!vtep) return std::nullopt;
  return RemoteEndpoint{ep.ip, ep.mac(), *vtep};
}

void Overlay::sync_network(const std::string& network_id) {
  // Whatever happens below, the cache is rebuilt only by a sync that went
  // through (one that throws may leave the kernel half-done).
  forget(network_id);
  const NetworkRecord* n = store_.find_network(network_id);
  if (!n || local_attached_endpoints(network_id) == 0) return;
  const NetworkRecord network = *n;
  const std::string bridge = bridge_name(network.id);
  dataplane_.ensure_network(network, bridge);
  if (!membership_ || !local_vtep_) return;
  dataplane_.ensure_overlay(network, bridge, *local_vtep_);
  Programmed programmed;
  std::vector<RemoteEndpoint> remote;
  for (const std::string& key : store_.index().endpoints_on_network(network.id)) {
    if (auto r = remote_endpoint(*store_.find_endpoint(key))) {
      programmed.add(key, *r);
      remote.push_back(*r);
    }
  }
  std::sort(remote.begin(), remote.end());
  dataplane_.sync_remote_endpoints(network, remote);
  programmed_[network.id] = std::move(programmed);
}

void Overlay::endpoint_changed(const std::string& network_id, const std::string& endpoint_key) {
  auto it = programmed_.find(network_id);
  const NetworkRecord* n = store_.find_network(network_id);
  if (it == programmed_.end() || !n || !membership_ || !local_vtep_ ||
      local_attached_endpoints(network_id) == 0) {
    // Not programmed here, or not as a member: the full path decides (for
    // a network without a local container it returns at once).
    sync_network(network_id);
    return;
  }
  Programmed& programmed = it->second;
  std::optional<RemoteEndpoint> now;
  auto record = store_.endpoints().find(endpoint_key);
  if (record != store_.endpoints().end() && !record->second.deleted &&
      record->second.value.network_id == network_id) {
    now = remote_endpoint(record->second.value);
  }
  std::optional<RemoteEndpoint> before;
  if (auto p = programmed.endpoints.find(endpoint_key); p != programmed.endpoints.end()) before = p->second;
  if (before == now) return;  // e.g. its health or aliases changed: nothing for the kernel

  // The addresses whose entries may change, as they are before.
  std::map<std::string, std::optional<Ipv4Address>> fdb;
  std::map<Ipv4Address, std::optional<std::string>> neighbors;
  for (const auto& r : {before, now}) {
    if (!r) continue;
    fdb.emplace(r->mac, programmed.fdb_of(r->mac));
    neighbors.emplace(r->ip, programmed.neighbor_of(r->ip));
  }
  if (before) programmed.remove(endpoint_key);
  if (now) programmed.add(endpoint_key, *now);
  // Only what differs afterwards goes to the kernel: an address another
  // holder still serves keeps (or gets back) that holder's entry.
  RemoteEntryChanges changes;
  for (const auto& [mac, was] : fdb) {
    if (auto is = programmed.fdb_of(mac); is != was) changes.fdb.emplace_back(mac, is);
  }
  for (const auto& [ip, was] : neighbors) {
    if (auto is = programmed.neighbor_of(ip); is != was) changes.neighbors.emplace_back(ip, is);
  }
  if (changes.empty()) return;
  bool done = false;
  try {
    done = dataplane_.update_remote_endpoints(*n, changes);
  } catch (...) {
    forget(network_id);
    throw;
  }
  // The VXLAN device is gone (removed by hand?): the full sync makes it again.
  if (!done) sync_network(network_id);
}

void Overlay::Programmed::add(const std::string& key, const RemoteEndpoint& r) {
  remove(key);  // the holders must never point at an entry that changes under them
  const Entry* entry = &*endpoints.emplace(key, r).first;
  by_mac[r.mac].insert(entry);
  by_ip[r.ip].insert(entry);
}

void Overlay::Programmed::remove(const std::string& key) {
  auto it = endpoints.find(key);
  if (it == endpoints.end()) return;
  const Entry* entry = &*it;
  auto drop = [&](auto& holders, const auto& address) {
    auto h = holders.find(address);
    h->second.erase(entry);
    if (h->second.empty()) holders.erase(h);
  };
  // Out of the holders first: they find it by its value.
  drop(by_mac, entry->second.mac);
  drop(by_ip, entry->second.ip);
  endpoints.erase(it);
}

std::optional<Ipv4Address> Overlay::Programmed::fdb_of(const std::string& mac) const {
  auto it = by_mac.find(mac);
  if (it == by_mac.end()) return std::nullopt;
  return (*it->second.begin())->second.vtep;
}

std::optional<std::string> Overlay::Programmed::neighbor_of(Ipv4Address ip) const {
  auto it = by_ip.find(ip);
  if (it == by_ip.end()) return std::nullopt;
  return (*it->second.begin())->second.mac;
}

// Two nodes that create networks at the same moment, before either hears of
// the other, can pick the same name or overlapping subnets (a VNI clash is
// made unlikely by drawing VNIs at random). Nothing can undo that without a
// coordinator; say it loudly so the operator removes one.
void Overlay::warn_conflicts(const NetworkRecord& n) const {
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

void Overlay::sync_firewall() {
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
    // A network without containers has nothing to isolate (the routing
    // mesh's: its traffic between sandboxes is the mesh's own).
    if (!e.deleted && e.value.carries_containers()) all.emplace_back(e.version, e.value);
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

void Overlay::network_changed(const std::string& network_id) {
  auto it = store_.networks().find(network_id);
  if (it == store_.networks().end()) return;
  if (!it->second.deleted) warn_conflicts(it->second.value);
  sync_firewall();
  if (it->second.deleted) {
    if (local_attached_endpoints(network_id) == 0) {
      forget(network_id);
      dataplane_.remove_network(bridge_name(network_id));
    }
    return;
  }
  sync_network(network_id);
}

void Overlay::prepare_attach(const NetworkRecord& network) {
  try {
    dataplane_.ensure_network(network, bridge_name(network.id));
  } catch (...) {
    if (local_attached_endpoints(network.id) == 0) dataplane_.remove_network(bridge_name(network.id));
    throw;
  }
}

void Overlay::attached(const NetworkRecord& network) {
  // A local ADD changes no remote entry: the overlay (a VXLAN lookup and
  // two netlink dumps) is programmed only when this endpoint brings the
  // network to this host. Otherwise nothing: prepare_attach() has just
  // checked the bridge, within the same request (checking it again cost
  // every ADD four netlink round trips and a sysctl write).
  if (local_attached_endpoints(network.id) == 1) sync_network(network.id);
}

void Overlay::detached(const NetworkRecord& network, const std::string& host_ifname) {
  if (!host_ifname.empty()) dataplane_.remove_host_link(host_ifname);
  if (local_attached_endpoints(network.id) == 0) {
    forget(network.id);
    dataplane_.remove_network(bridge_name(network.id));
  }
}

void Overlay::repair(const NetworkRecord& network) { dataplane_.ensure_network(network, bridge_name(network.id)); }

void Overlay::remove(const std::string& network_id) {
  forget(network_id);
  dataplane_.remove_network(bridge_name(network_id));
}

void Overlay::reconcile() {
  sync_firewall();
  for (const auto& [id, e] : store_.networks()) {
    const std::string bridge = bridge_name(id);
    if (!e.deleted && local_attached_endpoints(id) > 0) {
      sync_network(id);
    } else {
      forget(id);
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

size_t Overlay::local_attached_endpoints(const std::string& network_id) const {
  // The node's own address follows the network here; it does not keep it
  // here (the index leaves it out).
  return store_.index().local_attachments(network_id).size();
}

unsigned Overlay::default_mtu(bool encrypted) {
  const unsigned overhead = kVxlanOverhead + (encrypted ? kEspOverhead : 0);
  return std::max(Overlay::kMinMtu, dataplane_.underlay_mtu() - overhead);
}

uint32_t Overlay::pick_vni(const std::string& network_id) const {
  // The VNI must be unique in the whole cluster, and networks may be created
  // on two nodes at the same moment, before either hears of the other. So
  // it is drawn from the network's random id (24 bits, 16.7 million values)
  // rather than "next free", which two nodes would pick alike; a value
  // already known here is skipped.
  std::set<uint32_t> vnis;
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted) vnis.insert(e.value.vni);
  }
  if (vnis.size() >= kMaxVni - kFirstVni) throw Error(Errc::exhausted, "no VXLAN network identifier left");
  uint32_t vni = kFirstVni + static_cast<uint32_t>(std::stoull(network_id.substr(0, 8), nullptr, 16) %
                                                   (kMaxVni - kFirstVni + 1));
  while (vnis.count(vni)) vni = vni == kMaxVni ? kFirstVni : vni + 1;
  return vni;
}

}  // namespace swarmnet::daemon
