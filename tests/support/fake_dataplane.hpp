// A Dataplane that records what the controller asked for instead of touching
// the kernel, so the controller's logic is tested without root.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "daemon/dataplane.hpp"

namespace swarmnet::testing {

class FakeDataplane : public daemon::Dataplane {
 public:
  void ensure_network(const daemon::NetworkRecord& n, const std::string& bridge) override {
    if (fail_next_ensure) {
      fail_next_ensure = false;
      throw Error(Errc::internal, "injected kernel failure");
    }
    bridges[bridge] = n.gateway.str() + "/" + std::to_string(n.subnet.length());
    ++ensure_calls;
  }
  void remove_network(const std::string& bridge) override {
    bridges.erase(bridge);
    overlays.erase(bridge);
  }
  void ensure_overlay(const daemon::NetworkRecord& n, const std::string& bridge,
                      Ipv4Address vtep) override {
    overlays[bridge] = "vni " + std::to_string(n.vni) + " local " + vtep.str();
  }
  void sync_remote_endpoints(const daemon::NetworkRecord& n,
                             const std::vector<daemon::RemoteEndpoint>& remote) override {
    entries[n.id] = daemon::remote_entries(remote);
    show(n.id);
    ++full_syncs;
  }
  bool update_remote_endpoints(const daemon::NetworkRecord& n,
                               const daemon::RemoteEntryChanges& changes) override {
    if (!overlays.count(daemon::bridge_name(n.id))) return false;
    auto& e = entries[n.id];
    for (const auto& [mac, vtep] : changes.fdb) {
      if (vtep) {
        e.fdb[mac] = *vtep;
      } else {
        e.fdb.erase(mac);
      }
    }
    for (const auto& [ip, mac] : changes.neighbors) {
      if (mac) {
        e.neighbors[ip] = *mac;
      } else {
        e.neighbors.erase(ip);
      }
    }
    show(n.id);
    ++remote_updates;
    return true;
  }
  void remove_host_link(const std::string& ifname) override { removed_links.push_back(ifname); }
  void sync_firewall(const std::vector<daemon::NetworkRecord>& networks) override {
    firewall.clear();
    for (const auto& n : networks) firewall.insert(n.subnet.str() + (n.internal ? " internal" : ""));
  }
  void set_encrypted_vnis(const std::set<uint32_t>& vnis) override { encrypted_vnis = vnis; }
  void set_underlay_peers(const std::vector<Ipv4Address>& members) override {
    underlay_peers = members;
    ++underlay_peer_calls;
  }
  unsigned underlay_mtu() override { return mtu; }
  std::vector<daemon::HostRoute> host_routes() override { return routes; }

  std::map<std::string, std::string> bridges;   // name -> gateway CIDR
  std::map<std::string, std::string> overlays;  // bridge -> "vni N local IP"
  // network id -> the VXLAN device's entries, as the kernel would hold them
  std::map<std::string, daemon::RemoteEntries> entries;
  // network id -> the same as endpoints (a neighbour entry with its MAC's
  // FDB entry), sorted, as `ip neigh` and `bridge fdb` side by side show them
  std::map<std::string, std::vector<daemon::RemoteEndpoint>> remote;
  int full_syncs = 0;      // sync_remote_endpoints calls (each a dump of the kernel's tables)
  int remote_updates = 0;  // update_remote_endpoints calls that found the device
  std::vector<std::string> removed_links;
  std::set<std::string> firewall;  // "subnet [internal]" per network
  std::vector<Ipv4Address> underlay_peers;
  std::set<uint32_t> encrypted_vnis;
  int underlay_peer_calls = 0;
  unsigned mtu = 1500;
  std::vector<daemon::HostRoute> routes;
  int ensure_calls = 0;
  bool fail_next_ensure = false;

 private:
  void show(const std::string& network_id) {
    auto& out = remote[network_id];
    out.clear();
    const auto& e = entries[network_id];
    for (const auto& [ip, mac] : e.neighbors) {
      auto f = e.fdb.find(mac);
      if (f != e.fdb.end()) out.push_back(daemon::RemoteEndpoint{ip, mac, f->second});
    }
    std::sort(out.begin(), out.end());
  }
};

}  // namespace swarmnet::testing
