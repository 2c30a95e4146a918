#include "dns/name_table.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

namespace swarmnet::dns {
namespace {

constexpr std::string_view kSoaMname = "ns.swarmnet";
constexpr std::string_view kSoaRname = "hostmaster.swarmnet";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

// The name of a container whose engine gave none: its id, or the first 12
// characters of a 64-character id (what Docker uses as hostname).
std::string effective_name(const EndpointInfo& e) {
  if (!e.name.empty()) return e.name;
  if (is_hostname_label(e.container_id)) return e.container_id;
  if (e.container_id.size() > 12 && is_hostname_label(e.container_id.substr(0, 12)))
    return e.container_id.substr(0, 12);
  return "";
}

// Writes name + "." + network into a stack buffer for a PTR/SRV target.
struct Joined {
  char text[600];
  size_t size = 0;
  Joined(std::string_view a, std::string_view b) {
    if (a.size() + 1 + b.size() > sizeof text) return;
    std::memcpy(text, a.data(), a.size());
    text[a.size()] = '.';
    std::memcpy(text + a.size() + 1, b.data(), b.size());
    size = a.size() + 1 + b.size();
  }
  std::string_view view() const { return {text, size}; }
};

template <class T, class Pred>
void erase_if_vec(std::vector<T>& v, Pred pred) {
  v.erase(std::remove_if(v.begin(), v.end(), pred), v.end());
}

}  // namespace

bool is_hostname_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

void NameTable::write_key(std::string& out, uint32_t network, std::string_view name) {
  out.assign(4, '\0');
  std::memcpy(out.data(), &network, 4);
  for (char c : name) out.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c);
}

std::string NameTable::key_for(uint32_t network, std::string_view name) {
  std::string key;
  write_key(key, network, name);
  return key;
}

uint32_t NameTable::network_index(const std::string& id) {
  auto it = networks_.find(id);
  if (it != networks_.end()) return it->second.index;
  uint32_t index = next_network_index_++;
  networks_.emplace(id, Network{NetworkInfo{id, "", Ipv4Address()}, index});
  network_ids_[index] = id;
  return index;
}

std::string_view NameTable::network_name(uint32_t index) const {
  auto id = network_ids_.find(index);
  if (id == network_ids_.end()) return "";
  auto it = networks_.find(id->second);
  return it == networks_.end() ? std::string_view() : std::string_view(it->second.info.name);
}

void NameTable::upsert_network(const NetworkInfo& network) {
  std::unique_lock lock(mutex_);
  uint32_t index = network_index(network.id);
  Network& n = networks_.at(network.id);
  if (n.info.gateway != Ipv4Address()) gateways_.erase(n.info.gateway.value());
  n.info = network;
  n.info.name = lower(network.name);
  if (network.gateway != Ipv4Address()) gateways_[network.gateway.value()] = index;
}

void NameTable::remove_network(const std::string& id) {
  std::unique_lock lock(mutex_);
  auto it = networks_.find(id);
  if (it == networks_.end()) return;
  gateways_.erase(it->second.info.gateway.value());
  // The index stays reserved (names of the network's endpoints, if any are
  // still listed, keep pointing at it until they are removed too).
  it->second.info.name.clear();
  it->second.info.gateway = Ipv4Address();
}

void NameTable::add_address(const std::string& owner, uint32_t network, std::string_view name,
                            Ipv4Address ip) {
  auto& contribution = contributions_[owner];
  const std::string* owner_ptr = &contributions_.find(owner)->first;
  std::string key = key_for(network, name);
  NameEntry& entry = names_[key];
  for (const Address& a : entry.addresses)
    if (a.ip == ip && a.owner == owner_ptr) return;  // an alias equal to the name
  entry.addresses.push_back({ip, owner_ptr});
  contribution.name_keys.push_back(std::move(key));
}

void NameTable::add_ptr(const std::string& owner, uint32_t network, Ipv4Address ip, std::string target) {
  auto& contribution = contributions_[owner];
  const std::string* owner_ptr = &contributions_.find(owner)->first;
  ptrs_[ip.value()].push_back({network, std::move(target), owner_ptr});
  contribution.ptrs.emplace_back(network, ip);
}

