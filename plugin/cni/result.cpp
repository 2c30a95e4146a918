#include "plugin/cni/result.hpp"

#include "plugin/cni/json_path.hpp"

namespace swarmnet::cni {

namespace json = boost::json;
using namespace json_path;

namespace {

json::array to_array(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

// 0.3.x and 0.4.0 tag each ip with its family; the spec dropped it in 1.0.0
// since the address says it.
std::string ip_version_of(std::string_view cidr) {
  return cidr.find(':') == std::string_view::npos ? "4" : "6";
}

Interface decode_interface(const json::value& v, std::string_view path) {
  const auto& o = object(v, path);
  Interface i;
  i.name = opt_string(o, path, "name").value_or("");
  if (i.name.empty()) throw CniError(code::kInvalidConfig, join(path, "name") + ": missing");
  i.mac = opt_string(o, path, "mac").value_or("");
  i.sandbox = opt_string(o, path, "sandbox").value_or("");
  i.mtu = opt_uint(o, path, "mtu", 65535);
  i.socket_path = opt_string(o, path, "socketPath").value_or("");
  i.pci_id = opt_string(o, path, "pciID").value_or("");
  return i;
}

IpConfig decode_ip(const json::value& v, std::string_view path) {
  const auto& o = object(v, path);
  IpConfig ip;
  ip.address = opt_string(o, path, "address").value_or("");
  if (ip.address.empty()) throw CniError(code::kInvalidConfig, join(path, "address") + ": missing");
  ip.gateway = opt_string(o, path, "gateway").value_or("");
  ip.interface = opt_uint(o, path, "interface", 1u << 20);
  // "version" (0.3.x/0.4.0) is implied by the address: read and dropped.
  opt_string(o, path, "version");
  return ip;
}

}  // namespace

Route decode_route(const json::value& v, std::string_view path) {
  const auto& o = object(v, path);
  Route r;
  r.dst = opt_string(o, path, "dst").value_or("");
  if (r.dst.empty()) throw CniError(code::kInvalidConfig, join(path, "dst") + ": missing");
  r.gw = opt_string(o, path, "gw").value_or("");
  r.mtu = opt_uint(o, path, "mtu", 65535);
  r.advmss = opt_uint(o, path, "advmss", 65535);
  r.priority = opt_uint(o, path, "priority", 0xffffffffu);
  r.table = opt_uint(o, path, "table", 0xffffffffu);
  r.scope = opt_int(o, path, "scope");
  return r;
}

Dns decode_dns(const json::value& v, std::string_view path) {
  const auto& o = object(v, path);
  Dns d;
  d.nameservers = string_list(o, path, "nameservers");
  d.domain = opt_string(o, path, "domain").value_or("");
  d.search = string_list(o, path, "search");
  d.options = string_list(o, path, "options");
  return d;
}

Result decode_result(const json::value& v, std::string_view path) {
  const auto& o = object(v, path);
  Result r;
  if (const auto* a = opt_array(o, path, "interfaces")) {
    std::string p = join(path, "interfaces");
    for (size_t i = 0; i < a->size(); ++i)
      r.interfaces.push_back(decode_interface((*a)[i], index(p, i)));
  }
  if (const auto* a = opt_array(o, path, "ips")) {
    std::string p = join(path, "ips");
    for (size_t i = 0; i < a->size(); ++i) {
      r.ips.push_back(decode_ip((*a)[i], index(p, i)));
      if (r.ips.back().interface && *r.ips.back().interface >= r.interfaces.size()) {
        throw CniError(code::kInvalidConfig, join(index(p, i), "interface") + ": index " +
                                                 std::to_string(*r.ips.back().interface) +
                                                 " is past the interfaces list");
      }
    }
  }
  if (const auto* a = opt_array(o, path, "routes")) {
    std::string p = join(path, "routes");
    for (size_t i = 0; i < a->size(); ++i) r.routes.push_back(decode_route((*a)[i], index(p, i)));
  }
  if (const json::value* d = field(o, "dns")) r.dns = decode_dns(*d, join(path, "dns"));
  return r;
}

json::object encode_result(const Result& r, SpecVersion version) {
  const bool v11 = version >= SpecVersion::v1_1_0;
  const bool tagged_ips = version < SpecVersion::v1_0_0;
  json::object out;
  out["cniVersion"] = to_string(version);
  if (!r.interfaces.empty()) {
    json::array a;
    for (const auto& i : r.interfaces) {
      json::object o;
      o["name"] = i.name;
      if (!i.mac.empty()) o["mac"] = i.mac;
      if (v11 && i.mtu) o["mtu"] = *i.mtu;
      if (!i.sandbox.empty()) o["sandbox"] = i.sandbox;
      if (v11 && !i.socket_path.empty()) o["socketPath"] = i.socket_path;
      if (v11 && !i.pci_id.empty()) o["pciID"] = i.pci_id;
      a.emplace_back(std::move(o));
    }
    out["interfaces"] = std::move(a);
  }
  if (!r.ips.empty()) {
    json::array a;
    for (const auto& ip : r.ips) {
      json::object o;
      if (tagged_ips) o["version"] = ip_version_of(ip.address);
      if (ip.interface) o["interface"] = *ip.interface;
      o["address"] = ip.address;
      if (!ip.gateway.empty()) o["gateway"] = ip.gateway;
      a.emplace_back(std::move(o));
    }
    out["ips"] = std::move(a);
  }
  if (!r.routes.empty()) {
    json::array a;
    for (const auto& rt : r.routes) {
      json::object o;
      o["dst"] = rt.dst;
      if (!rt.gw.empty()) o["gw"] = rt.gw;
      if (v11) {
        if (rt.mtu) o["mtu"] = *rt.mtu;
        if (rt.advmss) o["advmss"] = *rt.advmss;
        if (rt.priority) o["priority"] = *rt.priority;
        if (rt.table) o["table"] = *rt.table;
        if (rt.scope) o["scope"] = *rt.scope;
      }
      a.emplace_back(std::move(o));
    }
    out["routes"] = std::move(a);
  }
  // The spec shows dns as always present; an empty object is valid and what
  // the reference plugins print.
  json::object dns;
  if (!r.dns.nameservers.empty()) dns["nameservers"] = to_array(r.dns.nameservers);
  if (!r.dns.domain.empty()) dns["domain"] = r.dns.domain;
  if (!r.dns.search.empty()) dns["search"] = to_array(r.dns.search);
  if (!r.dns.options.empty()) dns["options"] = to_array(r.dns.options);
  out["dns"] = std::move(dns);
  return out;
}

std::string encode_result_text(const Result& r, SpecVersion version) {
  return json::serialize(encode_result(r, version));
}

Result append_result(Result prev, const Result& ours) {
  const auto shift = static_cast<unsigned>(prev.interfaces.size());
  prev.interfaces.insert(prev.interfaces.end(), ours.interfaces.begin(), ours.interfaces.end());
  for (IpConfig ip : ours.ips) {
    if (ip.interface) *ip.interface += shift;
    prev.ips.push_back(std::move(ip));
  }
  prev.routes.insert(prev.routes.end(), ours.routes.begin(), ours.routes.end());
  if (prev.dns.nameservers.empty()) prev.dns.nameservers = ours.dns.nameservers;
  if (prev.dns.domain.empty()) prev.dns.domain = ours.dns.domain;
  if (prev.dns.search.empty()) prev.dns.search = ours.dns.search;
  if (prev.dns.options.empty()) prev.dns.options = ours.dns.options;
  return prev;
}

}  // namespace swarmnet::cni
