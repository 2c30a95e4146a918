#include "common/api.hpp"

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::api {

using namespace json_fields;

namespace {

std::string text_of(const std::string& s) { return s; }
std::string text_of(const Ipv4Address& a) { return a.str(); }

// Strings and addresses both travel as JSON strings.
template <class T>
json::array to_array(const std::vector<T>& v) {
  json::array a;
  for (const auto& x : v) a.emplace_back(text_of(x));
  return a;
}

json::object to_object(const std::map<std::string, std::string>& m) {
  json::object o;
  for (const auto& [k, v] : m) o[k] = v;
  return o;
}

std::map<std::string, std::string> string_map(const json::object& o, std::string_view key) {
  std::map<std::string, std::string> out;
  const json::value* v = find(o, key);
  if (!v || v->is_null()) return out;
  for (const auto& [k, val] : as_object(*v, "field \"" + std::string(key) + "\"")) {
    if (!val.is_string()) {
      throw Error(Errc::invalid_argument,
                  "field \"" + std::string(key) + "\": value of \"" + std::string(k) + "\" is not a string");
    }
    out.emplace(std::string(k), std::string(val.get_string()));
  }
  return out;
}

Ipv4Prefix prefix_field(const json::object& o, std::string_view key) {
  try {
    return Ipv4Prefix::parse(required_string(o, key));
  } catch (const Error& e) {
    throw Error(Errc::invalid_argument, "field \"" + std::string(key) + "\": " + e.what());
  }
}

// A range of addresses: no host bits, so that "10.1.0.7/28" is refused
// rather than read as a range it does not name.
std::optional<Ipv4Prefix> range_field(const json::object& o, std::string_view key) {
  const json::value* v = find(o, key);
  if (!v || v->is_null()) return std::nullopt;
  try {
    return Ipv4Prefix::parse_network(required_string(o, key));
  } catch (const Error& e) {
    throw Error(Errc::invalid_argument, "field \"" + std::string(key) + "\": " + e.what());
  }
}

Ipv4Address address_field(const json::object& o, std::string_view key) {
  try {
    return Ipv4Address::parse(required_string(o, key));
  } catch (const Error& e) {
    throw Error(Errc::invalid_argument, "field \"" + std::string(key) + "\": " + e.what());
  }
}

}  // namespace

bool valid_network_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return false;
  for (char c : name) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

std::optional<std::string> subnet_refusal(const Ipv4Prefix& subnet) {
  if (subnet.length() == 0) {
    return "subnet " + subnet.str() + " is refused: it would hold every IPv4 address";
  }
  static const std::pair<const char*, const char*> kReserved[] = {
      {"0.0.0.0/8", "\"this network\""},
      {"127.0.0.0/8", "loopback"},
      {"169.254.0.0/16", "link-local"},
      {"224.0.0.0/4", "multicast"},
      {"240.0.0.0/4", "reserved, with the broadcast address 255.255.255.255"},
  };
  for (const auto& [range, meaning] : kReserved) {
    const Ipv4Prefix reserved = Ipv4Prefix::parse_network(range);
    if (subnet.overlaps(reserved)) {
      return "subnet " + subnet.str() + " is refused: it overlaps " + range + " (" + meaning +
             "), which no network may use";
    }
  }
  return std::nullopt;
}

void tag_invoke(json::value_from_tag, json::value& jv, const NetworkCreate& n) {
  json::object o;
  o["name"] = n.name;
  if (n.subnet) o["subnet"] = n.subnet->str();
  if (n.gateway) o["gateway"] = n.gateway->str();
  if (n.mtu) o["mtu"] = *n.mtu;
  o["internal"] = n.internal;
  if (n.encrypted) o["encrypted"] = true;
  if (n.ip_range) o["ip_range"] = n.ip_range->str();
  jv = std::move(o);
}

NetworkCreate tag_invoke(json::value_to_tag<NetworkCreate>, const json::value& jv) {
  const auto& o = as_object(jv, "network");
  NetworkCreate n;
  n.name = required_string(o, "name");
  if (find(o, "subnet") && !find(o, "subnet")->is_null()) n.subnet = prefix_field(o, "subnet");
  if (find(o, "gateway") && !find(o, "gateway")->is_null()) n.gateway = address_field(o, "gateway");
  if (auto mtu = optional_uint(o, "mtu", 65535)) n.mtu = static_cast<unsigned>(*mtu);
  n.internal = bool_or(o, "internal", false);
  n.encrypted = bool_or(o, "encrypted", false);
  n.ip_range = range_field(o, "ip_range");
  return n;
}

void tag_invoke(json::value_from_tag, json::value& jv, const Network& n) {
  json::object o{{"id", n.id},
                 {"name", n.name},
                 {"subnet", n.subnet.str()},
                 {"gateway", n.gateway.str()},
                 {"mtu", n.mtu},
                 {"vni", n.vni},
                 {"internal", n.internal},
                 {"encrypted", n.encrypted},
                 {"block_length", n.block_length},
                 {"created_by", n.created_by},
                 {"bridge", n.bridge},
                 {"endpoints", n.endpoints}};
  if (n.ip_range) o["ip_range"] = n.ip_range->str();
  if (n.encrypted) {
    o["key_generation"] = n.key_generation;
    if (!n.encryption_missing.empty()) o["encryption_missing"] = n.encryption_missing;
  }
  jv = std::move(o);
}

Network tag_invoke(json::value_to_tag<Network>, const json::value& jv) {
  const auto& o = as_object(jv, "network");
  Network n;
  n.id = required_string(o, "id");
  n.name = required_string(o, "name");
  n.subnet = prefix_field(o, "subnet");
  n.gateway = address_field(o, "gateway");
  n.mtu = static_cast<unsigned>(optional_uint(o, "mtu", 65535).value_or(0));
  n.vni = static_cast<uint32_t>(optional_uint(o, "vni", 0xffffff).value_or(0));
  n.internal = bool_or(o, "internal", false);
  n.encrypted = bool_or(o, "encrypted", false);
  n.key_generation = static_cast<uint32_t>(optional_uint(o, "key_generation", UINT32_MAX).value_or(0));
  n.encryption_missing = string_or(o, "encryption_missing", "");
  n.block_length = static_cast<unsigned>(optional_uint(o, "block_length", 32).value_or(0));
  n.ip_range = range_field(o, "ip_range");
  n.created_by = string_or(o, "created_by", "");
  n.bridge = string_or(o, "bridge", "");
  n.endpoints = optional_uint(o, "endpoints", UINT32_MAX).value_or(0);
  return n;
}

void tag_invoke(json::value_from_tag, json::value& jv, const AttachmentKey& k) {
  jv = json::object{{"container_id", k.container_id}, {"ifname", k.ifname}};
}

AttachmentKey tag_invoke(json::value_to_tag<AttachmentKey>, const json::value& jv) {
  const auto& o = as_object(jv, "attachment");
  return AttachmentKey{required_string(o, "container_id"), required_string(o, "ifname")};
}

void tag_invoke(json::value_from_tag, json::value& jv, const EndpointCreate& e) {
  json::array ips;
  for (const auto& ip : e.static_ips) ips.emplace_back(ip.str());
  jv = json::object{{"container_id", e.container_id},
                    {"ifname", e.ifname},
                    {"netns", e.netns},
                    {"static_ips", std::move(ips)},
                    {"labels", to_object(e.labels)},
                    {"name", e.name},
                    {"aliases", to_array(e.aliases)},
                    {"service", e.service},
                    {"attach", e.attach},
                    {"owner", e.owner}};
  if (!e.cni_config.empty()) jv.as_object()["cni_config"] = e.cni_config;
  if (e.ip_range) jv.as_object()["ip_range"] = e.ip_range->str();
  if (!e.port_mappings.empty()) {
    json::array ports;
    for (const auto& p : e.port_mappings) {
      ports.push_back(json::object{
          {"host_port", p.host_port}, {"container_port", p.container_port}, {"protocol", p.protocol}});
    }
    jv.as_object()["port_mappings"] = std::move(ports);
  }
}

EndpointCreate tag_invoke(json::value_to_tag<EndpointCreate>, const json::value& jv) {
  const auto& o = as_object(jv, "endpoint");
  EndpointCreate e;
  e.container_id = required_string(o, "container_id");
  e.ifname = required_string(o, "ifname");
  e.netns = string_or(o, "netns", "");
  for (const auto& ip : string_array(o, "static_ips")) {
    try {
      e.static_ips.push_back(Ipv4Address::parse(ip));
    } catch (const Error& err) {
      throw Error(Errc::invalid_argument, std::string("field \"static_ips\": ") + err.what());
    }
  }
  e.labels = string_map(o, "labels");
  e.name = string_or(o, "name", "");
  e.aliases = string_array(o, "aliases");
  e.service = string_or(o, "service", "");
  e.attach = bool_or(o, "attach", true);
  e.ip_range = range_field(o, "ip_range");
  if (const json::value* v = find(o, "port_mappings")) {
    if (!v->is_array()) throw Error(Errc::invalid_argument, "field \"port_mappings\": expected an array");
    for (size_t i = 0; i < v->get_array().size(); ++i) {
      const std::string where = "port_mappings[" + std::to_string(i) + "]";
      const auto& po = as_object(v->get_array()[i], where);
      PortMapping p;
      const auto host = optional_uint(po, "host_port", 65535);
      const auto container = optional_uint(po, "container_port", 65535);
      if (!host || *host == 0 || !container || *container == 0) {
        throw Error(Errc::invalid_argument, where + ": host_port and container_port 1-65535 are required");
      }
      p.host_port = static_cast<uint16_t>(*host);
      p.container_port = static_cast<uint16_t>(*container);
      p.protocol = string_or(po, "protocol", "tcp");
      if (p.protocol != "tcp" && p.protocol != "udp") {
        throw Error(Errc::invalid_argument, where + ".protocol: \"tcp\" or \"udp\", not \"" + p.protocol + "\"");
      }
      e.port_mappings.push_back(p);
    }
  }
  e.owner = string_or(o, "owner", kOwnerApi);
  if (e.owner != kOwnerCni && e.owner != kOwnerDocker && e.owner != kOwnerApi) {
    throw Error(Errc::invalid_argument, "field \"owner\": \"cni\", \"docker\" or \"api\", not \"" + e.owner + "\"");
  }
  e.cni_config = string_or(o, "cni_config", "");
  return e;
}

void tag_invoke(json::value_from_tag, json::value& jv, const EndpointUpdate& u) {
  json::object o;
  if (u.name) o["name"] = *u.name;
  if (u.aliases) o["aliases"] = json::value_from(*u.aliases);
  if (u.service) o["service"] = *u.service;
  jv = std::move(o);
}

EndpointUpdate tag_invoke(json::value_to_tag<EndpointUpdate>, const json::value& jv) {
  const auto& o = as_object(jv, "endpoint update");
  EndpointUpdate u;
  u.name = optional_string(o, "name");
  if (o.contains("aliases") && !o.at("aliases").is_null()) u.aliases = string_array(o, "aliases");
  u.service = optional_string(o, "service");
  return u;
}

void tag_invoke(json::value_from_tag, json::value& jv, const Endpoint& e) {
  jv = json::object{{"id", e.id},
                    {"network_id", e.network_id},
                    {"network", e.network},
                    {"container_id", e.container_id},
                    {"ifname", e.ifname},
                    {"netns", e.netns},
                    {"node", e.node},
                    {"address", e.address.str()},
                    {"gateway", e.gateway.str()},
                    {"mac", e.mac},
                    {"mtu", e.mtu},
                    {"bridge", e.bridge},
                    {"host_ifname", e.host_ifname},
                    {"attach", e.attach},
                    {"name", e.name},
                    {"aliases", to_array(e.aliases)},
                    {"service", e.service},
                    {"labels", to_object(e.labels)},
                    {"owner", e.owner},
                    {"cni_config", e.cni_config},
                    {"dns_servers", to_array(e.dns_servers)},
                    {"dns_search", to_array(e.dns_search)}};
}

Endpoint tag_invoke(json::value_to_tag<Endpoint>, const json::value& jv) {
  const auto& o = as_object(jv, "endpoint");
  Endpoint e;
  e.id = required_string(o, "id");
  e.network_id = required_string(o, "network_id");
  e.network = string_or(o, "network", "");
  e.container_id = required_string(o, "container_id");
  e.ifname = required_string(o, "ifname");
  e.netns = string_or(o, "netns", "");
  e.node = string_or(o, "node", "");
  e.address = prefix_field(o, "address");
  e.gateway = address_field(o, "gateway");
  e.mac = string_or(o, "mac", "");
  e.mtu = static_cast<unsigned>(optional_uint(o, "mtu", 65535).value_or(0));
  e.bridge = string_or(o, "bridge", "");
  e.host_ifname = string_or(o, "host_ifname", "");
  e.attach = bool_or(o, "attach", true);
  e.name = string_or(o, "name", "");
  e.aliases = string_array(o, "aliases");
  e.service = string_or(o, "service", "");
  e.labels = string_map(o, "labels");
  e.owner = string_or(o, "owner", "");
  e.cni_config = string_or(o, "cni_config", "");
  for (const std::string& s : string_array(o, "dns_servers")) e.dns_servers.push_back(Ipv4Address::parse(s));
  e.dns_search = string_array(o, "dns_search");
  return e;
}

void tag_invoke(json::value_from_tag, json::value& jv, const GcRequest& g) {
  json::array a;
  for (const auto& k : g.valid) a.push_back(json::value_from(k));
  jv = json::object{{"valid", std::move(a)}, {"cni_config", g.cni_config}};
}

GcRequest tag_invoke(json::value_to_tag<GcRequest>, const json::value& jv) {
  const auto& o = as_object(jv, "gc request");
  GcRequest g;
  const json::value* v = find(o, "valid");
  if (!v || !v->is_array()) throw Error(Errc::invalid_argument, "field \"valid\": expected an array");
  for (const auto& e : v->get_array()) g.valid.push_back(json::value_to<AttachmentKey>(e));
  g.cni_config = string_or(o, "cni_config", "");
  return g;
}

void tag_invoke(json::value_from_tag, json::value& jv, const GcResult& g) {
  json::array a;
  for (const auto& k : g.released) a.push_back(json::value_from(k));
  jv = json::object{{"released", std::move(a)}};
}

GcResult tag_invoke(json::value_to_tag<GcResult>, const json::value& jv) {
  const auto& o = as_object(jv, "gc result");
  GcResult g;
  if (const json::value* v = find(o, "released"); v && v->is_array()) {
    for (const auto& e : v->get_array()) g.released.push_back(json::value_to<AttachmentKey>(e));
  }
  return g;
}

void tag_invoke(json::value_from_tag, json::value& jv, const Status& s) {
  jv = json::object{{"node_id", s.node_id},   {"node_name", s.node_name}, {"version", s.version},
                    {"networks", s.networks}, {"endpoints", s.endpoints}};
}

Status tag_invoke(json::value_to_tag<Status>, const json::value& jv) {
  const auto& o = as_object(jv, "status");
  Status s;
  s.node_id = string_or(o, "node_id", "");
  s.node_name = string_or(o, "node_name", "");
  s.version = string_or(o, "version", "");
  s.networks = optional_uint(o, "networks", UINT32_MAX).value_or(0);
  s.endpoints = optional_uint(o, "endpoints", UINT32_MAX).value_or(0);
  return s;
}

void tag_invoke(json::value_from_tag, json::value& jv, const ErrorBody& e) {
  jv = json::object{{"code", e.code}, {"message", e.message}};
}

ErrorBody tag_invoke(json::value_to_tag<ErrorBody>, const json::value& jv) {
  const auto& o = as_object(jv, "error");
  return ErrorBody{string_or(o, "code", "internal"), string_or(o, "message", "")};
}

namespace {

// "published" present (even null): published, on a port chosen when 0.
ServicePort decode_port(const json::value& v, const std::string& where) {
  const auto& o = as_object(v, where);
  ServicePort p;
  auto target = optional_uint(o, "target", 65535);
  if (!target || *target == 0) throw Error(Errc::invalid_argument, where + ".target: a port 1-65535 is required");
  p.target = static_cast<uint16_t>(*target);
  p.protocol = string_or(o, "protocol", "tcp");
  if (p.protocol != "tcp" && p.protocol != "udp") {
    throw Error(Errc::invalid_argument, where + ".protocol: \"tcp\" or \"udp\", not \"" + p.protocol + "\"");
  }
  const bool published = find(o, "published") != nullptr;
  p.publish_mode = string_or(o, "publish_mode", published ? "ingress" : "");
  if (published) p.published = static_cast<uint16_t>(optional_uint(o, "published", 65535).value_or(0));
  if (p.publish_mode != "" && p.publish_mode != "host" && p.publish_mode != "ingress") {
    throw Error(Errc::invalid_argument, where + ".publish_mode: \"host\" or \"ingress\", not \"" + p.publish_mode + "\"");
  }
  if (!p.publish_mode.empty() && !p.published) p.published = 0;
  return p;
}

std::vector<ServicePort> decode_ports(const json::object& o) {
  std::vector<ServicePort> ports;
  const json::value* v = find(o, "ports");
  if (!v) return ports;
  if (!v->is_array()) throw Error(Errc::invalid_argument, "ports: expected an array");
  for (size_t i = 0; i < v->get_array().size(); ++i) {
    ports.push_back(decode_port(v->get_array()[i], "ports[" + std::to_string(i) + "]"));
  }
  return ports;
}

json::array ports_json(const std::vector<ServicePort>& ports) {
  json::array a;
  for (const auto& p : ports) a.push_back(json::value_from(p));
  return a;
}

}  // namespace

void tag_invoke(json::value_from_tag, json::value& jv, const ServicePort& p) {
  json::object o{{"target", p.target}, {"protocol", p.protocol}};
  if (!p.publish_mode.empty()) {
    o["published"] = p.published.value_or(0);  // 0: chosen per task (host mode), see the tasks
    o["publish_mode"] = p.publish_mode;
  }
  jv = std::move(o);
}

ServicePort tag_invoke(json::value_to_tag<ServicePort>, const json::value& jv) { return decode_port(jv, "port"); }

void tag_invoke(json::value_from_tag, json::value& jv, const HealthCheck& h) {
  jv = json::object{{"kind", h.kind}, {"port", h.port}, {"path", h.path}, {"interval_s", h.interval_s},
                    {"retries", h.retries}};
}

HealthCheck tag_invoke(json::value_to_tag<HealthCheck>, const json::value& jv) {
  const auto& o = as_object(jv, "health");
  HealthCheck h;
  h.kind = string_or(o, "kind", "");
  if (h.kind.empty()) return h;
  if (h.kind != "tcp" && h.kind != "http") {
    throw Error(Errc::invalid_argument, "health.kind: \"tcp\" or \"http\", not \"" + h.kind + "\"");
  }
  auto port = optional_uint(o, "port", 65535);
  if (!port || *port == 0) throw Error(Errc::invalid_argument, "health.port: a port 1-65535 is required");
  h.port = static_cast<uint16_t>(*port);
  h.path = string_or(o, "path", h.kind == "http" ? "/" : "");
  if (h.kind == "http" &&
      (h.path.empty() || h.path[0] != '/' || h.path.find_first_of(" \r\n") != std::string::npos)) {
    throw Error(Errc::invalid_argument, "health.path: an absolute path without spaces, like /healthz");
  }
  h.interval_s = static_cast<unsigned>(optional_uint(o, "interval_s", 3600).value_or(5));
  h.retries = static_cast<unsigned>(optional_uint(o, "retries", 100).value_or(3));
  if (h.interval_s == 0 || h.retries == 0) {
    throw Error(Errc::invalid_argument, "health.interval_s and health.retries must be at least 1");
  }
  return h;
}

void tag_invoke(json::value_from_tag, json::value& jv, const ServiceCreate& s) {
  json::object o{{"name", s.name}, {"networks", to_array(s.networks)}, {"endpoint_mode", s.endpoint_mode},
                 {"ports", ports_json(s.ports)}};
  if (!s.health.kind.empty()) {
    json::object h = json::value_from(s.health).as_object();
    if (s.health.path.empty()) h.erase("path");
    o["health"] = std::move(h);
  }
  jv = std::move(o);
}

ServiceCreate tag_invoke(json::value_to_tag<ServiceCreate>, const json::value& jv) {
  const auto& o = as_object(jv, "service");
  ServiceCreate s;
  s.name = required_string(o, "name");
  s.endpoint_mode = string_or(o, "endpoint_mode", "vip");
  if (s.endpoint_mode != "vip" && s.endpoint_mode != "dnsrr") {
    throw Error(Errc::invalid_argument, "endpoint_mode: \"vip\" or \"dnsrr\", not \"" + s.endpoint_mode + "\"");
  }
  s.networks = string_array(o, "networks");
  if (s.networks.empty()) throw Error(Errc::invalid_argument, "networks: at least one network is required");
  s.ports = decode_ports(o);
  if (const json::value* h = find(o, "health")) s.health = json::value_to<HealthCheck>(*h);
  return s;
}

void tag_invoke(json::value_from_tag, json::value& jv, const ServiceUpdate& u) {
  jv = json::object{{"ports", ports_json(u.ports)}};
}

ServiceUpdate tag_invoke(json::value_to_tag<ServiceUpdate>, const json::value& jv) {
  const auto& o = as_object(jv, "service update");
  for (const auto& [key, value] : o) {
    if (key != "ports") throw Error(Errc::invalid_argument, "field \"" + std::string(key) + "\": only ports can be updated");
  }
  return ServiceUpdate{decode_ports(o)};
}

void tag_invoke(json::value_from_tag, json::value& jv, const ServiceAttach& a) {
  jv = json::object{{"network", a.network}, {"container_id", a.container_id}, {"ifname", a.ifname}};
}

ServiceAttach tag_invoke(json::value_to_tag<ServiceAttach>, const json::value& jv) {
  const auto& o = as_object(jv, "attach");
  return ServiceAttach{required_string(o, "network"), required_string(o, "container_id"),
                       string_or(o, "ifname", "eth0")};
}

void tag_invoke(json::value_from_tag, json::value& jv, const ServiceAttached& a) {
  jv = json::object{{"container_id", a.container_id}, {"network", a.network}, {"service", a.service}};
}

ServiceAttached tag_invoke(json::value_to_tag<ServiceAttached>, const json::value& jv) {
  const auto& o = as_object(jv, "attach reply");
  return ServiceAttached{string_or(o, "container_id", ""), string_or(o, "network", ""), string_or(o, "service", "")};
}

void tag_invoke(json::value_from_tag, json::value& jv, const Service& s) {
  json::object vips;
  for (const auto& v : s.vips) vips[v.network] = v.address;
  json::object o{{"id", s.id},
                 {"name", s.name},
                 {"endpoint_mode", s.endpoint_mode},
                 {"networks", to_array(s.networks)},
                 {"vips", std::move(vips)},
                 {"ingress_vip", s.ingress_vip ? json::value(*s.ingress_vip) : json::value(nullptr)},
                 {"ports", ports_json(s.ports)},
                 {"health", json::value_from(s.health)},
                 {"task_count", s.task_count},
                 {"healthy_count", s.healthy_count}};
  if (s.tasks) {
    json::array tasks;
    for (const auto& t : *s.tasks) {
      json::array host_ports;
      for (const auto& p : t.host_ports) {
        host_ports.push_back(json::object{
            {"protocol", p.protocol}, {"published", p.published}, {"target", p.target}, {"origin", p.origin}});
      }
      tasks.push_back(json::object{{"container_id", t.container_id},
                                   {"network", t.network},
                                   {"node", t.node},
                                   {"node_alive", t.node_alive},
                                   {"ip", t.ip},
                                   {"healthy", t.healthy},
                                   {"host_ports", std::move(host_ports)}});
    }
    o["tasks"] = std::move(tasks);
  }
  jv = std::move(o);
}

Service tag_invoke(json::value_to_tag<Service>, const json::value& jv) {
  const auto& o = as_object(jv, "service");
  Service s;
  s.id = required_string(o, "id");
  s.name = required_string(o, "name");
  s.endpoint_mode = string_or(o, "endpoint_mode", "vip");
  s.networks = string_array(o, "networks");
  if (const json::value* v = find(o, "vips"); v && !v->is_null()) {
    for (const auto& [network, address] : as_object(*v, "vips")) {
      if (!address.is_string()) throw Error(Errc::invalid_argument, "vips: the address of " + std::string(network));
      s.vips.push_back(ServiceVip{std::string(network), std::string(address.get_string())});
    }
  }
  s.ingress_vip = optional_string(o, "ingress_vip");
  s.ports = decode_ports(o);
  if (const json::value* h = find(o, "health"); h && !h->is_null()) s.health = json::value_to<HealthCheck>(*h);
  s.task_count = optional_uint(o, "task_count", UINT32_MAX).value_or(0);
  s.healthy_count = optional_uint(o, "healthy_count", UINT32_MAX).value_or(0);
  if (const json::value* v = find(o, "tasks"); v && !v->is_null()) {
    if (!v->is_array()) throw Error(Errc::invalid_argument, "tasks: expected an array");
    s.tasks.emplace();
    for (const auto& item : v->get_array()) {
      const auto& t = as_object(item, "task");
      ServiceTask task{string_or(t, "container_id", ""), string_or(t, "network", ""), string_or(t, "node", ""),
                       bool_or(t, "node_alive", false),  string_or(t, "ip", ""),      bool_or(t, "healthy", true),
                       {}};
      if (const json::value* hp = find(t, "host_ports"); hp && hp->is_array()) {
        for (const auto& p : hp->get_array()) {
          const auto& po = as_object(p, "host port");
          task.host_ports.push_back(TaskPort{string_or(po, "protocol", ""),
                                             static_cast<uint16_t>(optional_uint(po, "published", 65535).value_or(0)),
                                             static_cast<uint16_t>(optional_uint(po, "target", 65535).value_or(0)),
                                             string_or(po, "origin", "")});
        }
      }
      s.tasks->push_back(std::move(task));
    }
  }
  return s;
}

}  // namespace swarmnet::api