void NameTable::add_srv(const std::string& owner, uint32_t network, std::string_view name,
                        uint16_t port, std::string target) {
  auto& contribution = contributions_[owner];
  const std::string* owner_ptr = &contributions_.find(owner)->first;
  std::string key = key_for(network, name);
  names_[key].srvs.push_back({port, std::move(target), owner_ptr});
  contribution.srv_keys.push_back(std::move(key));
}

void NameTable::withdraw(const std::string& owner) {
  auto it = contributions_.find(owner);
  if (it == contributions_.end()) return;
  const std::string* owner_ptr = &it->first;
  for (const std::string& key : it->second.name_keys) {
    auto n = names_.find(key);
    if (n == names_.end()) continue;
    erase_if_vec(n->second.addresses, [&](const Address& a) { return a.owner == owner_ptr; });
    if (n->second.addresses.empty() && n->second.srvs.empty()) names_.erase(n);
  }
  for (const std::string& key : it->second.srv_keys) {
    auto n = names_.find(key);
    if (n == names_.end()) continue;
    erase_if_vec(n->second.srvs, [&](const Srv& s) { return s.owner == owner_ptr; });
    if (n->second.addresses.empty() && n->second.srvs.empty()) names_.erase(n);
  }
  for (const auto& [network, ip] : it->second.ptrs) {
    auto p = ptrs_.find(ip.value());
    if (p == ptrs_.end()) continue;
    erase_if_vec(p->second, [&](const Ptr& x) { return x.owner == owner_ptr; });
    if (p->second.empty()) ptrs_.erase(p);
  }
  contributions_.erase(it);
}

void NameTable::index_local(const EndpointInfo& e, bool add) {
  if (!e.local) return;
  uint32_t network = network_index(e.network_id);
  auto& ids = local_by_ip_[e.ip.value()];
  auto& nets = local_networks_[e.container_id];
  if (add) {
    ids.push_back(e.container_id);
    nets.push_back(network);
    return;
  }
  if (auto it = std::find(ids.begin(), ids.end(), e.container_id); it != ids.end()) ids.erase(it);
  if (auto it = std::find(nets.begin(), nets.end(), network); it != nets.end()) nets.erase(it);
  if (ids.empty()) local_by_ip_.erase(e.ip.value());
  if (nets.empty()) local_networks_.erase(e.container_id);
}

void NameTable::upsert_endpoint(const EndpointInfo& endpoint) {
  std::unique_lock lock(mutex_);
  std::string old_service;
  if (auto old = endpoints_.find(endpoint.key); old != endpoints_.end()) {
    withdraw(endpoint.key);
    index_local(old->second, false);
    old_service = old->second.service;
    if (!old_service.empty()) {
      auto& tasks = tasks_by_service_[old_service];
      tasks.erase(endpoint.key);
      if (tasks.empty()) tasks_by_service_.erase(old_service);
    }
  }
  endpoints_[endpoint.key] = endpoint;
  uint32_t network = network_index(endpoint.network_id);
  std::string name = effective_name(endpoint);
  if (!name.empty()) {
    add_address(endpoint.key, network, name, endpoint.ip);
    add_ptr(endpoint.key, network, endpoint.ip, lower(name));
  }
  for (const std::string& alias : endpoint.aliases)
    if (!alias.empty()) add_address(endpoint.key, network, alias, endpoint.ip);
  index_local(endpoint, true);
  if (!endpoint.service.empty()) tasks_by_service_[endpoint.service].insert(endpoint.key);
  if (!old_service.empty() && old_service != endpoint.service) rebuild_service(old_service);
  if (!endpoint.service.empty()) rebuild_service(endpoint.service);
}

void NameTable::remove_endpoint(const std::string& key) {
  std::unique_lock lock(mutex_);
  auto it = endpoints_.find(key);
  if (it == endpoints_.end()) return;
  withdraw(key);
  index_local(it->second, false);
  std::string service = it->second.service;
  endpoints_.erase(it);
  if (!service.empty()) {
    auto& tasks = tasks_by_service_[service];
    tasks.erase(key);
    if (tasks.empty()) tasks_by_service_.erase(service);
    rebuild_service(service);
  }
}

void NameTable::upsert_service(const ServiceInfo& service) {
  std::unique_lock lock(mutex_);
  if (auto old = services_.find(service.id); old != services_.end() && old->second.name != service.name) {
    withdraw("svc:" + service.id);
  }
  services_[service.id] = service;
  rebuild_service_locked(services_.at(service.id));
}

