#include "daemon/records.hpp"

#include <cstdio>

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::daemon {

using namespace json_fields;

namespace {
Ipv4Prefix prefix_of(const json::object& o, std::string_view key) {
  return Ipv4Prefix::parse(required_string(o, key));
}
Ipv4Address address_of(const json::object& o, std::string_view key) {
  return Ipv4Address::parse(required_string(o, key));
}
}  // namespace

json::value to_json(const Version& v, json::storage_ptr sp) {
  return json::object({{"lamport", v.lamport}, {"node", v.node}}, std::move(sp));
}

void from_json(const json::value& jv, Version& v) {
  const auto& o = as_object(jv, "version");
  v.lamport = optional_uint(o, "lamport", UINT64_MAX).value_or(0);
  v.node = required_string(o, "node");
}

json::value to_json(const NodeRecord& n) {
  json::array inbound;
  for (uint32_t g : n.esp_inbound) inbound.emplace_back(g);
  return json::object{{"id", n.id},
                      {"version", n.version},
                      {"esp_missing", n.esp_missing},
                      {"esp_inbound", std::move(inbound)},
                      {"keyring_version", n.keyring_version}};
}

void from_json(const json::value& jv, NodeRecord& n) {
  const auto& o = as_object(jv, "node record");
  n.id = required_string(o, "id");
  n.version = optional_uint(o, "version", UINT64_MAX).value_or(0);
  n.esp_missing = string_or(o, "esp_missing", "");
  n.keyring_version = optional_uint(o, "keyring_version", UINT64_MAX).value_or(0);
  n.esp_inbound.clear();
  if (const json::value* a = find(o, "esp_inbound")) {
    // A keyring holds a few keys at a time; a longer list is damage.
    if (!a->is_array() || a->as_array().size() > 64) {
      throw Error(Errc::invalid_argument, "field \"esp_inbound\": expected an array of at most 64 generations");
    }
    for (const auto& g : a->as_array()) {
      uint64_t v = 0;
      if (g.is_int64() && g.as_int64() > 0) v = static_cast<uint64_t>(g.as_int64());
      if (g.is_uint64()) v = g.as_uint64();
      if (v == 0 || v > UINT32_MAX) {
        throw Error(Errc::invalid_argument, "field \"esp_inbound\": expected key generations (1 to 2^32-1)");
      }
      n.esp_inbound.push_back(static_cast<uint32_t>(v));
    }
  }
}

json::value to_json(const NetworkRecord& n) {
  json::object o{{"id", n.id},
                 {"name", n.name},
                 {"subnet", n.subnet.str()},
                 {"gateway", n.gateway.str()},
                 {"mtu", n.mtu},
                 {"vni", n.vni},
                 {"internal", n.internal},
                 {"encrypted", n.encrypted},
                 {"ingress", n.ingress},
                 {"block_length", n.block_length},
                 {"created_by", n.created_by}};
  if (n.ip_range) o["ip_range"] = n.ip_range->str();
  return o;
}

void from_json(const json::value& jv, NetworkRecord& n) {
  const auto& o = as_object(jv, "network record");
  n.id = required_string(o, "id");
  n.name = required_string(o, "name");
  n.subnet = prefix_of(o, "subnet");
  n.gateway = address_of(o, "gateway");
  n.mtu = static_cast<unsigned>(optional_uint(o, "mtu", 65535).value_or(0));
  n.vni = static_cast<uint32_t>(optional_uint(o, "vni", 0xffffff).value_or(0));
  n.internal = bool_or(o, "internal", false);
  n.encrypted = bool_or(o, "encrypted", false);
  n.ingress = bool_or(o, "ingress", false);
  n.block_length = static_cast<unsigned>(optional_uint(o, "block_length", 32).value_or(0));
  n.ip_range.reset();
  if (auto r = optional_string(o, "ip_range")) n.ip_range = Ipv4Prefix::parse_network(*r);
  n.created_by = string_or(o, "created_by", "");
}

json::value to_json(const BlockRecord& b) {
  return json::object{{"network_id", b.network_id}, {"block", b.block.str()}, {"owner", b.owner}};
}

void from_json(const json::value& jv, BlockRecord& b) {
  const auto& o = as_object(jv, "block record");
  b.network_id = required_string(o, "network_id");
  b.block = prefix_of(o, "block");
  b.owner = required_string(o, "owner");
}

const Labels::Map& Labels::none() {
  static const Map empty;
  return empty;
}

std::string EndpointRecord::mac() const {
  char buf[18];
  const uint32_t v = ip.value();
  std::snprintf(buf, sizeof(buf), "02:42:%02x:%02x:%02x:%02x", v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  return buf;
}

json::value to_json(const EndpointRecord& e, json::storage_ptr sp) {
  json::array aliases(sp);
  for (const auto& a : e.aliases) aliases.emplace_back(a);
  json::object labels(sp);
  for (const auto& [k, v] : e.labels) labels[k] = v;
  json::array host_ports(sp);
  for (const auto& p : e.host_ports) {
    host_ports.push_back(json::object(
        {{"protocol", p.protocol}, {"published", p.published}, {"target", p.target}, {"origin", p.origin}}, sp));
  }
  return json::object({{"id", e.id},
                      {"network_id", e.network_id},
                      {"node", e.node},
                      {"container_id", e.container_id},
                      {"ifname", e.ifname},
                      {"netns", e.netns},
                      {"ip", e.ip.str()},
                      {"mac", e.mac()},
                      {"host_ifname", e.host_ifname},
                      {"attach", e.attach},
                      {"name", e.name},
                      {"aliases", std::move(aliases)},
                      {"service", e.service},
                      {"labels", std::move(labels)},
                      {"healthy", e.healthy},
                      {"host_ports", std::move(host_ports)},
                      {"owner", e.owner},
                      {"cni_config", e.cni_config}},
                      sp);
}

void from_json(const json::value& jv, EndpointRecord& e) {
  const auto& o = as_object(jv, "endpoint record");
  e.id = required_string(o, "id");
  e.network_id = required_string(o, "network_id");
  e.node = required_string(o, "node");
  e.container_id = required_string(o, "container_id");
  e.ifname = required_string(o, "ifname");
  e.netns = string_or(o, "netns", "");
  e.ip = address_of(o, "ip");
  e.host_ifname = string_or(o, "host_ifname", "");
  e.attach = bool_or(o, "attach", true);
  e.name = string_or(o, "name", "");
  e.aliases = string_array(o, "aliases");
  e.service = string_or(o, "service", "");
  e.labels.clear();
  if (const json::value* l = find(o, "labels"); l && l->is_object()) {
    for (const auto& [k, v] : l->get_object()) {
      if (v.is_string()) e.labels.emplace(std::string(k), std::string(v.get_string()));
    }
  }
  e.healthy = bool_or(o, "healthy", true);
  e.host_ports.clear();
  if (const json::value* v = find(o, "host_ports"); v && v->is_array()) {
    for (const auto& item : v->get_array()) {
      const auto& po = as_object(item, "host port");
      HostPortRecord p;
      p.protocol = string_or(po, "protocol", "tcp");
      p.published = static_cast<uint16_t>(optional_uint(po, "published", 65535).value_or(0));
      p.target = static_cast<uint16_t>(optional_uint(po, "target", 65535).value_or(0));
      p.origin = string_or(po, "origin", "service");
      e.host_ports.push_back(p);
    }
  }
  e.owner = string_or(o, "owner", "");
  e.cni_config = string_or(o, "cni_config", "");
}

json::value to_json(const ServiceRecord& s) {
  json::array networks;
  for (const auto& n : s.networks) networks.emplace_back(n);
  json::object vips;
  for (const auto& [n, ip] : s.vips) vips[n] = ip.str();
  json::array ports;
  for (const auto& p : s.ports) {
    ports.push_back(json::object{{"target", p.target},
                                 {"protocol", p.protocol},
                                 {"published", p.published},
                                 {"publish_mode", p.publish_mode}});
  }
  json::object out{{"id", s.id},
                      {"name", s.name},
                      {"mode", s.mode == ServiceMode::dnsrr ? "dnsrr" : "vip"},
                      {"networks", std::move(networks)},
                      {"vips", std::move(vips)},
                      {"ports", std::move(ports)},
                      {"health", json::object{{"kind", s.health.kind},
                                              {"port", s.health.port},
                                              {"path", s.health.path},
                                              {"interval_s", s.health.interval_s},
                                              {"retries", s.health.retries}}},
                      {"created_by", s.created_by}};
  if (s.ingress_vip) out["ingress_vip"] = s.ingress_vip->str();
  return out;
}

void from_json(const json::value& jv, ServiceRecord& s) {
  const auto& o = as_object(jv, "service record");
  s.id = required_string(o, "id");
  s.name = required_string(o, "name");
  const std::string mode = string_or(o, "mode", "vip");
  if (mode != "vip" && mode != "dnsrr") throw Error(Errc::invalid_argument, "service mode must be vip or dnsrr");
  s.mode = mode == "dnsrr" ? ServiceMode::dnsrr : ServiceMode::vip;
  s.networks = string_array(o, "networks");
  s.vips.clear();
  if (const json::value* v = find(o, "vips"); v && v->is_object()) {
    for (const auto& [k, ip] : v->get_object()) {
      if (!ip.is_string()) throw Error(Errc::invalid_argument, "service vips: expected address strings");
      s.vips.emplace(std::string(k), Ipv4Address::parse(ip.get_string()));
    }
  }
  s.ports.clear();
  if (const json::value* v = find(o, "ports"); v && v->is_array()) {
    for (const auto& pv : v->get_array()) {
      const auto& po = as_object(pv, "service port");
      ServicePortRecord p;
      p.target = static_cast<uint16_t>(optional_uint(po, "target", 65535).value_or(0));
      p.protocol = string_or(po, "protocol", "tcp");
      p.published = static_cast<uint16_t>(optional_uint(po, "published", 65535).value_or(0));
      p.publish_mode = string_or(po, "publish_mode", "");
      s.ports.push_back(p);
    }
  }
  if (const json::value* h = find(o, "health"); h && h->is_object()) {
    const auto& ho = h->get_object();
    s.health.kind = string_or(ho, "kind", "");
    s.health.port = static_cast<uint16_t>(optional_uint(ho, "port", 65535).value_or(0));
    s.health.path = string_or(ho, "path", "");
    s.health.interval_s = static_cast<unsigned>(optional_uint(ho, "interval_s", 86400).value_or(5));
    s.health.retries = static_cast<unsigned>(optional_uint(ho, "retries", 1000).value_or(3));
  }
  s.created_by = string_or(o, "created_by", "");
  s.ingress_vip.reset();
  if (auto v = string_or(o, "ingress_vip", ""); !v.empty()) s.ingress_vip = Ipv4Address::parse(v);
}

json::value to_json(const CursorRecord& c) {
  return json::object{{"network_id", c.network_id}, {"last_allocated", c.last_allocated.str()}};
}

void from_json(const json::value& jv, CursorRecord& c) {
  const auto& o = as_object(jv, "cursor record");
  c.network_id = required_string(o, "network_id");
  c.last_allocated = address_of(o, "last_allocated");
}

std::string bridge_name(const std::string& network_id) { return "swn-" + network_id.substr(0, 11); }
std::string vxlan_name(const std::string& network_id) { return "swx-" + network_id.substr(0, 11); }

std::string block_key(const std::string& network_id, const Ipv4Prefix& block) {
  return network_id + "/" + block.str();
}

std::string endpoint_key(const std::string& network_id, const std::string& node,
                         const std::string& container_id, const std::string& ifname) {
  // NUL cannot appear in any of the parts (they come from JSON strings that
  // the API validates), so the key is unambiguous.
  std::string key = network_id;
  for (const auto* part : {&node, &container_id, &ifname}) {
    key += kKeySeparator;
    key += *part;
  }
  return key;
}

}  // namespace swarmnet::daemon
