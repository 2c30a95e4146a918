#include <spdlog/spdlog.h>

#include <set>

#include "daemon/dataplane.hpp"
#include "daemon/encryption.hpp"
#include "daemon/firewall.hpp"
#include "common/error.hpp"
#include "kernel/netlink.hpp"
#include "kernel/vxlan.hpp"

namespace swarmnet::daemon {

namespace {

// The VXLAN device of the network whose bridge this is: swn-ID -> swx-ID.
std::string vxlan_of_bridge(const std::string& bridge) { return "swx-" + bridge.substr(4); }

class LinuxDataplane final : public Dataplane {
 public:
  LinuxDataplane(uint16_t vxlan_port, unsigned dns_queries_per_second, uint16_t gossip_port, uint16_t metrics_port)
      : nl_(kernel::NetlinkSocket::open()), vxlan_port_(vxlan_port) {
    // Containers reach the outside through this host (routed, masqueraded).
    enable_ip_forward();
    firewall_.set_dns_rate_limit(dns_queries_per_second);
    firewall_.set_underlay_ports({vxlan_port, gossip_port, metrics_port});
    firewall_.ensure_base();
  }

  void ensure_network(const NetworkRecord& n, const std::string& bridge) override {
    const bool created = nl_.ensure_bridge(bridge, n.mtu);
    // A network without containers (the routing mesh's) carries the
    // sandboxes' traffic only: the host routes that subnet into its sandbox.
    if (n.carries_containers()) nl_.add_address(bridge, Ipv4Prefix(n.gateway, n.subnet.length()));
    // localhost:PUBLISHED in host mode: DNATed to a container, the packet
    // leaves through this bridge from 127.0.0.1 until it is masqueraded.
    // What that opens (packets to 127.0.0.0/8 coming in by the bridge) the
    // firewall's chain localnet closes.
    if (n.carries_containers()) kernel::write_sysctl("net/ipv4/conf/" + bridge + "/route_localnet", "1");
    if (created) {
      spdlog::info("network {}: bridge {} created with gateway {}/{} mtu {}", n.name, bridge,
                   n.gateway.str(), n.subnet.length(), n.mtu);
    }
  }

  void remove_network(const std::string& bridge) override {
    if (kernel::delete_vxlan(nl_, vxlan_of_bridge(bridge))) {
      spdlog::info("VXLAN device {} removed", vxlan_of_bridge(bridge));
    }
    if (nl_.delete_link(bridge)) spdlog::info("bridge {} removed", bridge);
  }

  void remove_host_link(const std::string& ifname) override {
    if (nl_.delete_link(ifname)) spdlog::debug("host link {} removed", ifname);
  }

  void ensure_overlay(const NetworkRecord& n, const std::string& bridge, Ipv4Address vtep) override {
    kernel::VxlanConfig config;
    config.name = vxlan_of_bridge(bridge);
    config.vni = n.vni;
    config.port = vxlan_port_;
    config.local = vtep;
    config.mtu = n.mtu;
    config.bridge = bridge;
    // What its ESP policies select (daemon/encryption.hpp).
    if (n.encrypted) {
      config.source_port_min = encryption::kSourcePortMin;
      config.source_port_max = encryption::kSourcePortMax;
    }
    try {
      kernel::ensure_vxlan(nl_, config);
    } catch (const Error& e) {
      if (e.code() != Errc::conflict) throw;
      // A device of ours left with other parameters (say, the node's
      // address changed): its entries are stale anyway, so start afresh.
      spdlog::warn("network {}: recreating {}: {}", n.name, config.name, e.what());
      kernel::delete_vxlan(nl_, config.name);
      kernel::ensure_vxlan(nl_, config);
    }
  }