void NameTable::remove_service(const std::string& id) {
  std::unique_lock lock(mutex_);
  withdraw("svc:" + id);
  services_.erase(id);
}

void NameTable::clear() {
  std::unique_lock lock(mutex_);
  networks_.clear();
  network_ids_.clear();
  names_.clear();
  ptrs_.clear();
  endpoints_.clear();
  services_.clear();
  contributions_.clear();
  local_by_ip_.clear();
  local_networks_.clear();
  gateways_.clear();
  tasks_by_service_.clear();
}

void NameTable::rebuild_service(const std::string& service_name) {
  for (const auto& [id, service] : services_)
    if (service.name == service_name) rebuild_service_locked(service);
}

// A service's names, recomputed from its tasks (O(tasks of the service)).
void NameTable::rebuild_service_locked(const ServiceInfo& service) {
  const std::string owner = "svc:" + service.id;
  withdraw(owner);
  const std::string name = lower(service.name);
  const std::string tasks_name = "tasks." + name;
  std::vector<const EndpointInfo*> tasks;
  if (auto it = tasks_by_service_.find(service.name); it != tasks_by_service_.end())
    for (const std::string& key : it->second)
      if (auto e = endpoints_.find(key); e != endpoints_.end() && e->second.healthy)
        tasks.push_back(&e->second);

  for (const EndpointInfo* task : tasks) {
    uint32_t network = network_index(task->network_id);
    add_address(owner, network, tasks_name, task->ip);
    if (service.dnsrr) add_address(owner, network, name, task->ip);
  }
  for (const ServicePort& port : service.ports) {
    std::string srv_name = "_" + std::to_string(port.port) + "._" + lower(port.protocol) + "." + name;
    if (service.dnsrr) {
      for (const EndpointInfo* task : tasks) {
        std::string target = lower(effective_name(*task));
        if (!target.empty()) add_srv(owner, network_index(task->network_id), srv_name, port.port, target);
      }
    } else {
      for (const auto& [network_id, vip] : service.vips)
        add_srv(owner, network_index(network_id), srv_name, port.port, name);
    }
  }
  if (!service.dnsrr) {
    for (const auto& [network_id, vip] : service.vips) {
      uint32_t network = network_index(network_id);
      add_address(owner, network, name, vip);
      add_ptr(owner, network, vip, name);
    }
  }
  // A service with no names at all still needs its contribution entry
  // removed, so a later withdraw finds nothing stale.
  if (auto it = contributions_.find(owner); it != contributions_.end() && it->second.name_keys.empty() &&
                                            it->second.ptrs.empty() && it->second.srv_keys.empty())
    contributions_.erase(it);
}

std::optional<Scope> NameTable::scope_locked(Ipv4Address source, Ipv4Address destination) const {
  Scope scope;
  if (auto it = local_by_ip_.find(source.value()); it != local_by_ip_.end()) {
    for (const std::string& container : it->second) {
      auto nets = local_networks_.find(container);
      if (nets == local_networks_.end()) continue;
      for (uint32_t n : nets->second)
        if (!scope.contains(n) && scope.count < Scope::kMax) scope.networks[scope.count++] = n;
    }
    return scope;
  }
  // The host itself, asking one of its gateway addresses (an operator's dig).
  bool host = (source.value() >> 24) == 127 || gateways_.count(source.value()) != 0;
  auto gw = gateways_.find(destination.value());
  if (host && gw != gateways_.end()) {
    scope.networks[scope.count++] = gw->second;
    return scope;
  }
  return std::nullopt;
}

