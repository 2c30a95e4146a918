#include "dns/name_table.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>

#include "common/error.hpp"

namespace swarmnet::dns {
namespace {

constexpr std::string_view kSoaMname = "ns.swarmnet";
constexpr std::string_view kSoaRname = "hostmaster.swarmnet";

char lower_char(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower_char(c);
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

struct NameTable::Found {
  std::vector<Ipv4Address> ips;
  std::vector<std::pair<const Srv*, uint32_t>> srvs;  // with the network its name was found in
};

bool is_hostname_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

template <class T>
uint32_t NameTable::Slab<T>::add(T item) {
  if (!free.empty()) {
    const uint32_t id = free.back();
    free.pop_back();
    items[id] = std::move(item);
    return id;
  }
  items.push_back(std::move(item));
  return static_cast<uint32_t>(items.size() - 1);
}

template <class T>
void NameTable::Slab<T>::remove(uint32_t id) {
  items[id] = T{};  // gives back what the item holds (a long name's buffer)
  free.push_back(id);
}

// ---- containers' names --------------------------------------------------

uint64_t NameTable::name_hash(uint32_t network, std::string_view lower_name) {
  return std::hash<std::string_view>{}(lower_name) + network * 0x9E3779B97F4A7C15ull;
}

uint32_t NameTable::find_endpoint(const KeyDigest& key) const {
  return endpoint_index_.find(key.a, [&](uint32_t id) { return endpoints_.items[id].key == key; });
}

uint32_t NameTable::find_name(uint32_t network, std::string_view lower_name) const {
  return name_index_.find(name_hash(network, lower_name), [&](uint32_t id) {
    const Record& r = records_.items[id];
    return r.network == network && r.name == lower_name;
  });
}

uint32_t NameTable::find_address(Ipv4Address ip) const {
  return address_index_.find(ip.value(), [&](uint32_t id) { return records_.items[id].ip == ip; });
}

void NameTable::link(HashIndex& index, uint64_t hash, uint32_t head, uint32_t id, uint32_t Record::*next) {
  records_.items[id].*next = head;
  if (head == kNone)
    index.insert(hash, id);
  else
    index.replace(hash, head, id);
}

void NameTable::unlink(HashIndex& index, uint64_t hash, uint32_t head, uint32_t id, uint32_t Record::*next) {
  const uint32_t after = records_.items[id].*next;
  if (head == id) {
    if (after == kNone)
      index.erase(hash, id);
    else
      index.replace(hash, id, after);
    return;
  }
  for (uint32_t p = head; p != kNone; p = records_.items[p].*next) {
    if (records_.items[p].*next == id) {
      records_.items[p].*next = after;
      return;
    }
  }
}

void NameTable::add_record(uint32_t endpoint, std::string name, bool ptr) {
  Endpoint& e = endpoints_.items[endpoint];
  // An alias equal to the name (or to another alias) adds nothing.
  for (uint32_t r = e.first_record; r != kNone; r = records_.items[r].next_of_endpoint)
    if (records_.items[r].name == name) return;
  const uint64_t hash = name_hash(e.network, name);
  const uint32_t same_name = find_name(e.network, name);
  const uint32_t same_ip = ptr ? find_address(e.ip) : kNone;
  Record record;
  record.name = std::move(name);
  record.ip = e.ip;
  record.network = e.network;
  record.ptr = ptr;
  record.next_of_endpoint = e.first_record;
  const uint32_t id = records_.add(std::move(record));
  e.first_record = id;
  link(name_index_, hash, same_name, id, &Record::next_same_name);
  if (ptr) link(address_index_, e.ip.value(), same_ip, id, &Record::next_same_ip);
}

void NameTable::strip_endpoint(uint32_t id) {
  Endpoint& e = endpoints_.items[id];
  for (uint32_t r = e.first_record; r != kNone;) {
    const Record& record = records_.items[r];
    const uint32_t next = record.next_of_endpoint;
    unlink(name_index_, name_hash(record.network, record.name), find_name(record.network, record.name), r,
           &Record::next_same_name);
    if (record.ptr) unlink(address_index_, record.ip.value(), find_address(record.ip), r, &Record::next_same_ip);
    records_.remove(r);
    r = next;
  }
  e.first_record = kNone;
  unindex_local(id);
  if (e.service) {
    const std::string service = *e.service;
    e.service = nullptr;
    if (auto tasks = tasks_by_service_.find(service); tasks != tasks_by_service_.end()) {
      std::erase(tasks->second, id);
      if (tasks->second.empty()) tasks_by_service_.erase(tasks);
    }
  }
}

std::string_view NameTable::endpoint_name(const Endpoint& e) const {
  for (uint32_t r = e.first_record; r != kNone; r = records_.items[r].next_of_endpoint)
    if (records_.items[r].ptr) return records_.items[r].name;
  return "";
}

void NameTable::index_local(uint32_t endpoint, const std::string& container) {
  const KeyDigest digest = KeyDigest::of(container);
  local_by_ip_.emplace(endpoints_.items[endpoint].ip.value(), endpoint);
  local_containers_.emplace(endpoint, digest);
  local_by_container_.emplace(digest, endpoint);
}

void NameTable::unindex_local(uint32_t endpoint) {
  auto container = local_containers_.find(endpoint);
  if (container == local_containers_.end()) return;
  // Takes the one pair (key, endpoint) out of a multimap.
  auto erase_pair = [endpoint](auto& map, const auto& key) {
    auto [first, last] = map.equal_range(key);
    for (auto it = first; it != last; ++it) {
      if (it->second == endpoint) {
        map.erase(it);
        return;
      }
    }
  };
  erase_pair(local_by_ip_, endpoints_.items[endpoint].ip.value());
  erase_pair(local_by_container_, container->second);
  local_containers_.erase(container);
}

void NameTable::upsert_endpoint(const EndpointInfo& info) {
  const KeyDigest key = KeyDigest::of(info.key);
  std::unique_lock lock(mutex_);
  std::string old_service;
  uint32_t id = find_endpoint(key);
  if (id != kNone) {
    if (const std::string* service = endpoints_.items[id].service) old_service = *service;
    strip_endpoint(id);
  } else {
    id = endpoints_.add(Endpoint{});
    endpoint_index_.insert(key.a, id);
  }
  Endpoint& e = endpoints_.items[id];
  e.key = key;
  e.ip = info.ip;
  e.network = network_index(info.network_id);
  e.local = info.local;
  e.healthy = info.healthy;
  if (const std::string name = effective_name(info); !name.empty()) add_record(id, lower(name), true);
  for (const std::string& alias : info.aliases)
    if (!alias.empty()) add_record(id, lower(alias), false);
  if (e.local) index_local(id, info.container_id);
  if (!info.service.empty()) {
    auto tasks = tasks_by_service_.try_emplace(info.service).first;
    tasks->second.push_back(id);
    e.service = &tasks->first;
  }
  if (!old_service.empty() && old_service != info.service) rebuild_service(old_service);
  if (!info.service.empty()) rebuild_service(info.service);
}

void NameTable::remove_endpoint(const std::string& key) {
  const KeyDigest digest = KeyDigest::of(key);
  std::unique_lock lock(mutex_);
  const uint32_t id = find_endpoint(digest);
  if (id == kNone) return;
  const std::string* task_of = endpoints_.items[id].service;
  const std::string service = task_of ? *task_of : "";
  strip_endpoint(id);
  endpoint_index_.erase(digest.a, id);
  endpoints_.remove(id);
  if (!service.empty()) rebuild_service(service);
}

// ---- networks ---------------------------------------------------------------

uint32_t NameTable::network_index(const std::string& id) {
  if (auto it = network_ids_.find(id); it != network_ids_.end()) return it->second;
  if (networks_.empty()) networks_.emplace_back();  // index 0: no network
  const uint32_t index = static_cast<uint32_t>(networks_.size());
  networks_.emplace_back();
  network_ids_.emplace(id, index);
  return index;
}

std::string_view NameTable::network_name(uint32_t index) const {
  return index < networks_.size() ? std::string_view(networks_[index].name) : std::string_view();
}

void NameTable::upsert_network(const NetworkInfo& network) {
  std::unique_lock lock(mutex_);
  const uint32_t index = network_index(network.id);
  Network& n = networks_[index];
  if (n.gateway != Ipv4Address()) gateways_.erase(n.gateway.value());
  n.name = lower(network.name);
  n.gateway = network.gateway;
  if (network.gateway != Ipv4Address()) gateways_[network.gateway.value()] = index;
}

void NameTable::remove_network(const std::string& id) {
  std::unique_lock lock(mutex_);
  auto it = network_ids_.find(id);
  if (it == network_ids_.end()) return;
  Network& n = networks_[it->second];
  gateways_.erase(n.gateway.value());
  // The index stays reserved (names of the network's endpoints, if any are
  // still listed, keep pointing at it until they are removed too).
  n.name.clear();
  n.gateway = Ipv4Address();
}

// ---- services' names ---------------------------------------------------------

void NameTable::write_key(std::string& out, uint32_t network, std::string_view name) {
  out.assign(4, '\0');
  std::memcpy(out.data(), &network, 4);
  for (char c : name) out.push_back(lower_char(c));
}

std::string NameTable::key_for(uint32_t network, std::string_view name) {
  std::string key;
  write_key(key, network, name);
  return key;
}

void NameTable::add_address(const std::string& owner, uint32_t network, std::string_view name,
                            Ipv4Address ip) {
  auto& contribution = contributions_[owner];
  const std::string* owner_ptr = &contributions_.find(owner)->first;
  std::string key = key_for(network, name);
  NameEntry& entry = names_[key];
  for (const Address& a : entry.addresses)
    if (a.ip == ip && a.owner == owner_ptr) return;
  entry.addresses.push_back({ip, owner_ptr});
  // One key per name, however many addresses (tasks.NAME has one per task).
  auto& keys = contribution.name_keys;
  if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(std::move(key));
}

void NameTable::add_ptr(const std::string& owner, uint32_t network, Ipv4Address ip, std::string target) {
  auto& contribution = contributions_[owner];
  const std::string* owner_ptr = &contributions_.find(owner)->first;
  ptrs_[ip.value()].push_back({network, std::move(target), owner_ptr});
  contribution.ptrs.push_back(ip);
}

void NameTable::add_srv(const std::string& owner, uint32_t network, std::string_view name,
                        uint16_t port, std::string target) {
  auto& contribution = contributions_[owner];
  const std::string* owner_ptr = &contributions_.find(owner)->first;
  std::string key = key_for(network, name);
  names_[key].srvs.push_back({port, std::move(target), owner_ptr});
  auto& keys = contribution.name_keys;
  if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(std::move(key));
}

void NameTable::withdraw(const std::string& owner) {
  auto it = contributions_.find(owner);
  if (it == contributions_.end()) return;
  const std::string* owner_ptr = &it->first;
  for (const std::string& key : it->second.name_keys) {
    auto n = names_.find(key);
    if (n == names_.end()) continue;
    erase_if_vec(n->second.addresses, [&](const Address& a) { return a.owner == owner_ptr; });
    erase_if_vec(n->second.srvs, [&](const Srv& s) { return s.owner == owner_ptr; });
    if (n->second.addresses.empty() && n->second.srvs.empty()) names_.erase(n);
  }
  for (const Ipv4Address ip : it->second.ptrs) {
    auto p = ptrs_.find(ip.value());
    if (p == ptrs_.end()) continue;
    erase_if_vec(p->second, [&](const Ptr& x) { return x.owner == owner_ptr; });
    if (p->second.empty()) ptrs_.erase(p);
  }
  contributions_.erase(it);
}

void NameTable::upsert_service(const ServiceInfo& service) {
  std::unique_lock lock(mutex_);
  if (auto old = services_.find(service.id); old != services_.end() && old->second.name != service.name) {
    withdraw("svc:" + service.id);
    forget_service_name(old->second.name, service.id);
  }
  services_[service.id] = service;
  service_ids_by_name_[service.name].insert(service.id);
  rebuild_service_locked(services_.at(service.id));
}

void NameTable::remove_service(const std::string& id) {
  std::unique_lock lock(mutex_);
  withdraw("svc:" + id);
  if (auto it = services_.find(id); it != services_.end()) {
    forget_service_name(it->second.name, id);
    services_.erase(it);
  }
}

void NameTable::forget_service_name(const std::string& name, const std::string& id) {
  auto it = service_ids_by_name_.find(name);
  if (it == service_ids_by_name_.end()) return;
  it->second.erase(id);
  if (it->second.empty()) service_ids_by_name_.erase(it);
}

void NameTable::clear() {
  std::unique_lock lock(mutex_);
  network_ids_.clear();
  networks_.clear();
  endpoints_ = {};
  records_ = {};
  endpoint_index_.clear();
  name_index_.clear();
  address_index_.clear();
  names_.clear();
  ptrs_.clear();
  services_.clear();
  service_ids_by_name_.clear();
  contributions_.clear();
  tasks_by_service_.clear();
  local_by_ip_.clear();
  local_containers_.clear();
  local_by_container_.clear();
  gateways_.clear();
}

// The services of that name by their index, not a walk of every service
// (per task change: 15-25% of swarmnetd's time at 1,000 services).
void NameTable::rebuild_service(const std::string& service_name) {
  auto ids = service_ids_by_name_.find(service_name);
  if (ids == service_ids_by_name_.end()) return;
  for (const std::string& id : ids->second) {
    if (auto it = services_.find(id); it != services_.end()) rebuild_service_locked(it->second);
  }
}

// A service's names, recomputed from its tasks (O(tasks of the service)).
void NameTable::rebuild_service_locked(const ServiceInfo& service) {
  const std::string owner = "svc:" + service.id;
  withdraw(owner);
  const std::string name = lower(service.name);
  const std::string tasks_name = "tasks." + name;
  std::vector<const Endpoint*> tasks;
  if (auto it = tasks_by_service_.find(service.name); it != tasks_by_service_.end())
    for (uint32_t id : it->second)
      if (endpoints_.items[id].healthy) tasks.push_back(&endpoints_.items[id]);

  for (const Endpoint* task : tasks) {
    add_address(owner, task->network, tasks_name, task->ip);
    if (service.dnsrr) add_address(owner, task->network, name, task->ip);
  }
  for (const ServicePort& port : service.ports) {
    std::string srv_name = "_" + std::to_string(port.port) + "._" + lower(port.protocol) + "." + name;
    if (service.dnsrr) {
      for (const Endpoint* task : tasks) {
        const std::string_view target = endpoint_name(*task);
        if (!target.empty()) add_srv(owner, task->network, srv_name, port.port, std::string(target));
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
  if (auto it = contributions_.find(owner);
      it != contributions_.end() && it->second.name_keys.empty() && it->second.ptrs.empty())
    contributions_.erase(it);
}

// ---- answers ----------------------------------------------------------------

std::optional<Scope> NameTable::scope_locked(Ipv4Address source, Ipv4Address destination) const {
  Scope scope;
  if (auto [first, last] = local_by_ip_.equal_range(source.value()); first != last) {
    for (auto at_ip = first; at_ip != last; ++at_ip) {
      auto container = local_containers_.find(at_ip->second);
      if (container == local_containers_.end()) continue;
      auto [same, end] = local_by_container_.equal_range(container->second);
      for (; same != end; ++same) {
        const uint32_t n = endpoints_.items[same->second].network;
        if (!scope.contains(n) && scope.count < Scope::kMax) scope.networks[scope.count++] = n;
      }
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

bool NameTable::gather(uint32_t network, std::string_view lower_name, Found& found) const {
  bool any = false;
  for (uint32_t r = find_name(network, lower_name); r != kNone; r = records_.items[r].next_same_name) {
    found.ips.push_back(records_.items[r].ip);
    any = true;
  }
  if (names_.empty()) return any;
  thread_local std::string key;
  write_key(key, network, lower_name);
  if (auto it = names_.find(key); it != names_.end()) {
    any = true;
    for (const Address& a : it->second.addresses) found.ips.push_back(a.ip);
    for (const Srv& s : it->second.srvs) found.srvs.emplace_back(&s, network);
  }
  return any;
}

Outcome NameTable::respond(const Query& query, Ipv4Address source, Ipv4Address destination,
                           ResponseWriter& writer) const {
  std::shared_lock lock(mutex_);
  const std::optional<Scope> found_scope = scope_locked(source, destination);
  if (!found_scope) return Outcome::refused;
  const Scope& scope = *found_scope;
  if (query.qclass != kClassIn && query.qclass != kClassAny) return Outcome::outside;
  const std::string_view qname = query.name.view();
  const uint32_t ttl = ttl_;

  // Reverse lookups: PTR for addresses of the scope's networks.
  if (auto ip = parse_reverse_name(qname)) {
    const bool wanted = query.qtype == type::PTR || query.qtype == type::ANY;
    bool any = false;
    for (uint32_t r = find_address(*ip); r != kNone; r = records_.items[r].next_same_ip) {
      const Record& record = records_.items[r];
      if (!scope.contains(record.network)) continue;
      if (wanted) writer.add_ptr(Section::answer, "", ttl, Joined(record.name, network_name(record.network)).view());
      any = true;
    }
    if (auto it = ptrs_.find(ip->value()); it != ptrs_.end()) {
      for (const Ptr& p : it->second) {
        if (!scope.contains(p.network)) continue;
        if (wanted) writer.add_ptr(Section::answer, "", ttl, Joined(p.target, network_name(p.network)).view());
        any = true;
      }
    }
    if (!any) return Outcome::outside;
    writer.set_authoritative(true);
    if (writer.answer_count() == 0 && !writer.truncated())
      writer.add_soa(Section::authority, "", ttl, kSoaMname, kSoaRname, 1, ttl);
    return Outcome::answered;
  }

  // NAME in each scope network, and NAME.NETWORK for a scope network. Our
  // names are kept in lower case: the question is lowered once, into a
  // buffer that stays with the thread (no allocation per query).
  thread_local std::string lowered;
  lowered.assign(qname);
  for (char& c : lowered) c = lower_char(c);
  const std::string_view name = lowered;
  thread_local Found found;
  found.ips.clear();
  found.srvs.clear();
  bool any = false;
  std::string_view zone;  // set when the name ends in one of the scope's networks
  for (size_t i = 0; i < scope.count; ++i) {
    const uint32_t n = scope.networks[i];
    any |= gather(n, name, found);
    const std::string_view net = network_name(n);
    if (net.empty() || name.size() <= net.size() + 1) continue;
    const size_t dot = name.size() - net.size() - 1;
    if (name[dot] != '.' || name.substr(dot + 1) != net) continue;
    zone = qname.substr(dot + 1);
    any |= gather(n, name.substr(0, dot), found);
  }
  if (!any) {
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
    // One address once, even where a container's name and a service's (or
    // two networks') give it; sorting keeps that O(n log n) for a service
    // of many tasks.
    std::vector<Ipv4Address>& ips = found.ips;
    if (ips.size() > 1) {
      std::sort(ips.begin(), ips.end());
      ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
    }
    // Rotated per answer, so clients that take the first address spread.
    const size_t n = ips.size();
    const size_t start = n > 1 ? rotation_.fetch_add(1, std::memory_order_relaxed) % n : 0;
    for (size_t i = 0; i < n; ++i)
      if (!writer.add_a(Section::answer, "", ttl, ips[(start + i) % n])) break;
  }
  if (query.qtype == type::SRV || query.qtype == type::ANY) {
    for (const auto& [s, network] : found.srvs) {
      // The target lives in the network the SRV name was found in.
      if (!writer.add_srv(Section::answer, "", ttl, 0, 10, s->port, Joined(s->target, network_name(network)).view()))
        break;
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
  endpoint_index_.for_each([&](uint32_t id) {
    for (uint32_t r = endpoints_.items[id].first_record; r != kNone; r = records_.items[r].next_of_endpoint) {
      const Record& record = records_.items[r];
      const std::string name = record.name + "." + std::string(network_name(record.network));
      lines.push_back(name + " A " + record.ip.str());
      if (record.ptr) lines.push_back(reverse_name(record.ip) + " PTR " + name);
    }
  });
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
  return name_index_.size() + names_.size();
}

}  // namespace swarmnet::dns
