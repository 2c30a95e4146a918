// Keeps this host's kernel balancer (lb::Balancer: nftables or IPVS) in line
// with the services: every VIP of a vip-mode service, on every network that
// has a bridge on this host, balanced across the service's healthy tasks on
// live nodes, wherever they run (east-west balancing at the source host, as
// swarm does). Listens to the store (services, endpoints) and to membership
// changes; programs only the VIPs a change touches.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "daemon/controller.hpp"
#include "daemon/store.hpp"
#include "lb/balancer.hpp"

namespace swarmnet::daemon {

class LoadBalancing {
 public:
  LoadBalancing(Store& store, Controller& controller, lb::Balancer& balancer);
  ~LoadBalancing();
  LoadBalancing(const LoadBalancing&) = delete;
  LoadBalancing& operator=(const LoadBalancing&) = delete;

  // Makes the kernel hold exactly the intended VIPs (at start).
  void resync();
  // What this host's kernel should hold, sorted by key.
  std::vector<lb::VirtualIp> intended() const;
  // "" when the kernel matches; else one line per difference.
  std::string check();
  std::string_view backend_name() const { return balancer_.name(); }
  // The VIPs this host's balancer was given, by key.
  const std::map<std::string, lb::VirtualIp>& programmed() const { return programmed_; }
  // Told how long each change of one VIP took the balancer ("upsert" or
  // "remove"), and whether it failed (for metrics).
  using ProgramObserver = std::function<void(const char* operation, double seconds, bool failed)>;
  void set_program_observer(ProgramObserver observer) { observer_ = std::move(observer); }

 private:
  void on_change(const std::string& table, const std::string& key);
  void update_service(const ServiceRecord& service);
  void update_services_on(const std::string& network_id);
  void program(const std::string& key, const std::optional<lb::VirtualIp>& want);
  std::optional<lb::VirtualIp> vip_of(const ServiceRecord& s, const std::string& network_id) const;

  Store& store_;
  Controller& controller_;
  lb::Balancer& balancer_;
  size_t listener_id_ = 0;
  std::map<std::string, lb::VirtualIp> programmed_;  // by key
  // The service each endpoint was last seen in (by endpoint key), so a
  // task that moves to another service, or to none, also leaves the old one.
  std::map<std::string, std::string> service_of_;
  ProgramObserver observer_;
};

// The balancer --lb-backend asks for: "ipvs", "nftables", or "auto" (IPVS
// where the kernel has it, nftables otherwise). Logs which.
std::unique_ptr<lb::Balancer> choose_balancer(const std::string& wanted);

}  // namespace swarmnet::daemon
