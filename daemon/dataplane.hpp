// The host-side kernel state swarmnetd owns for its networks. An interface,
// so the overlay's logic is tested with a fake and the Linux version with
// the real kernel (integration tests).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
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

// The kernel entries a set of remote endpoints comes to: the kernel keeps one
// VTEP per MAC and one MAC per IP (add_fdb and add_neighbor replace). Two
// endpoints can share an address (a clash across nodes; the MAC follows the
// IP), so which one the entry serves is fixed here, for the full diff and the
// per-endpoint delta alike: the smallest RemoteEndpoint holding it.
struct RemoteEntries {
  std::map<std::string, Ipv4Address> fdb;        // mac -> vtep
  std::map<Ipv4Address, std::string> neighbors;  // ip -> mac
  bool operator==(const RemoteEntries&) const = default;
};

inline RemoteEntries remote_entries(std::vector<RemoteEndpoint> remote) {
  std::sort(remote.begin(), remote.end());
  RemoteEntries out;
  for (const auto& r : remote) {
    out.fdb.try_emplace(r.mac, r.vtep);  // the first, so the smallest, wins
    out.neighbors.try_emplace(r.ip, r.mac);
  }
  return out;
}

// What one remote endpoint's change does to the kernel entries: an entry to
// set (added or replaced) or to remove (nullopt).
struct RemoteEntryChanges {
  std::vector<std::pair<std::string, std::optional<Ipv4Address>>> fdb;        // mac -> vtep
  std::vector<std::pair<Ipv4Address, std::optional<std::string>>> neighbors;  // ip -> mac
  bool empty() const { return fdb.empty() && neighbors.empty(); }
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
  // remote_entries(remote): reads them all from the kernel, adds what is
  // missing, removes what is stale, leaves the rest untouched (so traffic to
  // unchanged endpoints is never interrupted). O(entries): for a (re)start,
  // a membership change, a network coming to this host.
  virtual void sync_remote_endpoints(const NetworkRecord& network,
                                     const std::vector<RemoteEndpoint>& remote) = 0;
  // Sets and removes just the entries `changes` names, reading nothing from
  // the kernel: one remote endpoint's change costs its own entries only.
  // False, with nothing done, when the network has no VXLAN device here (the
  // caller falls back to the full sync, which makes it).
  virtual bool update_remote_endpoints(const NetworkRecord& network, const RemoteEntryChanges& changes) = 0;
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
