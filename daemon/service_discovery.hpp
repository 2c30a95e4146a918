// Keeps the DNS name table and the DNS server's listeners in line with the
// replicated tables: every network gets a listener at its gateway address
// (the same address on every host, so a container's resolver is always its
// own host's swarmnetd), every endpoint of a live node its names, every
// service its VIPs and tasks (those that serve: daemon/read_model.hpp).
// Follows the store's feed on the daemon's thread; the table takes its own
// lock against the DNS thread.
#pragma once

#include <string>

#include "daemon/store.hpp"
#include "dns/name_table.hpp"
#include "dns/server.hpp"

namespace swarmnet::daemon {

class ServiceDiscovery {
 public:
  // `alive`: the membership's answer (Controller::is_alive).
  ServiceDiscovery(Store& store, Liveness alive, dns::NameTable& table, dns::Server& server);
  ~ServiceDiscovery();
  ServiceDiscovery(const ServiceDiscovery&) = delete;
  ServiceDiscovery& operator=(const ServiceDiscovery&) = delete;

  // Rebuilds the table from the store (at start, and after membership changes:
  // a dead node's endpoints leave the answers, a returning node's come back).
  void resync();

 private:
  void on_change(const Change& c);
  void update_network(const std::string& id);
  void update_endpoint(const std::string& key);
  void update_service(const std::string& id);

  Store& store_;
  Liveness alive_;
  dns::NameTable& table_;
  dns::Server& server_;
  ChangeFeed::Subscription subscription_;
};

}  // namespace swarmnet::daemon
