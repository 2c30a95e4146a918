// The VXLAN half of an overlay network's data plane (DESIGN.md, "Data plane
// per host"): one VXLAN device per network, enslaved to the network's
// bridge, and remote endpoints as static entries on it:
//   - FDB:        remote container MAC -> remote host's VTEP address
//   - neighbour:  remote container IP  -> remote container MAC
// Nothing is learned and nothing is flooded:
//   - the device's own learning is off, so packets from the underlay never
//     create or move FDB entries (a forged packet cannot redirect traffic);
//   - it has no remote/group and no all-zeros FDB entry, so a frame for a
//     MAC without an entry is dropped instead of replicated to every VTEP;
//   - `proxy` is on: the device answers a container's ARP request itself
//     from its permanent neighbour entries and never sends ARP over the
//     tunnel (no entry: no answer; l3miss/l2miss are off, nobody listens);
//   - the bridge port of the device does not learn either, so a remote host
//     cannot claim a local container's MAC on the bridge; add_fdb() also
//     puts a static bridge entry (MAC -> VXLAN port) so the bridge forwards
//     to the tunnel instead of flooding every local port for remote MACs.
// All calls go through one NetlinkSocket (its namespace) and throw
// swarmnet::Error like the rest of kernel/. The per-entry calls that take
// the device's index send one request per kernel object and never dump, so
// a daemon can reconcile thousands of entries quickly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/netlink.hpp"

namespace swarmnet::kernel {

constexpr uint16_t kVxlanDefaultPort = 4789;  // IANA; what swarm uses

struct VxlanConfig {
  std::string name;                   // the VXLAN device
  uint32_t vni = 0;                   // 1 .. 2^24-1
  uint16_t port = kVxlanDefaultPort;  // UDP destination port
  Ipv4Address local;                  // this host's VTEP address; 0.0.0.0: unset
  std::string underlay_device;        // optional; "" lets routing choose
  // 0: the kernel's default, underlay MTU - 50 with an underlay device but
  // 1500 without one (too big for a 1500 underlay): set it.
  unsigned mtu = 0;
  std::string bridge;  // must exist (NetlinkSocket::ensure_bridge)
  // The UDP source ports of its packets, [min, max); 0 and 0: the kernel's
  // default (the local port range). Encrypted networks send from a block of
  // their own, which their XFRM policies select (daemon/encryption.hpp).
  uint16_t source_port_min = 0;
  uint16_t source_port_max = 0;
};

struct VxlanInfo {
  LinkInfo link;
  uint32_t vni = 0;
  uint16_t port = 0;
  std::optional<Ipv4Address> local;
  int underlay_index = 0;  // 0 when not bound to a device
  bool learning = false;   // the device's own FDB learning
  bool proxy = false;      // ARP answered from the neighbour table
  bool l2miss = false;
  bool l3miss = false;
  uint16_t source_port_min = 0;  // as the kernel reports them
  uint16_t source_port_max = 0;
  // The device as a bridge port (false/false when not enslaved).
  bool port_learning = false;
  bool port_neigh_suppress = false;
};

struct FdbEntry {
  std::string mac;   // remote container, "02:42:0a:00:00:05"
  Ipv4Address vtep;  // remote host's underlay address
  auto operator<=>(const FdbEntry&) const = default;
};

struct NeighborEntry {
  Ipv4Address ip;   // remote container address
  std::string mac;  // its MAC
  auto operator<=>(const NeighborEntry&) const = default;
};

// Creates the device if missing (down, enslaved to config.bridge), then
// makes sure that it is enslaved, its bridge port does not learn, its MTU
// is config.mtu (when not 0) and it is up. Returns the device.
//
// An existing device with the same VNI, port, local address, underlay
// device, source ports (when config gives them), learning off and proxy on
// is kept as it is, with all its FDB and
// neighbour entries: that is what a daemon restart must not disturb. An
// existing one that differs in any of those is Error(conflict), naming the
// field, and is left alone: those are the identity of the tunnel, and
// recreating it silently would drop every entry and cut live traffic; the
// caller decides (delete_vxlan, then ensure again). A name taken by another
// kind of link is Error(conflict); a missing bridge or underlay device is
// Error(not_found); a VNI outside 1..2^24-1, port 0 or source ports other
// than 0/0 or 1 <= min < max is Error(invalid_argument).
VxlanInfo ensure_vxlan(NetlinkSocket& nl, const VxlanConfig& config);

// nullopt if there is no link by that name; Error(conflict) if the link is
// not a VXLAN device. One request.
std::optional<VxlanInfo> find_vxlan(NetlinkSocket& nl, const std::string& name);

// Deletes the device (and with it all its entries); false if it did not
// exist. Error(conflict) if the name is another kind of link.
bool delete_vxlan(NetlinkSocket& nl, const std::string& name);

// Hairpin mode of a bridge port: the bridge may send a frame back out of
// the port it came in by. A container's port needs it for the container to
// reach itself through a service VIP: with br_netfilter, a packet DNATed to
// an address behind the bridge it arrived on is bridged, not routed, and
// would otherwise be dropped there. Error(not_found) if the link is gone.
void set_port_hairpin(NetlinkSocket& nl, const std::string& port, bool on);

// Static FDB entry MAC -> VTEP on the device (NTF_SELF, permanent), plus a
// static bridge entry for the MAC on the device's port (see the top).
// Idempotent, and replaces the VTEP if the MAC is known elsewhere (a
// container moved). Two requests.
void add_fdb(NetlinkSocket& nl, int vxlan_index, const std::string& mac, Ipv4Address vtep);
// Removes both; true if the device had an entry for the MAC.
bool remove_fdb(NetlinkSocket& nl, int vxlan_index, const std::string& mac);
// The device's own (NTF_SELF) entries that have a remote address, for
// reconciliation. One dump.
std::vector<FdbEntry> list_fdb(NetlinkSocket& nl, int vxlan_index);

// Permanent neighbour entry IP -> MAC on the device: what `proxy` answers
// ARP requests with. Idempotent; replaces the MAC if it changed. One request.
void add_neighbor(NetlinkSocket& nl, int vxlan_index, Ipv4Address ip, const std::string& mac);
// True if there was an entry for the IP.
bool remove_neighbor(NetlinkSocket& nl, int vxlan_index, Ipv4Address ip);
// The device's permanent IPv4 neighbour entries. One dump.
std::vector<NeighborEntry> list_neighbors(NetlinkSocket& nl, int vxlan_index);

}  // namespace swarmnet::kernel
