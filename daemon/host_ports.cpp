#include "daemon/host_ports.hpp"

#include <fstream>
#include <optional>
#include <set>

#include "common/error.hpp"
#include "common/log.hpp"
#include "daemon/ingress/ingress.hpp"

namespace swarmnet::daemon {

namespace {

std::string port_key(const std::string& protocol, uint16_t port) { return protocol + "/" + std::to_string(port); }

std::string holder_of(const EndpointRecord& e) {
  std::string who = "container " + e.container_id;
  if (!e.service.empty()) who += " (task of " + e.service + ")";
  return who;
}

std::vector<kernel::PublishedPort> to_rules(const std::vector<HostPortRecord>& ports) {
  std::vector<kernel::PublishedPort> out;
  for (const auto& p : ports) out.push_back({p.protocol, p.published, p.target, std::nullopt});
  return out;
}

bool is_local_attached(const EndpointRecord& e, const std::string& node) { return e.attach && e.node == node; }

// Whether resolve_host_ports() can return anything for it: runtime ports,
// or a service with host-mode ports.
bool publishes_host_ports(const EndpointRecord& e, const ServiceRecord* service) {
  for (const auto& p : e.host_ports) {
    if (p.origin == "runtime") return true;
  }
  if (!service) return false;
  for (const auto& p : service->ports) {
    if (p.publish_mode == "host") return true;
  }
  return false;
}

}  // namespace

PortRange ephemeral_port_range() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned first = 0, last = 0;
  if (in >> first >> last && first >= 1 && first <= last && last <= 65535) {
    return PortRange{static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
  }
  return PortRange{};
}

std::vector<HostPortRecord> resolve_host_ports(const EndpointRecord& endpoint, const ServiceRecord* service,
                                               const std::map<std::string, std::string>& taken, PortRange range,
                                               bool skip_taken, std::vector<std::string>* skipped) {
  std::vector<HostPortRecord> out;
  std::set<std::string> used;  // by this endpoint itself
  auto refuse = [&](const std::string& key, const std::string& holder) {
    const std::string why = "host port " + key + " is taken on this node by " + holder +
                            " (host mode publishes a port to one task per node)";
    if (!skip_taken) throw Error(Errc::conflict, why);
    if (skipped) skipped->push_back(why);
  };
  auto free = [&](const std::string& key) { return !taken.count(key) && !used.count(key); };
  auto take = [&](const HostPortRecord& p) {
    const std::string key = port_key(p.protocol, p.published);
    if (!free(key)) return refuse(key, taken.count(key) ? taken.at(key) : "this container's own mapping");
    used.insert(key);
    out.push_back(p);
  };

  for (const auto& p : endpoint.host_ports) {
    if (p.origin == "runtime") take(p);
  }
  if (!service) return out;
  for (const auto& sp : service->ports) {
    if (sp.publish_mode != "host") continue;
    HostPortRecord p{sp.protocol, sp.published, sp.target, "service"};
    if (p.published == 0) {
      // The number this task was given before, if it still has it.
      for (const auto& old : endpoint.host_ports) {
        if (old.origin == "service" && old.protocol == p.protocol && old.target == p.target && old.published != 0 &&
            free(port_key(p.protocol, old.published))) {
          p.published = old.published;
        }
      }
      for (unsigned port = range.first; p.published == 0 && port <= range.last; ++port) {
        if (free(port_key(p.protocol, static_cast<uint16_t>(port)))) p.published = static_cast<uint16_t>(port);
      }
      if (p.published == 0) {
        refuse(p.protocol + " (any port)", "other publications: the range " + std::to_string(range.first) + "-" +
                                              std::to_string(range.last) + " is full");
        continue;
      }
    }
    take(p);
  }
  return out;
}

HostPorts::HostPorts(Store& store, kernel::PublishedPorts& rules) : store_(store), rules_(rules) {
  subscription_ = store_.feed().subscribe(Stage::host_ports, [this](const Change& c) {
    if (c.kind == Change::Kind::entry) on_change(c.table, c.key);
  });
}

HostPorts::~HostPorts() = default;

// Ports published on this node by anyone but `endpoint`: the host ports of
// this node's other endpoints, and Docker's -p rules read from the kernel.
std::map<std::string, std::string> HostPorts::taken_except(const EndpointRecord& endpoint,
                                                           const std::map<std::string, std::string>& by_others) {
  std::map<std::string, std::string> taken = by_others;
  for (const std::string& key : store_.index().endpoints_of_node(store_.node_id())) {
    const EndpointRecord& r = *store_.find_endpoint(key);
    if (!is_local_attached(r, store_.node_id()) || r.id == endpoint.id) continue;
    for (const auto& p : r.host_ports) taken.emplace(port_key(p.protocol, p.published), holder_of(r));
  }
  // Ingress ports are taken on every node.
  taken.merge(ingress_ports_taken(store_));
  return taken;
}

// Ports other owners (Docker's -p, the routing mesh) publish on this host,
// read from the kernel: one nft listing, whatever the number of endpoints.
std::map<std::string, std::string> HostPorts::taken_by_others() {
  std::map<std::string, std::string> taken;
  for (const auto& [port, holder] : rules_.taken()) {
    if (!holder.starts_with(std::string(kHostPortOwner) + ":")) taken.emplace(port, holder);
  }
  return taken;
}

void HostPorts::complete(EndpointRecord& endpoint) {
  if (!is_local_attached(endpoint, store_.node_id())) return;
  const ServiceRecord* service = endpoint.service.empty() ? nullptr : store_.find_service_by_name(endpoint.service);
  // Most containers publish nothing: what others publish (an nft listing,
  // milliseconds on every ADD) and the ephemeral range matter only to one
  // that does.
  if (!publishes_host_ports(endpoint, service)) {
    endpoint.host_ports.clear();
    return;
  }
  endpoint.host_ports =
      resolve_host_ports(endpoint, service, taken_except(endpoint, taken_by_others()), ephemeral_port_range());
}

void HostPorts::on_service_change(const ServiceRecord& service) {
  const bool gone = store_.find_service_by_name(service.name) == nullptr;
  std::vector<EndpointRecord> changed;
  std::optional<std::map<std::string, std::string>> by_others;  // read once, if a task is here
  const PortRange range = ephemeral_port_range();
  for (const std::string& key : store_.index().endpoints_of_service(service.name)) {
    const EndpointRecord& r = *store_.find_endpoint(key);
    if (!is_local_attached(r, store_.node_id())) continue;
    EndpointRecord updated = r;
    std::vector<std::string> skipped;
    if (!by_others) by_others = taken_by_others();
    updated.host_ports = resolve_host_ports(r, gone ? nullptr : &service, taken_except(r, *by_others), range,
                                            /*skip_taken=*/true, &skipped);
    for (const auto& why : skipped) {
      spdlog::error("service {}: container {} publishes no port here: {}", service.name, r.container_id, why);
    }
    if (updated.host_ports != r.host_ports) changed.push_back(std::move(updated));
  }
  for (const auto& e : changed) store_.put(e);  // on_change programs each, once this change is delivered
}

void HostPorts::program(const EndpointRecord& e) {
  auto it = programmed_.find(e.id);
  if (e.host_ports.empty()) {
    if (it != programmed_.end()) unprogram(e.id);
    return;
  }
  if (it != programmed_.end() && it->second.first == e.ip && it->second.second == e.host_ports) return;
  rules_.replace(e.id, e.ip, to_rules(e.host_ports));
  programmed_[e.id] = {e.ip, e.host_ports};
  std::string list;
  for (const auto& p : e.host_ports) list += " " + port_key(p.protocol, p.published) + "->" + std::to_string(p.target);
  spdlog::info("container {}: published on this host:{}", e.container_id, list);
}

void HostPorts::unprogram(const std::string& endpoint_id) {
  rules_.remove(endpoint_id);
  if (programmed_.erase(endpoint_id)) spdlog::info("endpoint {}: host ports closed", endpoint_id.substr(0, 12));
}

void HostPorts::on_change(TableId table, const std::string& key) {
  try {
    if (table == TableId::services) {
      auto it = store_.services().find(key);
      if (it != store_.services().end()) on_service_change(it->second.value);  // a tombstone keeps its value
    } else if (table == TableId::endpoints) {
      auto it = store_.endpoints().find(key);
      if (it == store_.endpoints().end() || !is_local_attached(it->second.value, store_.node_id())) return;
      if (it->second.deleted) {
        if (programmed_.count(it->second.value.id)) unprogram(it->second.value.id);
      } else {
        program(it->second.value);
      }
    }
  } catch (const std::exception& e) {
    spdlog::error("host ports: {}", e.what());
  }
}

void HostPorts::resync() {
  std::set<std::string> wanted;
  for (const auto& [key, e] : store_.endpoints()) {
    if (e.deleted || !is_local_attached(e.value, store_.node_id()) || e.value.host_ports.empty()) continue;
    wanted.insert(e.value.id);
    try {
      rules_.replace(e.value.id, e.value.ip, to_rules(e.value.host_ports));
      programmed_[e.value.id] = {e.value.ip, e.value.host_ports};
    } catch (const std::exception& err) {
      spdlog::error("host ports of container {}: {}", e.value.container_id, err.what());
    }
  }
  for (const std::string& id : rules_.ids()) {
    if (!wanted.count(id)) {
      rules_.remove(id);
      spdlog::info("endpoint {}: stale host ports removed", id.substr(0, 12));
    }
  }
}

}  // namespace swarmnet::daemon
