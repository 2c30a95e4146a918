// What the routing mesh changes in the kernel, behind one narrow interface:
// the ingress sandbox (its peers, its routes to tasks, its balancer) and the
// host's ingress ports. The daemon's is the real one (the sandbox of
// daemon/ingress/ingress_sandbox.hpp, the rules of kernel/published_ports.hpp, owner
// "ingress"); the routing mesh's unit test holds a fake that records.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "daemon/ingress/ingress.hpp"
#include "daemon/ingress/ingress_sandbox.hpp"
#include "kernel/published_ports.hpp"
#include "lb/balancer.hpp"

namespace swarmnet::daemon {

class MeshKernel {
 public:
  virtual ~MeshKernel() = default;

  // Builds the sandbox once this node has its address on the ingress
  // network; throws Error with what failed, leaving nothing behind. The
  // methods below but the host's ports need it.
  virtual void build_sandbox(const IngressSandboxConfig& config) = 0;
  virtual bool has_sandbox() const = 0;
  // IngressSandbox::sync_peers, set_route, remove_route, balancer.
  virtual void sync_peers(const std::map<Ipv4Address, std::string>& sandboxes,
                          const std::vector<Ipv4Address>& members) = 0;
  virtual void set_route(Ipv4Address task, std::optional<Ipv4Address> via) = 0;
  virtual void remove_route(Ipv4Address task) = 0;
  virtual lb::Balancer& balancer() = 0;
  // IngressSandbox::set_hairpin: the tasks the host DNATs to straight
  // (writes only a change).
  virtual void set_hairpin(const std::set<Ipv4Address>& tasks) = 0;

  // The host's DNAT of a service's ingress ports to its ingress VIP, or
  // spread over this node's tasks and the VIP (PublishedPorts::replace,
  // remove and ids).
  virtual void publish(const std::string& service_id, Ipv4Address vip,
                       const std::vector<kernel::PublishedPort>& ports, const kernel::Spread& spread) = 0;
  virtual void unpublish(const std::string& service_id) = 0;
  virtual std::set<std::string> published_ids() = 0;
  // Forgets the host's UDP flows to its port `port` that its DNAT sent
  // straight to one of `tasks` (sorted), which it no longer does: their
  // next datagram takes the DNAT as it is now (lb::StaleFlows, just after,
  // off this path; best-effort).
  virtual void forget_udp_flows(uint16_t port, const std::vector<Ipv4Address>& tasks) = 0;
};

std::unique_ptr<MeshKernel> make_linux_mesh_kernel();

}  // namespace swarmnet::daemon
