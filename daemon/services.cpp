#include "daemon/services.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/random.hpp"
#include "daemon/ingress/ingress.hpp"
#include "dns/name_table.hpp"

namespace swarmnet::daemon {

namespace {

// Service names are DNS labels (they are answered as names), and "tasks" is
// taken by tasks.NAME.
void check_service_name(const std::string& name) {
  bool ok = dns::is_hostname_label(name) && name != "tasks" && name.front() != '-';
  if (!ok) {
    throw Error(Errc::invalid_argument, "service name \"" + name +
                                            "\": 1-63 letters, digits, '-' or '_' (a DNS label), not \"tasks\"");
  }
}

// The same port twice, or two targets on one published port, is refused.
void check_ports(const std::vector<ServicePortRecord>& ports) {
  for (size_t i = 0; i < ports.size(); ++i) {
    const ServicePortRecord& p = ports[i];
    for (size_t j = 0; j < i; ++j) {
      const ServicePortRecord& q = ports[j];
      if (q.protocol == p.protocol && q.target == p.target && q.publish_mode == p.publish_mode &&
          q.published == p.published) {
        throw Error(Errc::invalid_argument, "ports[" + std::to_string(i) + "]: listed twice");
      }
      if (p.published != 0 && q.protocol == p.protocol && q.published == p.published) {
        throw Error(Errc::invalid_argument, "ports[" + std::to_string(i) + "]: published port " + p.protocol + "/" +
                                                std::to_string(p.published) + " is already used by this service");
      }
    }
  }
}

std::vector<ServicePortRecord> port_records(const std::vector<api::ServicePort>& ports) {
  std::vector<ServicePortRecord> out;
  for (const auto& p : ports) out.push_back(ServicePortRecord{p.target, p.protocol, p.published.value_or(0), p.publish_mode});
  check_ports(out);
  return out;
}

}  // namespace

std::string vip_container_id(const std::string& service_name) { return "svc-vip-" + service_name; }

bool is_vip_endpoint(const EndpointRecord& e) { return e.labels.count(kVipLabel) != 0; }

const ServiceRecord& Services::find(const std::string& name) const {
  if (const ServiceRecord* s = store_.find_service_by_name(name)) return *s;
  if (const ServiceRecord* s = store_.find_service(name)) return *s;
  throw Error(Errc::not_found, "no service \"" + name + "\"");
}

api::Service Services::create(const api::ServiceCreate& request) {
  ServiceRecord s;
  s.name = request.name;
  check_service_name(s.name);
  if (store_.find_service_by_name(s.name)) throw Error(Errc::conflict, "service \"" + s.name + "\" exists");
  s.mode = request.endpoint_mode == "dnsrr" ? ServiceMode::dnsrr : ServiceMode::vip;
  for (const std::string& n : request.networks) {
    const NetworkRecord* net = store_.find_network_by_name(n);
    if (!net) net = store_.find_network(n);
    if (!net) throw Error(Errc::not_found, "networks: no network \"" + n + "\"");
    if (std::find(s.networks.begin(), s.networks.end(), net->id) == s.networks.end()) s.networks.push_back(net->id);
  }
  s.ports = port_records(request.ports);
  const api::HealthCheck& h = request.health;
  s.health = HealthCheckRecord{h.kind, h.port, h.path, h.interval_s, h.retries};
  s.id = random_hex(16);
  s.created_by = store_.node_id();

  number_published_ports(store_, s, nullptr);

  // The VIPs first (each an address-only endpoint through the cluster IPAM).
  // A BlockNeeded escapes to the API server, which asks for a block and
  // retries the whole request: the reservations made so far are found again
  // (same container id), not made twice. Any other failure releases them.
  std::vector<std::string> reserved;
  try {
    if (s.mode == ServiceMode::vip) {
      for (const std::string& network_id : s.networks) s.vips[network_id] = reserve_vip(s, network_id, reserved);
    }
    if (auto network_id = ingress_vip_network(store_, s)) s.ingress_vip = reserve_vip(s, *network_id, reserved);
    store_.put(s);
  } catch (const BlockNeeded&) {
    throw;
  } catch (...) {
    for (const std::string& key : reserved) controller_.release_endpoint(key);
    throw;
  }
  spdlog::info("service {} ({}) created: {} mode on {} network(s)", s.name, s.id.substr(0, 12),
               request.endpoint_mode, s.networks.size());
  return view(s, true);
}

Ipv4Address Services::reserve_vip(const ServiceRecord& s, const std::string& network_id,
                                  std::vector<std::string>& reserved) {
  api::EndpointCreate req;
  req.container_id = vip_container_id(s.name);
  req.ifname = "vip";
  req.attach = false;
  req.labels = {{kVipLabel, s.name}};
  req.owner = api::kOwnerServiceVip;
  const NetworkRecord& net = *store_.find_network(network_id);
  auto [ep, created] = controller_.create_endpoint(net.name, req);
  reserved.push_back(endpoint_key(network_id, store_.node_id(), req.container_id, req.ifname));
  return ep.address.address();
}

std::vector<api::Service> Services::list() const {
  std::vector<api::Service> out;
  for (const auto& [id, e] : store_.services())
    if (!e.deleted) out.push_back(view(e.value, false));
  return out;
}

api::Service Services::inspect(const std::string& name) const { return view(find(name), true); }

api::Service Services::update(const std::string& name, const api::ServiceUpdate& request) {
  ServiceRecord s = find(name);
  const ServiceRecord before = s;
  s.ports = port_records(request.ports);
  number_published_ports(store_, s, &before);
  std::vector<std::string> reserved;
  const std::optional<std::string> ingress_vip_network_id = ingress_vip_network(store_, s);
  if (ingress_vip_network_id && !s.ingress_vip) s.ingress_vip = reserve_vip(s, *ingress_vip_network_id, reserved);
  const bool release_ingress_vip = !ingress_vip_network_id && s.ingress_vip;
  if (release_ingress_vip) s.ingress_vip.reset();
  try {
    store_.put(s);  // every node republishes (host_ports.hpp, ingress/routing_mesh.hpp)
  } catch (...) {
    for (const std::string& key : reserved) controller_.release_endpoint(key);
    throw;
  }
  if (release_ingress_vip) {
    if (auto key = ingress_vip_reservation(store_, s.name)) controller_.release_endpoint(*key);
  }
  spdlog::info("service {} updated: {} port(s)", s.name, s.ports.size());
  return view(s, true);
}

void Services::remove(const std::string& name) {
  const ServiceRecord s = find(name);
  // The service goes first (balancers and DNS drop its VIPs), then the
  // reservations, wherever they were made.
  store_.erase_service(s.id);
  const auto& reserved = store_.index().vip_reservations_of(s.name);
  const std::vector<std::string> vip_keys(reserved.begin(), reserved.end());
  for (const std::string& key : vip_keys) controller_.release_endpoint(key);
  spdlog::info("service {} removed ({} VIP(s) released)", s.name, vip_keys.size());
}

api::ServiceAttached Services::attach(const std::string& name, const api::ServiceAttach& request) {
  if (!name.empty()) find(name);
  const std::string& network = request.network;
  const std::string& container_id = request.container_id;
  const std::string& ifname = request.ifname;
  const NetworkRecord* net = store_.find_network_by_name(network);
  if (!net) net = store_.find_network(network);
  if (!net) throw Error(Errc::not_found, "no network \"" + network + "\"");
  // The same change as Docker's PATCH of an endpoint (controller.hpp).
  api::EndpointUpdate update;
  update.service = name;
  try {
    controller_.update_endpoint(net->name, container_id, ifname, update);
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
    throw Error(Errc::not_found, std::string(e.what()) + " on this host (attach on the container's own host)");
  }
  spdlog::info("container {} on {}: now a task of {}", container_id, network, name.empty() ? "no service" : name);
  return api::ServiceAttached{container_id, net->name, name};
}

api::Service Services::view(const ServiceRecord& s, bool with_tasks) const {
  auto network_name = [&](const std::string& id) {
    const NetworkRecord* n = store_.find_network(id);
    return n ? n->name : id;
  };
  api::Service out;
  out.id = s.id;
  out.name = s.name;
  out.endpoint_mode = s.mode == ServiceMode::dnsrr ? "dnsrr" : "vip";
  for (const auto& id : s.networks) out.networks.push_back(network_name(id));
  for (const auto& [id, ip] : s.vips) out.vips.push_back(api::ServiceVip{network_name(id), ip.str()});
  if (s.ingress_vip) out.ingress_vip = s.ingress_vip->str();
  for (const auto& p : s.ports) {
    api::ServicePort port{p.target, p.protocol, std::nullopt, p.publish_mode};
    if (!p.publish_mode.empty()) port.published = p.published;
    out.ports.push_back(port);
  }
  out.health = api::HealthCheck{s.health.kind, s.health.port, s.health.path, s.health.interval_s, s.health.retries};
  if (with_tasks) out.tasks.emplace();
  const Liveness alive = [this](const std::string& node) { return controller_.is_alive(node); };
  for (const auto& network_id : s.networks) out.healthy_count += healthy_tasks(store_, s.name, network_id, alive).size();
  for (const std::string& key : store_.index().endpoints_of_service(s.name)) {
    const auto& e = store_.endpoints().at(key);
    ++out.task_count;
    if (!with_tasks) continue;
    api::ServiceTask task{e.value.container_id, network_name(e.value.network_id), e.value.node,
                          controller_.is_alive(e.value.node), e.value.ip.str(), e.value.healthy, {}};
    // What the task publishes on its node, as `service inspect` shows it.
    for (const auto& p : e.value.host_ports) {
      task.host_ports.push_back(api::TaskPort{p.protocol, p.published, p.target, p.origin});
    }
    out.tasks->push_back(std::move(task));
  }
  return out;
}

}  // namespace swarmnet::daemon
