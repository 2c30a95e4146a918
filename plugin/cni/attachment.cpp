#include "plugin/cni/attachment.hpp"

#include <algorithm>

#include "common/api_client.hpp"

namespace swarmnet::cni {

namespace {
// The DNS the container should use: what the network config says, if it
// says anything, else swarmnetd's DNS at the network's gateway with the
// network's name as search domain (so "web" also finds "web.NETWORK").
Dns dns_for(const api::Endpoint& ep, const NetConf& conf) {
  if (!conf.dns.nameservers.empty() || !conf.dns.search.empty()) return conf.dns;
  Dns d = conf.dns;
  for (const Ipv4Address& a : ep.dns_servers) d.nameservers.push_back(a.str());
  d.search = ep.dns_search;
  return d;
}
}  // namespace

namespace {

[[noreturn]] void differs(const std::string& what) {
  throw CniError(code::kCheckFailed, "CHECK failed: " + what);
}

const Result& require_prev(const NetConf& conf) {
  if (!conf.prev_result) {
    throw CniError(code::kInvalidConfig, "CHECK needs prevResult in the configuration");
  }
  return *conf.prev_result;
}

// "10.1.0.5/24" and "10.1.0.5/24" compare as values (leading zeros, etc.).
bool same_prefix(const std::string& a, const std::string& b) {
  try {
    return Ipv4Prefix::parse(a) == Ipv4Prefix::parse(b);
  } catch (const Error&) {
    return a == b;
  }
}

bool same_mac(std::string a, std::string b) {
  auto lower = [](std::string& s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  };
  lower(a);
  lower(b);
  return a == b;
}

bool is_ipv4(const std::string& cidr) {
  return cidr.find(':') == std::string::npos;
}

}  // namespace

std::string endpoints_target(const NetConf& conf) {
  return "/v1/networks/" + url_segment(conf.network) + "/endpoints";
}

std::string endpoint_target(const NetConf& conf, const Environment& env) {
  return endpoints_target(conf) + "/" + url_segment(env.container_id) + "/" +
         url_segment(env.ifname);
}

std::string gc_target(const NetConf& conf) {
  return "/v1/networks/" + url_segment(conf.network) + "/gc";
}

api::EndpointCreate endpoint_request(const Environment& env, const NetConf& conf, bool attach) {
  api::EndpointCreate req;
  req.container_id = env.container_id;
  req.ifname = env.ifname;
  req.netns = env.netns;
  req.static_ips = conf.static_ips;
  req.labels = conf.labels;
  req.name = conf.container_name;
  req.aliases = conf.aliases;
  req.service = conf.service;
  req.attach = attach;
  if (attach) req.port_mappings = conf.port_mappings;
  req.owner = api::kOwnerCni;
  req.cni_config = conf.name;
  return req;
}

api::GcRequest gc_request(const NetConf& conf) {
  return api::GcRequest{conf.valid_attachments, conf.name};
}

unsigned effective_mtu(const api::Endpoint& ep, const NetConf& conf) {
  if (conf.mtu) return *conf.mtu;
  return ep.mtu != 0 ? ep.mtu : 1500;
}

Result attach_result(const api::Endpoint& ep, const std::string& host_mac, const Environment& env,
                     const NetConf& conf) {
  Result ours;
  Interface host_end;
  host_end.name = ep.host_ifname;
  host_end.mac = host_mac;
  Interface container_end;
  container_end.name = env.ifname;
  container_end.mac = ep.mac;
  container_end.sandbox = env.netns;
  container_end.mtu = effective_mtu(ep, conf);
  ours.interfaces = {host_end, container_end};
  IpConfig ip;
  ip.address = ep.address.str();
  ip.gateway = ep.gateway.str();
  ip.interface = 1;  // the container end
  ours.ips.push_back(ip);
  Route def;
  def.dst = "0.0.0.0/0";
  def.gw = ep.gateway.str();
  ours.routes.push_back(def);
  ours.dns = dns_for(ep, conf);
  return append_result(conf.prev_result.value_or(Result{}), ours);
}

Result ipam_result(const api::Endpoint& ep, const NetConf& conf) {
  Result r;
  IpConfig ip;
  ip.address = ep.address.str();
  ip.gateway = ep.gateway.str();
  r.ips.push_back(ip);
  r.routes = conf.routes;
  r.dns = dns_for(ep, conf);
  return r;
}

void check_attachment(const Environment& env, const NetConf& conf, const ObservedInterface& seen,
                      const api::Endpoint& ep) {
  const Result& prev = require_prev(conf);
  std::optional<unsigned> ours;
  for (unsigned i = 0; i < prev.interfaces.size(); ++i) {
    const auto& itf = prev.interfaces[i];
    if (itf.name == env.ifname && itf.sandbox == env.netns) ours = i;
  }
  if (!ours) {
    differs("prevResult has no interface \"" + env.ifname + "\" in sandbox " + env.netns);
  }
  const Interface& itf = prev.interfaces[*ours];
  if (!itf.mac.empty() && !same_mac(itf.mac, seen.mac)) {
    differs("interface " + env.ifname + " has MAC " + seen.mac + ", prevResult says " + itf.mac);
  }
  bool has_ours = false;
  for (const auto& ip : prev.ips) {
    if (ip.interface != ours || !is_ipv4(ip.address)) continue;
    has_ours = true;
    bool present = std::any_of(seen.addresses.begin(), seen.addresses.end(),
                               [&](const std::string& a) { return same_prefix(a, ip.address); });
    if (!present) differs("address " + ip.address + " is not on " + env.ifname);
    if (!same_prefix(ip.address, ep.address.str())) {
      differs("swarmnetd holds address " + ep.address.str() + " for " + env.container_id + "/" +
              env.ifname + ", prevResult says " + ip.address);
    }
  }
  if (!has_ours) differs("prevResult has no address on interface " + env.ifname);
  for (const auto& r : prev.routes) {
    if (!is_ipv4(r.dst)) continue;
    bool present = std::any_of(seen.routes.begin(), seen.routes.end(), [&](const auto& s) {
      return same_prefix(s.dst, r.dst) && (r.gw.empty() || s.gw == r.gw);
    });
    if (!present) {
      differs("route to " + r.dst + (r.gw.empty() ? "" : " via " + r.gw) + " is missing in " +
              env.netns);
    }
  }
}

void check_ipam(const NetConf& conf, const api::Endpoint& ep) {
  const Result& prev = require_prev(conf);
  bool found = std::any_of(prev.ips.begin(), prev.ips.end(), [&](const IpConfig& ip) {
    return same_prefix(ip.address, ep.address.str());
  });
  if (!found) {
    differs("swarmnetd holds address " + ep.address.str() + ", which prevResult does not list");
  }
}

}  // namespace swarmnet::cni
