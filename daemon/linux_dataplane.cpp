#include <spdlog/spdlog.h>

#include "daemon/dataplane.hpp"
#include "kernel/netlink.hpp"

namespace swarmnet::daemon {

namespace {

class LinuxDataplane final : public Dataplane {
 public:
  LinuxDataplane() : nl_(kernel::NetlinkSocket::open()) {}

  void ensure_network(const NetworkRecord& n, const std::string& bridge) override {
    bool existed = nl_.find_link(bridge).has_value();
    nl_.ensure_bridge(bridge, n.mtu);
    nl_.add_address(bridge, Ipv4Prefix(n.gateway, n.subnet.length()));
    if (!existed) {
      spdlog::info("network {}: bridge {} created with gateway {}/{} mtu {}", n.name, bridge,
                   n.gateway.str(), n.subnet.length(), n.mtu);
    }
  }

  void remove_network(const std::string& bridge) override {
    if (nl_.delete_link(bridge)) spdlog::info("bridge {} removed", bridge);
  }

  void remove_host_link(const std::string& ifname) override {
    if (nl_.delete_link(ifname)) spdlog::debug("host link {} removed", ifname);
  }

  unsigned underlay_mtu() override {
    for (const auto& r : nl_.routes()) {
      if (r.destination.length() == 0 && r.oif_index != 0) {
        if (auto link = nl_.find_link(r.oif_index)) return link->mtu;
      }
    }
    return 1500;
  }

 private:
  kernel::NetlinkSocket nl_;
};

}  // namespace

std::unique_ptr<Dataplane> make_linux_dataplane() { return std::make_unique<LinuxDataplane>(); }

}  // namespace swarmnet::daemon
