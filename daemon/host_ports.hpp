// Host-mode publishing: a port published on the node a task runs
// on, straight to that task, with no balancing, as swarm's
// `--publish mode=host`. An endpoint of this node publishes
//   - its runtime's port mappings (the CNI portMappings capability), and
//   - its service's host-mode ports; a port without a number gets one from
//     this host's ephemeral range (ip_local_port_range), kept while the
//     task lives and shown in `service inspect`.
// A host port goes to one container per node: the second task that asks
// for a taken port fails with an error naming the holder (its ADD, attach
// or Docker join), as the lesson warns for more tasks than hosts. A service
// update that cannot publish a port for a task on this node logs why.
//
// What an endpoint publishes is part of its record (host_ports), so it is
// replicated and inspectable; this class turns the records of this node's
// endpoints into the rules of kernel/published_ports.hpp (owner "host",
// id = the endpoint's id), the same chains Docker's -p uses, so the two see
// each other's ports.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "daemon/controller.hpp"
#include "daemon/store.hpp"
#include "kernel/published_ports.hpp"

namespace swarmnet::daemon {

inline constexpr const char* kHostPortOwner = "host";

// The range ports without a number are taken from (inclusive).
struct PortRange {
  uint16_t first = 32768;
  uint16_t last = 60999;
};
// /proc/sys/net/ipv4/ip_local_port_range of this namespace, or the default.
PortRange ephemeral_port_range();

// The host ports an endpoint should publish, pure: its runtime ports, then
// its service's host-mode ports (`service` may be null). `taken` maps the
// ports ("tcp/8080") published on this node by others to their holders.
// Ports the endpoint already had a number for keep it. A taken port is an
// Error(conflict) naming its holder, or with `skip_taken` is left out and
// described in `skipped`.
std::vector<HostPortRecord> resolve_host_ports(const EndpointRecord& endpoint, const ServiceRecord* service,
                                               const std::map<std::string, std::string>& taken, PortRange range,
                                               bool skip_taken = false,
                                               std::vector<std::string>* skipped = nullptr);

class HostPorts {
 public:
  HostPorts(Store& store, kernel::PublishedPorts& rules);
  ~HostPorts();
  HostPorts(const HostPorts&) = delete;
  HostPorts& operator=(const HostPorts&) = delete;

  // Fills in host_ports of an endpoint of this node before it is stored
  // (the controller calls it for every new or changed endpoint). Throws
  // Error(conflict) when a port it asks for is taken on this node.
  void complete(EndpointRecord& endpoint);
  // Makes the kernel hold the rules of this node's endpoints, and no other
  // rules of ours (at start: containers deleted while swarmnetd was down).
  void resync();

 private:
  void on_change(TableId table, const std::string& key);
  void on_service_change(const ServiceRecord& service);
  void program(const EndpointRecord& endpoint);
  void unprogram(const std::string& endpoint_id);
  std::map<std::string, std::string> taken_by_others();
  std::map<std::string, std::string> taken_except(const EndpointRecord& endpoint,
                                                  const std::map<std::string, std::string>& by_others);

  Store& store_;
  kernel::PublishedPorts& rules_;
  ChangeFeed::Subscription subscription_;
  // What the kernel holds, by endpoint id (health updates re-put endpoints
  // often: they must not cost an nft run each).
  std::map<std::string, std::pair<Ipv4Address, std::vector<HostPortRecord>>> programmed_;
};

}  // namespace swarmnet::daemon
