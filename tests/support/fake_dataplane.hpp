// A Dataplane that records what the controller asked for instead of touching
// the kernel, so the controller's logic is tested without root.
#pragma once

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
    this->remote[n.id] = remote;
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
  std::map<std::string, std::vector<daemon::RemoteEndpoint>> remote;  // network id -> entries
  std::vector<std::string> removed_links;
  std::set<std::string> firewall;  // "subnet [internal]" per network
  std::vector<Ipv4Address> underlay_peers;
  std::set<uint32_t> encrypted_vnis;
  int underlay_peer_calls = 0;
  unsigned mtu = 1500;
  std::vector<daemon::HostRoute> routes;
  int ensure_calls = 0;
  bool fail_next_ensure = false;
};

}  // namespace swarmnet::testing
