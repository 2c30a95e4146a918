// What the daemon's parts need to know of the cluster: which nodes are
// alive and where their tunnels end. The cluster (daemon/cluster.hpp)
// implements it; tests use fakes. Without one (a node that never joined a
// cluster) only this node exists and is alive.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::daemon {

class Membership {
 public:
  virtual ~Membership() = default;
  virtual bool is_alive(const std::string& node_id) const = 0;
  // The node's underlay address (its VXLAN tunnel endpoint).
  virtual std::optional<Ipv4Address> address_of(const std::string& node_id) const = 0;
  // The underlay addresses VXLAN may come from: every member's advertise
  // address, this node's included, a dead member's until it is reclaimed
  // (a healing partition is not cut off), not one that left.
  virtual std::vector<Ipv4Address> underlay_peers() const { return {}; }
};

}  // namespace swarmnet::daemon
