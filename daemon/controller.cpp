#include "daemon/controller.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>

#include "common/error.hpp"
#include "common/random.hpp"
#include "common/version.hpp"
#include "daemon/ingress/ingress.hpp"

namespace swarmnet::daemon {

namespace {

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

}  // namespace

Controller::Controller(Store& store, Dataplane& dataplane, std::string node_name)
    : store_(store), overlay_(store, dataplane), ipam_(store), node_name_(std::move(node_name)) {
  subscription_ = store_.feed().subscribe(Stage::overlay, [this](const Change& c) {
    if (c.kind == Change::Kind::membership) {
      overlay_.membership_changed();
    } else if (!c.local) {
      // Our own writes are handled where they are made; this is for what
      // other nodes changed.
      on_store_change(c.table, c.key);
    }
  });
}

Controller::~Controller() = default;

void Controller::set_membership(const Membership* membership, BlockExchange* blocks,
                                std::optional<Ipv4Address> local_vtep) {
  membership_ = membership;
  overlay_.set_membership(membership, local_vtep);
  ipam_.set_cluster(membership, blocks);
  on_membership_change();
}

void Controller::forget_membership() {
  membership_ = nullptr;
  overlay_.set_membership(nullptr, std::nullopt);  // programs nothing by itself
  ipam_.set_cluster(nullptr, nullptr);
}

void Controller::on_membership_change() { store_.feed().publish(Change::membership()); }

bool Controller::alive(const std::string& node_id) const {
  if (node_id == store_.node_id()) return true;
  return membership_ && membership_->is_alive(node_id);
}

void Controller::on_store_change(TableId table, const std::string& key) {
  if (table == TableId::endpoints) {
    auto it = store_.endpoints().find(key);
    if (it == store_.endpoints().end()) return;
    const std::string network_id = it->second.value.network_id;
    ipam_.endpoint_changed(network_id, key);
    // This endpoint's entries only: a full sync_network here cost every
    // node O(the network) per change anywhere in the cluster.
    overlay_.endpoint_changed(network_id, key);
  } else if (table == TableId::blocks) {
    ipam_.block_changed(key);
  } else if (table == TableId::networks) {
    if (!store_.networks().count(key)) return;
    ipam_.network_changed(key);
    overlay_.network_changed(key);
  }
}

size_t Controller::reclaim_from(const std::string& dead_node) {
  if (dead_node == store_.node_id() || alive(dead_node)) return 0;
  const size_t taken = ipam_.reclaim_from(dead_node);
  on_membership_change();
  return taken;
}

size_t Controller::release_node(const std::string& gone_node) {
  if (gone_node == store_.node_id() || alive(gone_node)) return 0;
  reclaim_from(gone_node);
  const size_t released = ipam_.release_endpoints_of(gone_node);
  if (released > 0) on_membership_change();
  return released;
}

std::string Controller::bridge_name(const std::string& network_id) {
  return Overlay::bridge_name(network_id);
}

void Controller::reconcile() { overlay_.reconcile(); }

const NetworkRecord& Controller::resolve(const std::string& name_or_id) const {
  if (const auto* n = store_.find_network_by_name(name_or_id)) return *n;
  if (const auto* n = store_.find_network(name_or_id)) return *n;
  throw Error(Errc::not_found, "network \"" + name_or_id + "\" not found");
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
  if (req.encrypted && overlay_.encryption_missing()) {
    throw Error(Errc::unavailable, "--encrypted needs IPsec ESP with AES-GCM in this host's kernel, which it lacks: " +
                                       *overlay_.encryption_missing());
  }

  std::vector<Ipv4Prefix> taken;
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted) taken.push_back(e.value.subnet);
  }

  NetworkRecord n;
  n.name = req.name;
  if (req.ip_range && !req.subnet) {
    throw Error(Errc::invalid_argument, "ip range " + req.ip_range->str() + " needs the subnet it lies in");
  }
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
    for (const HostRoute& r : overlay_.host_routes()) taken.push_back(r.destination);
    n.subnet = ipam_.pick_subnet(taken);
  }

  n.gateway = req.gateway.value_or(Ipv4Address(n.subnet.network().value() + 1));
  if (!n.subnet.contains(n.gateway) || n.gateway == n.subnet.network() ||
      n.gateway == n.subnet.broadcast()) {
    throw Error(Errc::invalid_argument, "gateway " + n.gateway.str() +
                                            " is not a usable address of subnet " + n.subnet.str());
  }

  if (req.mtu) {
    if (*req.mtu < Overlay::kMinMtu || *req.mtu > 65535) {
      throw Error(Errc::invalid_argument, "mtu " + std::to_string(*req.mtu) + " out of range " +
                                              std::to_string(Overlay::kMinMtu) + "-65535");
    }
    n.mtu = *req.mtu;
  } else {
    n.mtu = overlay_.default_mtu(req.encrypted);
  }

  n.id = random_hex(16);
  n.vni = overlay_.pick_vni(n.id);

  n.internal = req.internal;
  n.encrypted = req.encrypted;
  n.ingress = req.ingress;
  n.ip_range = req.ip_range;
  n.block_length = ClusterIpam::block_length(n.subnet, n.gateway, n.ip_range);
  n.created_by = store_.node_id();

  store_.put(n);
  overlay_.sync_firewall();
  spdlog::info("network {} created: id {} subnet {} gateway {} mtu {} vni {}{}{}", n.name, n.id,
               n.subnet.str(), n.gateway.str(), n.mtu, n.vni, n.internal ? " internal" : "",
               n.encrypted ? " encrypted" : "");
  return to_api(n);
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
  overlay_.remove(network.id);
  ipam_.remove_network(network.id);
  store_.erase_network(network.id);
  overlay_.sync_firewall();
  spdlog::info("network {} removed{}", network.name,
               orphans.empty() ? "" : " with " + std::to_string(orphans.size()) +
                                          " endpoint(s) of nodes no longer in the cluster");
}

