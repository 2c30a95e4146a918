// Keeps the DNS name table and the DNS server's listeners in line with the
// replicated tables: every network gets a listener at its gateway address
// (the same address on every host, so a container's resolver is always its
// own host's swarmnetd), every endpoint of a live node its names, every
// service its VIPs and tasks. Runs on the daemon's thread (store listener);
// the table takes its own lock against the DNS thread.
#pragma once

#include <string>

#include "daemon/controller.hpp"
#include "daemon/store.hpp"
#include "dns/name_table.hpp"
#include "dns/server.hpp"

namespace swarmnet::daemon {

class ServiceDiscovery {
 public:
  ServiceDiscovery(Store& store, Controller& controller, dns::NameTable& table, dns::Server& server);
  ~ServiceDiscovery();
  ServiceDiscovery(const ServiceDiscovery&) = delete;
  ServiceDiscovery& operator=(const ServiceDiscovery&) = delete;

  // Rebuilds the table from the store (at start, and after membership changes:
  // a dead node's endpoints leave the answers, a returning node's come back).
  void resync();

 private:
  void on_change(const std::string& table, const std::string& key);
  void update_network(const std::string& id);
  void update_endpoint(const std::string& key);
  void update_service(const std::string& id);

  Store& store_;
  Controller& controller_;
  dns::NameTable& table_;
  dns::Server& server_;
  size_t listener_id_ = 0;
};

}  // namespace swarmnet::daemon
