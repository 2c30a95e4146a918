// The host-side kernel state swarmnetd owns for its networks. An interface,
// so the controller's logic is tested with a fake and the Linux version with
// the real kernel (integration tests).
#pragma once

#include <memory>
#include <string>

#include "daemon/records.hpp"

namespace swarmnet::daemon {

class Dataplane {
 public:
  virtual ~Dataplane() = default;

  // Creates or repairs this host's bridge for a network: exists, has the
  // gateway address, has the network's MTU, is up. Idempotent.
  virtual void ensure_network(const NetworkRecord& network, const std::string& bridge) = 0;
  // Removes the bridge; no error if it is already gone.
  virtual void remove_network(const std::string& bridge) = 0;
  // Deletes the host end of an endpoint's veth (and so the pair) if present.
  virtual void remove_host_link(const std::string& ifname) = 0;
  // MTU of the underlay (the interface of the default route), 1500 if none.
  virtual unsigned underlay_mtu() = 0;
};

// The real one, through libnl in the daemon's own network namespace.
std::unique_ptr<Dataplane> make_linux_dataplane();

}  // namespace swarmnet::daemon
