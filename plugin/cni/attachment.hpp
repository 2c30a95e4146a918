// From CNI to the swarmnetd API and back: the request each command sends,
// the result built from the daemon's Endpoint, and CHECK's comparison of
// prevResult with what the kernel shows. Pure, so the translation is tested
// without a daemon or root.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/api.hpp"
#include "plugin/cni/config.hpp"
#include "plugin/cni/result.hpp"

namespace swarmnet::cni {

// API targets, path segments percent-encoded.
std::string endpoints_target(const NetConf& conf);
std::string endpoint_target(const NetConf& conf, const Environment& env);
std::string gc_target(const NetConf& conf);
inline constexpr const char* kStatusTarget = "/v1/status";

// attach: true for the swarmnet plugin (the daemon wires the bridge side),
// false for swarmnet-ipam (an address only).
api::EndpointCreate endpoint_request(const Environment& env, const NetConf& conf, bool attach);
api::GcRequest gc_request(const NetConf& conf);

// The MTU the veth gets: the config's override, else the network's.
unsigned effective_mtu(const api::Endpoint& ep, const NetConf& conf);

// The swarmnet plugin's result: host end, container end, address on the
// container end, default route via the gateway; appended to prevResult.
Result attach_result(const api::Endpoint& ep, const std::string& host_mac, const Environment& env,
                     const NetConf& conf);
// swarmnet-ipam's result: the address (no interface index), ipam.routes, dns.
Result ipam_result(const api::Endpoint& ep, const NetConf& conf);

// What CHECK reads from the container's namespace.
struct ObservedInterface {
  std::string mac;
  std::vector<std::string> addresses;  // CIDR
  struct Route {
    std::string dst;  // CIDR
    std::string gw;   // "" when on-link
  };
  std::vector<Route> routes;
};

// CHECK for the swarmnet plugin: prevResult must list our container
// interface (name = CNI_IFNAME, sandbox = CNI_NETNS); the kernel must show its
// MAC, each of its addresses and each route of prevResult through it; the
// daemon's endpoint must hold the same address. Throws CniError(103) naming
// the first difference, CniError(7) when prevResult is missing.
void check_attachment(const Environment& env, const NetConf& conf, const ObservedInterface& seen,
                      const api::Endpoint& ep);
// CHECK for swarmnet-ipam: prevResult must hold the daemon's address.
void check_ipam(const NetConf& conf, const api::Endpoint& ep);

}  // namespace swarmnet::cni
