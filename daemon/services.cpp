#include "daemon/services.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/random.hpp"
#include "dns/name_table.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;
using namespace json_fields;

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

ServicePortRecord decode_port(const json::value& v, size_t index) {
  const std::string where = "ports[" + std::to_string(index) + "]";
  const auto& o = as_object(v, where);
  ServicePortRecord p;
  auto target = optional_uint(o, "target", 65535);
  if (!target || *target == 0) throw Error(Errc::invalid_argument, where + ".target: a port 1-65535 is required");
  p.target = static_cast<uint16_t>(*target);
  p.protocol = string_or(o, "protocol", "tcp");
  if (p.protocol != "tcp" && p.protocol != "udp") {
    throw Error(Errc::invalid_argument, where + ".protocol: \"tcp\" or \"udp\", not \"" + p.protocol + "\"");
  }
  // "published" absent: not published; 0: published on a port chosen for it.
  const json::value* published = json_fields::find(o, "published");
  p.publish_mode = string_or(o, "publish_mode", published ? "ingress" : "");
  if (published) p.published = static_cast<uint16_t>(optional_uint(o, "published", 65535).value_or(0));
  if (p.publish_mode != "" && p.publish_mode != "host" && p.publish_mode != "ingress") {
    throw Error(Errc::invalid_argument, where + ".publish_mode: \"host\" or \"ingress\", not \"" + p.publish_mode + "\"");
  }
  return p;
}

std::vector<ServicePortRecord> decode_ports(const json::object& o) {
  std::vector<ServicePortRecord> ports;
  const json::value* v = json_fields::find(o, "ports");
  if (!v) return ports;
  if (!v->is_array()) throw Error(Errc::invalid_argument, "ports: expected an array");
  for (size_t i = 0; i < v->get_array().size(); ++i) {
    ServicePortRecord p = decode_port(v->get_array()[i], i);
    for (const auto& q : ports) {
      if (q.protocol == p.protocol && q.target == p.target && q.publish_mode == p.publish_mode &&
          q.published == p.published) {
        throw Error(Errc::invalid_argument, "ports[" + std::to_string(i) + "]: listed twice");
      }
      if (p.published != 0 && q.protocol == p.protocol && q.published == p.published) {
        throw Error(Errc::invalid_argument, "ports[" + std::to_string(i) + "]: published port " + p.protocol + "/" +
                                                std::to_string(p.published) + " is already used by this service");
      }
    }
    ports.push_back(p);
  }
  return ports;
}

HealthCheckRecord decode_health(const json::object& o) {
  HealthCheckRecord h;
  h.kind = string_or(o, "kind", "");
  if (h.kind.empty()) return h;
  if (h.kind != "tcp" && h.kind != "http") {
    throw Error(Errc::invalid_argument, "health.kind: \"tcp\" or \"http\", not \"" + h.kind + "\"");
  }
  auto port = optional_uint(o, "port", 65535);
  if (!port || *port == 0) throw Error(Errc::invalid_argument, "health.port: a port 1-65535 is required");
  h.port = static_cast<uint16_t>(*port);
  h.path = string_or(o, "path", h.kind == "http" ? "/" : "");
  if (h.kind == "http" && (h.path.empty() || h.path[0] != '/' ||
                           h.path.find_first_of(" \r\n") != std::string::npos)) {
    throw Error(Errc::invalid_argument, "health.path: an absolute path without spaces, like /healthz");
  }
  h.interval_s = static_cast<unsigned>(optional_uint(o, "interval_s", 3600).value_or(5));
  h.retries = static_cast<unsigned>(optional_uint(o, "retries", 100).value_or(3));
  if (h.interval_s == 0 || h.retries == 0) {
    throw Error(Errc::invalid_argument, "health.interval_s and health.retries must be at least 1");
  }
  return h;
}

// What a task publishes on its node, as `service inspect` shows it.
json::array host_ports_json(const EndpointRecord& e) {
  json::array out;
  for (const auto& p : e.host_ports) {
    out.push_back(json::object{{"protocol", p.protocol}, {"published", p.published}, {"target", p.target}, {"origin", p.origin}});
  }
  return out;
}

}  // namespace

bool has_ingress_ports(const ServiceRecord& s) {
  return std::any_of(s.ports.begin(), s.ports.end(), [](const ServicePortRecord& p) { return p.publish_mode == "ingress"; });
}

std::string vip_container_id(const std::string& service_name) { return "svc-vip-" + service_name; }

bool is_vip_endpoint(const EndpointRecord& e) { return e.labels.count(kVipLabel) != 0; }

const ServiceRecord& Services::find(const std::string& name) const {
  if (const ServiceRecord* s = store_.find_service_by_name(name)) return *s;
  if (const ServiceRecord* s = store_.find_service(name)) return *s;
  throw Error(Errc::not_found, "no service \"" + name + "\"");
}