  void sync_remote_endpoints(const NetworkRecord& n,
                             const std::vector<RemoteEndpoint>& remote) override {
    const std::string name = vxlan_name(n.id);
    auto vx = kernel::find_vxlan(nl_, name);
    if (!vx) return;  // no overlay on this host (not in a cluster)
    const int index = vx->link.index;

    const RemoteEntries want = remote_entries(remote);
    // Diff against the kernel, so unchanged entries are never touched and
    // traffic to them never stops (a daemon restart reconciles this way).
    auto have_fdb_list = kernel::list_fdb(nl_, index);
    auto have_neigh_list = kernel::list_neighbors(nl_, index);
    std::set<kernel::FdbEntry> have_fdb(have_fdb_list.begin(), have_fdb_list.end());
    std::set<kernel::NeighborEntry> have_neigh(have_neigh_list.begin(), have_neigh_list.end());
    size_t added = 0, removed = 0;
    for (const auto& f : have_fdb) {
      if (!want.fdb.count(f.mac)) removed += kernel::remove_fdb(nl_, index, f.mac) ? 1 : 0;
    }
    for (const auto& nb : have_neigh) {
      if (!want.neighbors.count(nb.ip)) removed += kernel::remove_neighbor(nl_, index, nb.ip) ? 1 : 0;
    }
    for (const auto& [mac, vtep] : want.fdb) {
      if (!have_fdb.count(kernel::FdbEntry{mac, vtep})) {
        kernel::add_fdb(nl_, index, mac, vtep);
        ++added;
      }
    }
    for (const auto& [ip, mac] : want.neighbors) {
      if (!have_neigh.count(kernel::NeighborEntry{ip, mac})) {
        kernel::add_neighbor(nl_, index, ip, mac);
        ++added;
      }
    }
    if (added || removed) {
      spdlog::info("network {}: overlay {} now has {} remote endpoint(s) (+{} -{} entries)", n.name,
                   name, remote.size(), added, removed);
    }
  }

  bool update_remote_endpoints(const NetworkRecord& n, const RemoteEntryChanges& changes) override {
    const std::string name = vxlan_name(n.id);
    // One link lookup by name, no dump.
    auto vx = kernel::find_vxlan(nl_, name);
    if (!vx) return false;
    const int index = vx->link.index;
    // Neighbour entries are removed before the FDB entries and added after
    // them, so the device never answers ARP for a MAC it cannot reach.
    for (const auto& [ip, mac] : changes.neighbors) {
      if (!mac) kernel::remove_neighbor(nl_, index, ip);
    }
    for (const auto& [mac, vtep] : changes.fdb) {
      if (vtep) {
        kernel::add_fdb(nl_, index, mac, *vtep);
      } else {
        kernel::remove_fdb(nl_, index, mac);
      }
    }
    for (const auto& [ip, mac] : changes.neighbors) {
      if (mac) kernel::add_neighbor(nl_, index, ip, *mac);
    }
    spdlog::debug("network {}: overlay {}: {} fdb and {} neighbour change(s)", n.name, name,
                  changes.fdb.size(), changes.neighbors.size());
    return true;
  }

  void sync_firewall(const std::vector<NetworkRecord>& networks) override {
    std::vector<FirewallNetwork> want;
    for (const auto& n : networks) {
      want.push_back(FirewallNetwork{n.id, bridge_name(n.id), n.subnet, n.internal});
    }
    auto diff = firewall_.check(want);
    if (diff.empty()) return;
    firewall_.reconcile(want);
    spdlog::info("firewall: {} change(s) for {} network(s)", diff.size(), networks.size());
  }

  void set_encrypted_vnis(const std::set<uint32_t>& vnis) override {
    firewall_.set_encrypted_vnis(vnis);
  }

  void set_underlay_peers(const std::vector<Ipv4Address>& members) override {
    firewall_.set_members(members);
    std::string list;
    for (const auto& m : members) list += (list.empty() ? "" : ", ") + m.str();
    spdlog::info("firewall: VXLAN accepted from {} member address(es): {}", members.size(),
                 list.empty() ? "none" : list);
  }

  unsigned underlay_mtu() override {
    for (const auto& r : nl_.routes()) {
      if (r.destination.length() == 0 && r.oif_index != 0) {
        if (auto link = nl_.find_link(r.oif_index)) return link->mtu;
      }
    }
    return 1500;
  }

  std::vector<HostRoute> host_routes() override {
    std::vector<HostRoute> out;
    for (const auto& r : nl_.routes()) {
      if (r.destination.length() == 0) continue;
      std::string device;
      if (r.oif_index != 0) {
        if (auto link = nl_.find_link(r.oif_index)) device = link->name;
      }
      if (device.rfind("swn-", 0) == 0 || device.rfind("swx-", 0) == 0) continue;
      out.push_back(HostRoute{Ipv4Prefix(r.destination.network(), r.destination.length()), device});
    }
    return out;
  }

 private:
  kernel::NetlinkSocket nl_;
  uint16_t vxlan_port_;
  Firewall firewall_;
};

}  // namespace

std::unique_ptr<Dataplane> make_linux_dataplane(uint16_t vxlan_port, unsigned dns_queries_per_second,
                                                uint16_t gossip_port, uint16_t metrics_port) {
  return std::make_unique<LinuxDataplane>(vxlan_port, dns_queries_per_second, gossip_port, metrics_port);
}

}  // namespace swarmnet::daemon
