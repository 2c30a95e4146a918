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

#include <string>
#include <vector>

#include "common/api.hpp"

#include "daemon/controller.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

class Services {
 public:
  Services(Store& store, Controller& controller) : store_(store), controller_(controller) {}

  // Error(invalid_argument) naming the field, Error(conflict) if the name
  // is taken, Error(not_found) for an unknown network. Nothing is left
  // behind on failure. (The body's own form is checked where it is decoded,
  // common/api.cpp.)
  api::Service create(const api::ServiceCreate& request);
  // Without tasks (their counts only).
  std::vector<api::Service> list() const;
  // The service with its VIPs, and its tasks with their node and health.
  api::Service inspect(const std::string& name) const;
  // Replaces the service's ports; nothing else can change.
  api::Service update(const std::string& name, const api::ServiceUpdate& request);
  // Removes the service and releases its VIPs; its tasks stay (containers).
  void remove(const std::string& name);
  // Makes an endpoint of this host a task of the service (or of none, with
  // an empty name).
  api::ServiceAttached attach(const std::string& name, const api::ServiceAttach& request);

 private:
  const ServiceRecord& find(const std::string& name) const;
  Ipv4Address reserve_vip(const ServiceRecord& s, const std::string& network_id, std::vector<std::string>& reserved);
  api::Service view(const ServiceRecord& s, bool with_tasks) const;

  Store& store_;
  Controller& controller_;
};

// The endpoint key of a service's VIP reservation on a network.
std::string vip_container_id(const std::string& service_name);
bool is_vip_endpoint(const EndpointRecord& e);

}  // namespace swarmnet::daemon