json::value Services::create(const std::string& body) {
  const json::value v = parse(body, "service");
  const auto& o = as_object(v, "service");
  ServiceRecord s;
  s.name = required_string(o, "name");
  check_service_name(s.name);
  if (store_.find_service_by_name(s.name)) throw Error(Errc::conflict, "service \"" + s.name + "\" exists");
  const std::string mode = string_or(o, "endpoint_mode", "vip");
  if (mode != "vip" && mode != "dnsrr") {
    throw Error(Errc::invalid_argument, "endpoint_mode: \"vip\" or \"dnsrr\", not \"" + mode + "\"");
  }
  s.mode = mode == "dnsrr" ? ServiceMode::dnsrr : ServiceMode::vip;
  const std::vector<std::string> network_names = string_array(o, "networks");
  if (network_names.empty()) throw Error(Errc::invalid_argument, "networks: at least one network is required");
  for (const std::string& n : network_names) {
    const NetworkRecord* net = store_.find_network_by_name(n);
    if (!net) net = store_.find_network(n);
    if (!net) throw Error(Errc::not_found, "networks: no network \"" + n + "\"");
    if (std::find(s.networks.begin(), s.networks.end(), net->id) == s.networks.end()) s.networks.push_back(net->id);
  }
  s.ports = decode_ports(o);
  if (const json::value* h = json_fields::find(o, "health")) s.health = decode_health(as_object(*h, "health"));
  s.id = random_hex(16);
  s.created_by = store_.node_id();

  check_publications(s);

  // The VIPs first (each an address-only endpoint through the cluster IPAM).
  // A BlockNeeded escapes to the API server, which asks for a block and
  // retries the whole request: the reservations made so far are found again
  // (same container id), not made twice. Any other failure releases them.
  std::vector<std::string> reserved;
  try {
    if (s.mode == ServiceMode::vip) {
      for (const std::string& network_id : s.networks) s.vips[network_id] = reserve_vip(s, network_id, reserved);
    }
    if (has_ingress_ports(s)) s.ingress_vip = reserve_vip(s, ingress_network().id, reserved);
    store_.put(s);
  } catch (const BlockNeeded&) {
    throw;
  } catch (...) {
    for (const std::string& key : reserved) controller_.release_endpoint(key);
    throw;
  }
  spdlog::info("service {} ({}) created: {} mode on {} network(s)", s.name, s.id.substr(0, 12), mode,
               s.networks.size());
  return to_json_view(s, true);
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

const NetworkRecord& Services::ingress_network() const {
  if (const NetworkRecord* n = store_.find_ingress_network()) return *n;
  throw Error(Errc::unavailable,
              "ingress publishing needs the cluster's ingress network, which `swarmnetctl cluster init` makes "
              "(a node outside a cluster has no routing mesh; publish with mode=host there)");
}

// Ingress ports are the cluster's: every node answers on them, so one
// number serves one service. Host-mode ports with a number must not collide
// with them either (both would be DNATed on every node that runs a task).
// Ingress ports without a number get the first free one of 30000-32767.
void Services::check_publications(ServiceRecord& s) const {
  if (s.mode == ServiceMode::dnsrr && has_ingress_ports(s)) {
    throw Error(Errc::invalid_argument,
                "ports: a dnsrr service cannot publish in ingress mode (the routing mesh balances through a VIP); "
                "publish with mode=host");
  }
  std::map<std::string, std::string> used;  // "tcp/30080" -> "service web (ingress)"
  for (const auto& [id, e] : store_.services()) {
    if (e.deleted || e.value.name == s.name) continue;
    for (const auto& p : e.value.ports) {
      if (p.publish_mode.empty() || p.published == 0) continue;
      used.emplace(p.protocol + "/" + std::to_string(p.published),
                   "service " + e.value.name + " (" + p.publish_mode + " mode)");
    }
  }
  for (auto& p : s.ports) {
    if (p.publish_mode.empty()) continue;
    if (p.publish_mode == "ingress" && p.published == 0) {
      for (unsigned port = kIngressPortFirst; p.published == 0 && port <= kIngressPortLast; ++port) {
        if (!used.count(p.protocol + "/" + std::to_string(port))) p.published = static_cast<uint16_t>(port);
      }
      if (p.published == 0) {
        throw Error(Errc::exhausted, "ports: every ingress port of " + std::to_string(kIngressPortFirst) + "-" +
                                         std::to_string(kIngressPortLast) + " is taken");
      }
    }
    if (p.published == 0) continue;  // host mode: chosen on each node
    const std::string key = p.protocol + "/" + std::to_string(p.published);
    auto it = used.find(key);
    if (it != used.end() && (p.publish_mode == "ingress" || it->second.find("(ingress") != std::string::npos)) {
      throw Error(Errc::conflict, "ports: " + key + " is already published by " + it->second);
    }
    if (p.publish_mode == "ingress") used.emplace(key, "service " + s.name + " (ingress mode)");
  }
}

json::value Services::list() const {
  json::array out;
  for (const auto& [id, e] : store_.services())
    if (!e.deleted) out.push_back(to_json_view(e.value, false));
  return out;
}

json::value Services::inspect(const std::string& name) const { return to_json_view(find(name), true); }

json::value Services::update(const std::string& name, const std::string& body) {
  ServiceRecord s = find(name);
  const json::value v = parse(body, "service update");
  const auto& o = as_object(v, "service update");
  for (const auto& [key, value] : o) {
    if (key != "ports") throw Error(Errc::invalid_argument, "field \"" + std::string(key) + "\": only ports can be updated");
  }
  const ServiceRecord before = s;
  s.ports = decode_ports(o);
  // An ingress port keeps its number through an update unless it was given anew.
  for (auto& p : s.ports) {
    if (p.publish_mode != "ingress" || p.published != 0) continue;
    for (const auto& old : before.ports) {
      if (old.publish_mode == "ingress" && old.protocol == p.protocol && old.target == p.target) p.published = old.published;
    }
  }
  check_publications(s);
  std::vector<std::string> reserved;
  if (has_ingress_ports(s) && !s.ingress_vip) s.ingress_vip = reserve_vip(s, ingress_network().id, reserved);
  const bool release_ingress_vip = !has_ingress_ports(s) && s.ingress_vip;
  if (release_ingress_vip) s.ingress_vip.reset();
  try {
    store_.put(s);  // every node republishes (host_ports.hpp, routing_mesh.hpp)
  } catch (...) {
    for (const std::string& key : reserved) controller_.release_endpoint(key);
    throw;
  }
  if (release_ingress_vip) {
    const NetworkRecord& ingress = ingress_network();
    for (const auto& [key, e] : store_.endpoints()) {
      if (!e.deleted && is_vip_endpoint(e.value) && e.value.labels.at(kVipLabel) == s.name &&
          e.value.network_id == ingress.id) {
        controller_.release_endpoint(key);
        break;
      }
    }
  }
  spdlog::info("service {} updated: {} port(s)", s.name, s.ports.size());
  return to_json_view(s, true);
}

void Services::remove(const std::string& name) {
  const ServiceRecord s = find(name);
  // The service goes first (balancers and DNS drop its VIPs), then the
  // reservations, wherever they were made.
  store_.erase_service(s.id);
  std::vector<std::string> vip_keys;
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && is_vip_endpoint(e.value) && e.value.labels.at(kVipLabel) == s.name) vip_keys.push_back(key);
  }
  for (const std::string& key : vip_keys) controller_.release_endpoint(key);
  spdlog::info("service {} removed ({} VIP(s) released)", s.name, vip_keys.size());
}

