#include "plugin/docker/protocol.hpp"

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::docker {

namespace jf = json_fields;

namespace {

[[noreturn]] void bad(const std::string& message) {
  throw Error(Errc::invalid_argument, message);
}

const json::object& body_object(const json::value& body) {
  return jf::as_object(body, "request body");
}

std::string required_id(const json::object& o, std::string_view key) {
  std::string id = jf::required_string(o, key);
  check_docker_id(id, key);
  return id;
}

// Options maps: Docker sends map[string]string for IPAM, and objects whose
// values may be anything for the network driver; only strings are kept.
std::map<std::string, std::string> string_map(const json::object& o, std::string_view key) {
  std::map<std::string, std::string> out;
  const json::value* v = jf::find(o, key);
  if (!v || v->is_null()) return out;
  if (!v->is_object()) bad("field \"" + std::string(key) + "\": expected an object");
  for (const auto& [k, val] : v->get_object()) {
    if (!val.is_string()) {
      bad("field \"" + std::string(key) + "\": value of \"" + std::string(k) +
          "\" is not a string");
    }
    out.emplace(std::string(k), std::string(val.get_string()));
  }
  return out;
}

const json::object* optional_object(const json::object& o, std::string_view key) {
  const json::value* v = jf::find(o, key);
  if (!v || v->is_null()) return nullptr;
  if (!v->is_object()) bad("field \"" + std::string(key) + "\": expected an object");
  return &v->get_object();
}

Ipv4Prefix prefix_field(const std::string& text, std::string_view key) {
  try {
    return Ipv4Prefix::parse(text);
  } catch (const Error& e) {
    bad("field \"" + std::string(key) + "\": " + e.what());
  }
}

std::optional<Ipv4Address> optional_address(const json::object& o, std::string_view key) {
  auto text = jf::optional_string(o, key);
  if (!text || text->empty()) return std::nullopt;
  // Docker sends a bare address; tolerate a CIDR (some callers send one).
  std::string s = text->substr(0, text->find('/'));
  auto a = Ipv4Address::try_parse(s);
  if (!a) bad("field \"" + std::string(key) + "\": \"" + *text + "\" is not an IPv4 address");
  return a;
}

std::string proto_name(uint64_t number) {
  switch (number) {
    case 6: return "tcp";
    case 17: return "udp";
    case 132: return "sctp";
  }
  bad("port binding: unknown protocol number " + std::to_string(number));
}

uint16_t port_field(const json::object& o, std::string_view key) {
  return static_cast<uint16_t>(jf::optional_uint(o, key, 65535).value_or(0));
}

std::vector<PortBinding> port_bindings(const json::object& options) {
  std::vector<PortBinding> out;
  const json::value* v = jf::find(options, kPortMap);
  if (!v || v->is_null()) return out;
  if (!v->is_array()) bad(std::string("option \"") + kPortMap + "\": expected an array");
  for (const auto& e : v->get_array()) {
    const auto& b = jf::as_object(e, std::string("an element of ") + kPortMap);
    PortBinding p;
    p.proto = proto_name(jf::optional_uint(b, "Proto", 255).value_or(6));
    p.container_port = port_field(b, "Port");
    p.host_ip = optional_address(b, "HostIP");
    p.host_port = port_field(b, "HostPort");
    p.host_port_end = port_field(b, "HostPortEnd");
    if (p.container_port == 0) bad("port binding without a container port");
    if (p.host_port == 0) {
      // `-p 80` (no host port): Docker's bridge picks one; we publish the
      // container port itself on the host, as swarm's host mode does.
      p.host_port = p.container_port;
    }
    if (p.host_port_end == 0) p.host_port_end = p.host_port;
    if (p.host_port_end < p.host_port) {
      bad("port binding: HostPortEnd " + std::to_string(p.host_port_end) + " below HostPort " +
          std::to_string(p.host_port));
    }
    if (p.host_port_end != p.host_port) {
      // A range means "any free port of it" in Docker: take the first.
      p.host_port_end = p.host_port;
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace

Protocol protocol_of(std::string_view method) {
  if (method.starts_with("/Plugin.")) return Protocol::plugin;
  if (method.starts_with("/NetworkDriver.")) return Protocol::network;
  if (method.starts_with("/IpamDriver.")) return Protocol::ipam;
  return Protocol::unknown;
}

json::object error_reply(Protocol protocol, const std::string& message) {
  json::object o;
  o[protocol == Protocol::ipam ? "Error" : "Err"] = message;
  return o;
}

void check_docker_id(const std::string& id, std::string_view field) {
  bool ok = !id.empty() && id.size() <= 64;
  for (char c : id) ok = ok && std::isalnum(static_cast<unsigned char>(c));
  if (!ok) {
    bad("field \"" + std::string(field) + "\": \"" + id.substr(0, 80) +
        "\" is not a Docker id (1 to 64 letters and digits)");
  }
}

bool RequestAddress::gateway() const {
  auto it = options.find(kRequestAddressType);
  return it != options.end() && it->second == kGatewayAddressType;
}

RequestPool parse_request_pool(const json::value& body) {
  const auto& o = body_object(body);
  RequestPool r;
  r.address_space = jf::string_or(o, "AddressSpace", "");
  std::string pool = jf::string_or(o, "Pool", "");
  if (!pool.empty()) {
    try {
      r.pool = Ipv4Prefix::parse_network(pool);
    } catch (const Error& e) {
      bad(std::string("field \"Pool\": ") + e.what());
    }
  }
  if (std::string sub = jf::string_or(o, "SubPool", ""); !sub.empty()) {
    try {
      r.sub_pool = Ipv4Prefix::parse_network(sub);
    } catch (const Error& e) {
      bad(std::string("field \"SubPool\" (--ip-range): ") + e.what());
    }
  }
  r.options = string_map(o, "Options");
  r.v6 = jf::bool_or(o, "V6", false);
  return r;
}

ReleasePool parse_release_pool(const json::value& body) {
  return {jf::required_string(body_object(body), "PoolID")};
}

RequestAddress parse_request_address(const json::value& body) {
  const auto& o = body_object(body);
  RequestAddress r;
  r.pool_id = jf::required_string(o, "PoolID");
  r.address = optional_address(o, "Address");
  r.options = string_map(o, "Options");
  return r;
}

ReleaseAddress parse_release_address(const json::value& body) {
  const auto& o = body_object(body);
  ReleaseAddress r;
  r.pool_id = jf::required_string(o, "PoolID");
  auto a = optional_address(o, "Address");
  if (!a) bad("missing field \"Address\"");
  r.address = *a;
  return r;
}

CreateNetwork parse_create_network(const json::value& body) {
  const auto& o = body_object(body);
  CreateNetwork r;
  r.network_id = required_id(o, "NetworkID");
  if (const auto* opts = optional_object(o, "Options")) {
    r.generic_options = string_map(*opts, kGenericOptions);
    if (const json::value* v = jf::find(*opts, kInternalOption); v && !v->is_null()) {
      if (!v->is_bool()) bad(std::string("option \"") + kInternalOption + "\": expected true or false");
      r.internal = v->get_bool();
    }
  }
  if (const json::value* v = jf::find(o, "IPv4Data"); v && !v->is_null()) {
    if (!v->is_array()) bad("field \"IPv4Data\": expected an array");
    for (const auto& e : v->get_array()) {
      const auto& d = jf::as_object(e, "an element of IPv4Data");
      IpamData data;
      data.address_space = jf::string_or(d, "AddressSpace", "");
      data.pool = prefix_field(jf::required_string(d, "Pool"), "IPv4Data.Pool");
      if (auto gw = jf::optional_string(d, "Gateway"); gw && !gw->empty()) {
        data.gateway = prefix_field(*gw, "IPv4Data.Gateway");
      }
      r.ipv4.push_back(data);
    }
  }
  if (const json::value* v = jf::find(o, "IPv6Data"); v && !v->is_null()) {
    if (!v->is_array()) bad("field \"IPv6Data\": expected an array");
    r.ipv6_pools = v->get_array().size();
  }
  return r;
}

NetworkRef parse_network_ref(const json::value& body) {
  return {required_id(body_object(body), "NetworkID")};
}

CreateEndpoint parse_create_endpoint(const json::value& body) {
  const auto& o = body_object(body);
  CreateEndpoint r;
  r.network_id = required_id(o, "NetworkID");
  r.endpoint_id = required_id(o, "EndpointID");
  if (const auto* itf = optional_object(o, "Interface")) {
    if (auto a = jf::optional_string(*itf, "Address"); a && !a->empty()) {
      r.address = prefix_field(*a, "Interface.Address");
    }
    r.has_ipv6 = !jf::string_or(*itf, "AddressIPv6", "").empty();
    r.mac = jf::string_or(*itf, "MacAddress", "");
  }
  return r;
}

EndpointRef parse_endpoint_ref(const json::value& body) {
  const auto& o = body_object(body);
  return {required_id(o, "NetworkID"), required_id(o, "EndpointID")};
}

Join parse_join(const json::value& body) {
  const auto& o = body_object(body);
  Join r;
  r.network_id = required_id(o, "NetworkID");
  r.endpoint_id = required_id(o, "EndpointID");
  r.sandbox_key = jf::required_string(o, "SandboxKey");
  return r;
}

ProgramExternalConnectivity parse_program_external_connectivity(const json::value& body) {
  const auto& o = body_object(body);
  ProgramExternalConnectivity r;
  r.network_id = required_id(o, "NetworkID");
  r.endpoint_id = required_id(o, "EndpointID");
  if (const auto* opts = optional_object(o, "Options")) r.ports = port_bindings(*opts);
  return r;
}

json::object activate_reply() {
  return {{"Implements", json::array{"NetworkDriver", "IpamDriver"}}};
}

json::object network_capabilities_reply() {
  // "local": Docker keeps the network in its own local store on each host;
  // the cluster-wide state is swarmnetd's, not a Docker KV store's.
  return {{"Scope", "local"}, {"ConnectivityScope", "global"}};
}

json::object ipam_capabilities_reply() {
  // No MAC from Docker: swarmnetd derives the MAC from the address, and
  // remote hosts program their FDB with that MAC.
  return {{"RequiresMACAddress", false}, {"RequiresRequestReplay", false}};
}

json::object address_spaces_reply() {
  return {{"LocalDefaultAddressSpace", kLocalAddressSpace},
          {"GlobalDefaultAddressSpace", kGlobalAddressSpace}};
}

json::object request_pool_reply(const std::string& pool_id, const Ipv4Prefix& pool,
                                 Ipv4Address gateway) {
  // Handing the gateway back in Data spares a gateway RequestAddress, and
  // Docker then never releases it either (it is the network's, not ours).
  json::object data;
  data[kGatewayAddressType] = Ipv4Prefix(gateway, pool.length()).str();
  return {{"PoolID", pool_id}, {"Pool", pool.str()}, {"Data", std::move(data)}};
}

json::object request_address_reply(const Ipv4Prefix& address) {
  return {{"Address", address.str()}, {"Data", json::object{}}};
}

json::object create_endpoint_reply(const std::string& mac) {
  if (mac.empty()) return {};
  return {{"Interface", json::object{{"MacAddress", mac}}}};
}

json::object join_reply(const std::string& src_name, const std::string& dst_prefix,
                        std::optional<Ipv4Address> gateway) {
  json::object o{{"InterfaceName", json::object{{"SrcName", src_name}, {"DstPrefix", dst_prefix}}},
                 {"StaticRoutes", json::array{}},
                 {"DisableGatewayService", false}};
  if (gateway) o["Gateway"] = gateway->str();
  return o;
}

}  // namespace swarmnet::docker
