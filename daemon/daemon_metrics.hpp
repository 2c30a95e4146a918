// swarmnetd's metrics (README.md lists them): the registry that GET /metrics
// renders, and what feeds it. Counters of the busy paths (API requests,
// balancer changes, upstream DNS) are counted as they happen; the rest is
// read at scrape time from the parts that already keep it (gossip counters,
// the DNS server's counters, the tables), so no change pays for metrics
// nobody scrapes.
//
// Every watch_* registers the families of one part; a part the daemon runs
// without (no DNS, --lb-backend none) simply has none. Scrapes run on the
// daemon's io thread (daemon/metrics_http.hpp), the thread that owns the
// tables, so the collectors read them without locks.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "daemon/api_server.hpp"
#include "daemon/cluster.hpp"
#include "daemon/load_balancing.hpp"
#include "daemon/ingress/routing_mesh.hpp"
#include "daemon/store.hpp"
#include "dns/server.hpp"
#include "metrics/registry.hpp"

namespace swarmnet::daemon {

// One network's addresses as the tables say, cluster-wide.
struct AddressUsage {
  uint64_t used = 0;          // live endpoints (containers, VIPs, sandboxes)
  uint64_t free = 0;          // assignable addresses of the subnet not used
  uint64_t blocks = 0;        // address blocks the subnet is cut into
  uint64_t blocks_owned = 0;  // of which this node owns
};
// By network name.
std::map<std::string, AddressUsage> address_usage(const Store& store);

// The calling program of an API request (cni, cni-ipam, docker, ctl, other)
// from its User-Agent: a fixed set of label values, whatever clients send.
// (The operation label is the route's: daemon/api_routes.hpp.)
std::string_view api_client(std::string_view user_agent);

// "NOERROR", "SERVFAIL", ... (RFC 6895), "RCODE12" for the unassigned.
std::string_view rcode_name(unsigned rcode);

class DaemonMetrics {
 public:
  DaemonMetrics();
  const metrics::Registry& registry() const { return registry_; }

  void watch_cluster(const Cluster& cluster);
  void watch_addresses(const Store& store);
  void watch_dns(const dns::Server& server);
  // Wraps the DNS server's forwarder: counts upstream queries and times them.
  dns::Forwarder time_upstream(dns::Forwarder forward);
  void watch_load_balancing(LoadBalancing& lb, const Store& store);
  void watch_routing_mesh(const RoutingMesh& mesh);
  void watch_host_ports(const Store& store);
  void watch_api(ApiServer& server);

  // `lb check` at scrape time reads the kernel's balancer state and walks
  // every service: done at most this often, the last result served between.
  static constexpr std::chrono::seconds kLbCheckSpacing{30};

 private:
  metrics::Registry registry_;
};

}  // namespace swarmnet::daemon
