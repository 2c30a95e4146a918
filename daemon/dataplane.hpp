// The host-side kernel state swarmnetd owns for its networks. An interface,
// so the overlay's logic is tested with a fake and the Linux version with
// the real kernel (integration tests).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "daemon/records.hpp"

namespace swarmnet::daemon {

// A container on another host, as this host's overlay needs it: a static
// FDB entry (mac -> vtep) and a neighbour entry (ip -> mac) on the VXLAN device.
struct RemoteEndpoint {
  Ipv4Address ip;
  std::string mac;
  Ipv4Address vtep;
  auto operator<=>(const RemoteEndpoint&) const = default;
};

// A route of this host (main table) to somewhere a network's subnet must not
// shadow.
struct HostRoute {
  Ipv4Prefix destination;
  std::string device;  // "" if the route has none
};

class Dataplane {
 public:
  virtual ~Dataplane() = default;

  // Creates or repairs this host's bridge for a network: exists, has the
  // gateway address, has the network's MTU, is up. Idempotent.
  virtual void ensure_network(const NetworkRecord& network, const std::string& bridge) = 0;
  // Removes the bridge (and the network's VXLAN device, if any); no error if
  // they are already gone.
  virtual void remove_network(const std::string& bridge) = 0;
  // Creates or repairs the network's VXLAN device (VNI, local VTEP address,
  // learning off, proxy on) enslaved to the bridge. Idempotent.
  virtual void ensure_overlay(const NetworkRecord& network, const std::string& bridge,
                              Ipv4Address local_vtep) = 0;
  // Makes the VXLAN device's static FDB and neighbour entries exactly
  // `remote`: adds what is missing, removes what is stale, leaves the rest
  // untouched (so traffic to unchanged endpoints is never interrupted).
  virtual void sync_remote_endpoints(const NetworkRecord& network,
                                     const std::vector<RemoteEndpoint>& remote) = 0;
  // Deletes the host end of an endpoint's veth (and so the pair) if present.
  virtual void remove_host_link(const std::string& ifname) = 0;
  // Makes the host's packet filter match the cluster's networks (every
  // network, with or without a local bridge: isolation holds for all):
  // isolation between networks, masquerade to the outside unless internal,
  // nothing in from the underlay. Idempotent; touches only what differs.
  virtual void sync_firewall(const std::vector<NetworkRecord>& networks) = 0;
  // The VNIs of encrypted networks: their VXLAN goes through ESP, never in
  // clear either way (daemon/firewall.hpp). Replaces the previous set.
  virtual void set_encrypted_vnis(const std::set<uint32_t>& vnis) = 0;
  // The only underlay addresses this host takes VXLAN from (and the only
  // ones of its own it takes VXLAN to): the cluster members' advertise
  // addresses. Empty: no VXLAN at all. Replaces the previous list.
  virtual void set_underlay_peers(const std::vector<Ipv4Address>& members) = 0;
  // MTU of the underlay (the interface of the default route), 1500 if none.
  virtual unsigned underlay_mtu() = 0;
  // This host's routes but the default route and those of swarmnet's own
  // bridges (swn-*): the subnets a network picked from the default address
  // pools keeps clear of.
  virtual std::vector<HostRoute> host_routes() { return {}; }
};

// The real one, through libnl in the daemon's own network namespace.
// vxlan_port: the UDP port of the overlay's tunnels (4789 by default);
// dns_queries_per_second: the firewall's per-container DNS limit (0: none);
// gossip_port: the cluster's gossip port (TCP and UDP), closed to containers;
// metrics_port: the metrics listener's TCP port (0: none), closed to them too.
std::unique_ptr<Dataplane> make_linux_dataplane(uint16_t vxlan_port,
                                                unsigned dns_queries_per_second = 0,
                                                uint16_t gossip_port = 7946, uint16_t metrics_port = 0);

}  // namespace swarmnet::daemon
