// The ingress routing mesh: every node answers on every ingress
// port of every service, on all of its addresses, whether or not it runs a
// task, and balances each request across the service's healthy tasks on all
// live nodes, over the ingress network. The kernel side is
// daemon/ingress/mesh_kernel.hpp (the sandbox of daemon/ingress/ingress_sandbox.hpp and
// the host's ingress ports); this class keeps it in line with the
// replicated tables:
//   - the node joins the ingress network (made by `cluster init`): an
//     endpoint "ingress-sandbox" of this node, reserved through the cluster
//     IPAM, is the sandbox's address there, and its record gives the other
//     nodes their neighbour and FDB entries to it like any container's;
//   - per service publishing in ingress mode: the host's DNAT of each port
//     to the service's ingress VIP (kernel/published_ports.hpp, owner
//     "ingress", id = the service's id), and in the sandbox's balancer the
//     VIP with the service's healthy tasks on live nodes that have joined;
//   - the shortcut, when this node runs healthy tasks of the service and
//     the mesh keeps the client's address: the host's DNAT picks among all
//     the tasks by a hash of the flow (kernel::Spread), straight to a task
//     of this node (one DNAT, as host mode: its replies meet the host's
//     conntrack), and for the other nodes' share to the VIP, which the
//     sandbox then balances over the other nodes' tasks only, so each task
//     gets its even share (1 local task of 3: a third straight to it, two
//     thirds to the VIP and from there half each to the 2 others). With
//     masquerading (swarm's way) or no task here, the VIP takes everything.
//     A task that the host's DNAT no longer sends to straight (unhealthy,
//     gone, the shortcut off) also loses the UDP flows the host sent it
//     (their conntrack entries are deleted), or a client that keeps its
//     source port would stay on it;
//   - in the sandbox, one route per task: to its node's sandbox, and per
//     other node the way back for the replies of what it balanced.
// What a change recomputes: a service's change or one of its tasks', that
// service (every service of its name); a change of the membership, of the
// networks or of a node's sandbox (which nodes can take requests), every
// service. Only what differs reaches the kernel.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/controller.hpp"
#include "daemon/ingress/mesh_kernel.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

class RoutingMesh {
 public:
  // keep_client_address: tasks see the outside client's address (false:
  // the balancing sandbox's, as in swarm; see ingress_sandbox.hpp).
  RoutingMesh(Store& store, Controller& controller, MeshKernel& kernel, Ipv4Prefix gateway_subnet,
              std::string lb_backend, bool keep_client_address);
  ~RoutingMesh();
  RoutingMesh(const RoutingMesh&) = delete;
  RoutingMesh& operator=(const RoutingMesh&) = delete;

  // Joins the ingress network if the tables have one, and programs
  // everything (at start; later, changes do it).
  void start();

  // What the mesh holds on this node now (for metrics): whether its sandbox
  // has joined, the balanced VIPs in the sandbox, and the published ports.
  bool joined() const { return kernel_.has_sandbox(); }
  const std::map<std::string, lb::VirtualIp>& balanced() const { return balanced_; }
  // The tasks requests go to from this node, all services: the sandbox's
  // VIPs' backends and the tasks the host DNATs to straight (the shortcut).
  size_t balanced_tasks() const {
    size_t n = 0;
    for (const auto& [key, v] : balanced_) n += v.backends.size();
    for (const auto& [id, host] : published_) n += host.spread.direct.size();
    return n;
  }
  std::vector<kernel::PublishedPort> published_ports() const {
    std::vector<kernel::PublishedPort> all;
    for (const auto& [id, host] : published_) all.insert(all.end(), host.ports.begin(), host.ports.end());
    return all;
  }

 private:
  // The host's DNAT of one service's ingress ports: to its VIP, spread with
  // this node's tasks by the shortcut.
  struct HostPorts {
    Ipv4Address vip;
    std::vector<kernel::PublishedPort> ports;
    kernel::Spread spread;
    bool operator==(const HostPorts&) const = default;
  };
  // What one service asks of the kernel.
  struct Wanted {
    std::optional<lb::VirtualIp> vip;  // in the sandbox's balancer
    std::map<Ipv4Address, std::optional<Ipv4Address>> routes;  // task -> its node's sandbox
    std::optional<HostPorts> published;                        // on the host
  };
  // What service `id` asks of the kernel now.
  Wanted wanted(const std::string& id) const;
  void on_change(const Change& c);
  bool join();
  // Every service, after the nodes that can take requests changed.
  void program_all();
  void program_service(const std::string& id);
  // The host's UDP flows that `before` sent straight to a task and `after`
  // (null: the ports are closed) no longer does: forgotten, so that a
  // client that keeps its source port follows the new rule too.
  void forget_left_flows(const HostPorts& before, const HostPorts* after);
  // The host's hairpin set as the published ports ask it: the tasks they
  // DNAT to straight (the kernel side skips a write that changes nothing).
  std::set<Ipv4Address> hairpin_wanted() const;
  // Reads the sandboxes' addresses on the ingress network into sandbox_of_,
  // and returns the other nodes' with their MACs (for the replies of what
  // they balance).
  std::map<Ipv4Address, std::string> read_sandboxes();

  Store& store_;
  Controller& controller_;
  MeshKernel& kernel_;
  Ipv4Prefix gateway_subnet_;
  std::string lb_backend_;
  bool keep_client_address_;
  ChangeFeed::Subscription subscription_;
  bool join_failed_ = false;
  bool programmed_once_ = false;  // the host's ports of earlier runs are reconciled
  std::map<std::string, Ipv4Address> sandbox_of_;  // node id -> its sandbox's address
  std::map<std::string, std::string> service_of_;  // endpoint key -> the service it is a task of
  std::map<std::string, lb::VirtualIp> balanced_;  // in the sandbox, by key
  std::map<std::string, std::map<Ipv4Address, std::optional<Ipv4Address>>> routes_of_;  // by service id
  std::map<Ipv4Address, std::set<std::string>> route_users_;  // the services whose task has this address
  std::map<std::string, HostPorts> published_;  // by service id
};

}  // namespace swarmnet::daemon