Outcome NameTable::respond(const Query& query, Ipv4Address source, Ipv4Address destination,
                           ResponseWriter& writer) const {
  std::shared_lock lock(mutex_);
  const std::optional<Scope> found_scope = scope_locked(source, destination);
  if (!found_scope) return Outcome::refused;
  const Scope& scope = *found_scope;
  if (query.qclass != kClassIn && query.qclass != kClassAny) return Outcome::outside;
  std::string_view qname = query.name.view();
  const uint32_t ttl = ttl_;

  // Reverse lookups: PTR for addresses of the scope's networks.
  if (auto ip = parse_reverse_name(qname)) {
    auto it = ptrs_.find(ip->value());
    if (it == ptrs_.end()) return Outcome::outside;
    bool any = false;
    for (const Ptr& p : it->second) {
      if (!scope.contains(p.network)) continue;
      if (query.qtype == type::PTR || query.qtype == type::ANY) {
        Joined target(p.target, network_name(p.network));
        writer.add_ptr(Section::answer, "", ttl, target.view());
      }
      any = true;
    }
    if (!any) return Outcome::outside;
    writer.set_authoritative(true);
    if (writer.answer_count() == 0 && !writer.truncated())
      writer.add_soa(Section::authority, "", ttl, kSoaMname, kSoaRname, 1, ttl);
    return Outcome::answered;
  }

  // NAME in each scope network, and NAME.NETWORK for a scope network.
  thread_local std::vector<std::pair<const NameEntry*, uint32_t>> found;
  thread_local std::string key;
  found.clear();
  std::string_view zone;  // set when the name ends in one of the scope's networks
  for (size_t i = 0; i < scope.count; ++i) {
    uint32_t n = scope.networks[i];
    write_key(key, n, qname);
    if (auto it = names_.find(key); it != names_.end()) found.emplace_back(&it->second, n);
    auto id = network_ids_.find(n);
    if (id == network_ids_.end()) continue;
    const std::string& net_name = networks_.at(id->second).info.name;
    if (net_name.empty() || qname.size() <= net_name.size() + 1) continue;
    std::string_view suffix = qname.substr(qname.size() - net_name.size());
    if (qname[qname.size() - net_name.size() - 1] != '.' || !iequals(suffix, net_name)) continue;
    zone = suffix;
    key.resize(4 + qname.size() - net_name.size() - 1);
    if (auto it = names_.find(key); it != names_.end()) found.emplace_back(&it->second, n);
  }
  if (found.empty()) {
    if (zone.empty()) return Outcome::outside;
    // NAME.NETWORK of a scope network that has no such name: we are the
    // authority for it, so NXDOMAIN (with the SOA for negative caching).
    writer.set_authoritative(true);
    writer.set_rcode(Rcode::name_error);
    writer.add_soa(Section::authority, zone, ttl, kSoaMname, kSoaRname, 1, ttl);
    return Outcome::answered;
  }

  writer.set_authoritative(true);
  if (query.qtype == type::A || query.qtype == type::ANY) {
    thread_local std::vector<Ipv4Address> ips;
    ips.clear();
    for (const auto& [e, network] : found)
      for (const Address& a : e->addresses)
        if (std::find(ips.begin(), ips.end(), a.ip) == ips.end()) ips.push_back(a.ip);
    // Rotated per answer, so clients that take the first address spread.
    size_t n = ips.size();
    size_t start = n ? rotation_.fetch_add(1, std::memory_order_relaxed) % n : 0;
    for (size_t i = 0; i < n; ++i)
      if (!writer.add_a(Section::answer, "", ttl, ips[(start + i) % n])) break;
  }
  if (query.qtype == type::SRV || query.qtype == type::ANY) {
    for (const auto& [e, network] : found) {
      const std::string_view net = network_name(network);
      for (const Srv& s : e->srvs) {
        // The target lives in the network the SRV name was found in.
        Joined target(s.target, net);
        if (!writer.add_srv(Section::answer, "", ttl, 0, 10, s.port, target.view())) break;
      }
    }
  }
  if (writer.answer_count() == 0 && !writer.truncated()) {
    // NODATA: the name exists, not with this type (AAAA of an IPv4 name).
    writer.add_soa(Section::authority, "", ttl, kSoaMname, kSoaRname, 1, ttl);
  }
  return Outcome::answered;
}

std::vector<std::string> NameTable::dump() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> lines;
  for (const auto& [key, entry] : names_) {
    uint32_t network = 0;
    std::memcpy(&network, key.data(), 4);
    const std::string net(network_name(network));
    const std::string name = key.substr(4) + "." + net;
    for (const Address& a : entry.addresses) lines.push_back(name + " A " + a.ip.str());
    for (const Srv& s : entry.srvs)
      lines.push_back(name + " SRV " + std::to_string(s.port) + " " + s.target + "." + net);
  }
  for (const auto& [ip, ptrs] : ptrs_)
    for (const Ptr& p : ptrs)
      lines.push_back(reverse_name(Ipv4Address(ip)) + " PTR " + p.target + "." + std::string(network_name(p.network)));
  std::sort(lines.begin(), lines.end());
  return lines;
}

size_t NameTable::name_count() const {
  std::shared_lock lock(mutex_);
  return names_.size();
}

}  // namespace swarmnet::dns