std::pair<api::Endpoint, bool> Controller::create_endpoint(const std::string& network_name,
                                                           const api::EndpointCreate& req, bool sync_later) {
  const NetworkRecord network = resolve(network_name);
  check_container_id(req.container_id);
  check_ifname(req.ifname);
  check_names(req.name, req.aliases, req.labels);

  if (auto why = ingress_join_refusal(network, req)) throw Error(Errc::invalid_argument, *why);
  if (network.encrypted && req.attach && overlay_.encryption_missing()) {
    throw Error(Errc::unavailable, "network \"" + network.name + "\" is encrypted and this node cannot carry it: " +
                                       *overlay_.encryption_missing());
  }
  const std::string key = endpoint_key(network.id, store_.node_id(), req.container_id, req.ifname);
  if (const EndpointRecord* existing = store_.find_endpoint(key)) {
    // ADD repeated (a runtime retry): same answer, kernel side repaired.
    if (existing->attach) overlay_.repair(network);
    return {to_api(network, *existing), false};
  }

  if (req.static_ips.size() > 1) {
    throw Error(Errc::invalid_argument, "only one static IPv4 address per endpoint is supported");
  }
  EndpointRecord e;
  e.ip = ipam_.allocate(network, req.static_ips.empty() ? std::nullopt : std::optional(req.static_ips.front()),
                        req.ip_range);
  // Until the journal holds the endpoint, the address must go back on failure.
  struct Release {
    ClusterIpam& ipam;
    const NetworkRecord& network;
    Ipv4Address ip;
    bool armed = true;
    ~Release() {
      if (armed) ipam.release(network, ip);
    }
  } release{ipam_, network, e.ip};

  e.id = random_hex(16);
  e.network_id = network.id;
  e.node = store_.node_id();
  e.container_id = req.container_id;
  e.ifname = req.ifname;
  e.netns = req.netns;
  e.attach = req.attach;
  e.host_ifname = !req.attach                              ? ""
                  : req.owner == api::kOwnerSandbox         ? kSandboxHostLink
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
  if (e.attach) overlay_.prepare_attach(network);
  if (sync_later) {
    store_.put_unsynced(e);
  } else {
    store_.put(e);
  }
  release.armed = false;

  if (e.attach) {
    try {
      overlay_.attached(network);
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
  ipam_.release(network, copy.ip);
  if (copy.attach) overlay_.detached(network, copy.host_ifname);
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
    a.key_generation = overlay_.key_generation();
    a.encryption_missing = overlay_.encryption_missing().value_or("");
  }
  a.block_length = n.block_length;
  a.ip_range = n.ip_range;
  a.created_by = n.created_by;
  a.endpoints = 0;
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && e.value.network_id == n.id && e.value.node == store_.node_id() &&
        e.value.owner != api::kOwnerNode) {
      ++a.endpoints;
    }
  }
  a.bridge = overlay_.local_attached_endpoints(n.id) > 0 ? bridge_name(n.id) : "";
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
  a.mac = e.mac();
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
