// Services: a name, the networks it is on, a mode (vip: one virtual IP per
// network, balanced by the kernel; dnsrr: the name resolves to the healthy
// tasks), ports and a health check. Its tasks are the endpoints whose
// `service` field is its name (set by the engine at ADD, or later with
// attach). Services are a replicated table like networks.
//
// A VIP is an address of the network's subnet reserved through the cluster
// IPAM as an address-only endpoint ("svc-vip-NAME", label swarmnet.vip), so
// the no-duplicate guarantee of the IPAM covers VIPs too, and it is released
// when the service goes.
#pragma once

#include <boost/json.hpp>
#include <string>

#include "daemon/controller.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

inline constexpr const char* kVipLabel = "swarmnet.vip";
// Ingress ports without a number come from here, as in swarm.
inline constexpr unsigned kIngressPortFirst = 30000;
inline constexpr unsigned kIngressPortLast = 32767;

class Services {
 public:
  Services(Store& store, Controller& controller) : store_(store), controller_(controller) {}

  // Body: {"name", "networks": [names], "endpoint_mode": "vip"|"dnsrr",
  //        "ports": [{"target", "protocol", "published", "publish_mode":
  //        "host"}] (published 0: a port chosen on each task's node; no
  //        "published": not published, a port for SRV), "health": {"kind": "tcp"|"http",
  //        "port", "path", "interval_s", "retries"}}. Error(invalid_argument)
  // naming the field, Error(conflict) if the name is taken, Error(not_found)
  // for an unknown network. Nothing is left behind on failure.
  boost::json::value create(const std::string& body);
  boost::json::value list() const;
  // The service with its VIPs, and its tasks with their node and health.
  boost::json::value inspect(const std::string& name) const;
  // Replaces the service's ports. Body: {"ports": [...]} as for create;
  // nothing else can change (yet).
  boost::json::value update(const std::string& name, const std::string& body);
  // Removes the service and releases its VIPs; its tasks stay (containers).
  void remove(const std::string& name);
  // Makes an endpoint of this host a task of the service (or of none, with
  // an empty name). Body: {"network", "container_id", "ifname"}.
  boost::json::value attach(const std::string& name, const std::string& body);

 private:
  const ServiceRecord& find(const std::string& name) const;
  Ipv4Address reserve_vip(const ServiceRecord& s, const std::string& network_id, std::vector<std::string>& reserved);
  const NetworkRecord& ingress_network() const;
  void check_publications(ServiceRecord& s) const;
  boost::json::value to_json_view(const ServiceRecord& s, bool with_tasks) const;

  Store& store_;
  Controller& controller_;
};

// The endpoint key of a service's VIP reservation on a network.
std::string vip_container_id(const std::string& service_name);
bool is_vip_endpoint(const EndpointRecord& e);
bool has_ingress_ports(const ServiceRecord& s);

}  // namespace swarmnet::daemon
