// The ingress routing mesh: every node answers on every ingress
// port of every service, on all of its addresses, whether or not it runs a
// task, and balances each request across the service's healthy tasks on all
// live nodes, over the ingress network. The kernel side is
// daemon/ingress_sandbox.hpp; this class keeps it in line with the
// replicated tables:
//   - the node joins the ingress network (made by `cluster init`): an
//     endpoint "ingress-sandbox" of this node, reserved through the cluster
//     IPAM, is the sandbox's address there, and its record gives the other
//     nodes their neighbour and FDB entries to it like any container's;
//   - per service publishing in ingress mode: the host's DNAT of each port
//     to the service's ingress VIP (kernel/published_ports.hpp, owner
//     "ingress", id = the service's id), and in the sandbox's balancer the
//     VIP with the service's healthy tasks on live nodes that have joined;
//   - in the sandbox, one route per task: to its node's sandbox, and per
//     other node the way back for the replies of what it balanced.
// Any change of services, endpoints or membership recomputes all of it and
// changes only what differs.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/controller.hpp"
#include "daemon/ingress_sandbox.hpp"
#include "daemon/store.hpp"
#include "kernel/published_ports.hpp"

namespace swarmnet::daemon {

inline constexpr const char* kIngressPortOwner = "ingress";

class RoutingMesh {
 public:
  // keep_client_address: tasks see the outside client's address (false:
  // the balancing sandbox's, as in swarm; see ingress_sandbox.hpp).
  RoutingMesh(Store& store, Controller& controller, Ipv4Prefix gateway_subnet, std::string lb_backend,
              bool keep_client_address);
  ~RoutingMesh();
  RoutingMesh(const RoutingMesh&) = delete;
  RoutingMesh& operator=(const RoutingMesh&) = delete;

  // Joins the ingress network if the tables have one, and programs
  // everything (at start; later, changes do it).
  void start();

  // What the mesh holds on this node now (for metrics): whether its sandbox
  // has joined, the balanced VIPs in the sandbox, and the published ports.
  bool joined() const { return sandbox_ != nullptr; }
  const std::map<std::string, lb::VirtualIp>& balanced() const { return balanced_; }
  std::vector<kernel::PublishedPort> published_ports() const {
    std::vector<kernel::PublishedPort> all;
    for (const auto& [id, vip_ports] : published_) all.insert(all.end(), vip_ports.second.begin(), vip_ports.second.end());
    return all;
  }

 private:
  void on_change(const Change& c);
  bool join();
  void program();

  Store& store_;
  Controller& controller_;
  Ipv4Prefix gateway_subnet_;
  std::string lb_backend_;
  bool keep_client_address_;
  ChangeFeed::Subscription subscription_;
  bool join_failed_ = false;
  std::unique_ptr<IngressSandbox> sandbox_;
  kernel::PublishedPorts host_rules_{kIngressPortOwner};
  std::map<std::string, lb::VirtualIp> balanced_;  // in the sandbox, by key
  std::map<std::string, std::pair<Ipv4Address, std::vector<kernel::PublishedPort>>> published_;  // by service id
};

}  // namespace swarmnet::daemon