json::value Services::attach(const std::string& name, const std::string& body) {
  if (!name.empty()) find(name);
  const json::value v = parse(body, "attach");
  const auto& o = as_object(v, "attach");
  const std::string network = required_string(o, "network");
  const std::string container_id = required_string(o, "container_id");
  const std::string ifname = string_or(o, "ifname", "eth0");
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
  return json::object{{"container_id", container_id}, {"network", net->name}, {"service", name}};
}

json::value Services::to_json_view(const ServiceRecord& s, bool with_tasks) const {
  auto network_name = [&](const std::string& id) {
    const NetworkRecord* n = store_.find_network(id);
    return n ? n->name : id;
  };
  json::array networks;
  for (const auto& id : s.networks) networks.emplace_back(network_name(id));
  json::object vips;
  for (const auto& [id, ip] : s.vips) vips[network_name(id)] = ip.str();
  json::array ports;
  for (const auto& p : s.ports) {
    json::object port{{"target", p.target}, {"protocol", p.protocol}};
    if (!p.publish_mode.empty()) {
      port["published"] = p.published;  // 0: chosen per task (host mode), see the tasks
      port["publish_mode"] = p.publish_mode;
    }
    ports.push_back(std::move(port));
  }
  json::object out{{"id", s.id},
                   {"name", s.name},
                   {"endpoint_mode", s.mode == ServiceMode::dnsrr ? "dnsrr" : "vip"},
                   {"networks", std::move(networks)},
                   {"vips", std::move(vips)},
                   {"ingress_vip", s.ingress_vip ? json::value(s.ingress_vip->str()) : json::value(nullptr)},
                   {"ports", std::move(ports)},
                   // The record's own form of the check (daemon/records.cpp).
                   {"health", to_json(s).as_object().at("health")}};
  json::array tasks;
  size_t count = 0, healthy = 0;
  for (const auto& [key, e] : store_.endpoints()) {
    if (e.deleted || e.value.service != s.name) continue;
    ++count;
    if (e.value.healthy) ++healthy;
    if (!with_tasks) continue;
    tasks.push_back(json::object{{"container_id", e.value.container_id},
                                 {"network", network_name(e.value.network_id)},
                                 {"node", e.value.node},
                                 {"node_alive", controller_.is_alive(e.value.node)},
                                 {"ip", e.value.ip.str()},
                                 {"healthy", e.value.healthy},
                                 {"host_ports", host_ports_json(e.value)}});
  }
  out["task_count"] = count;
  out["healthy_count"] = healthy;
  if (with_tasks) out["tasks"] = std::move(tasks);
  return out;
}

}  // namespace swarmnet::daemon
