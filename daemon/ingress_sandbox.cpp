#include "daemon/ingress_sandbox.hpp"

#include "common/error.hpp"
#include "common/log.hpp"
#include "daemon/load_balancing.hpp"
#include "kernel/nftables.hpp"

namespace swarmnet::daemon {

namespace {

// The sandbox's own filter and NAT. It forwards only what its balancer
// chose (DNATed here), transit from other nodes' sandboxes to this node's
// tasks (ingress0 -> gw0), and the replies of both; it masquerades what it
// balanced, so each reply comes back through the sandbox that chose.
std::string sandbox_ruleset() {
  return "add table inet swarmnet-ingress\n"
         "flush table inet swarmnet-ingress\n"
         "add chain inet swarmnet-ingress forward { type filter hook forward priority filter; policy drop; }\n"
         "add rule inet swarmnet-ingress forward ct state established,related accept\n"
         "add rule inet swarmnet-ingress forward ct status dnat accept comment \"balanced here\"\n"
         "add rule inet swarmnet-ingress forward iifname \"ingress0\" oifname \"gw0\" accept "
         "comment \"another node's sandbox to a task of this node\"\n"
         "add chain inet swarmnet-ingress postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
         "add rule inet swarmnet-ingress postrouting ct status dnat masquerade "
         "comment \"replies come back through this sandbox\"\n";
}

}  // namespace

IngressSandbox::IngressSandbox(const IngressSandboxConfig& config)
    : config_(config), netns_(kernel::Netns::create("the ingress sandbox")), host_(kernel::NetlinkSocket::open()) {
  try {
    build();
  } catch (...) {
    teardown();
    throw;
  }
}

// The links go with the sandbox's namespace when the descriptor closes. The
// host's route into the sandbox stays on purpose: while swarmnetd is down,
// packets DNATed to an ingress VIP die on the gateway bridge instead of
// following the default route out of the node.
IngressSandbox::~IngressSandbox() { balancer_.reset(); }

Ipv4Address IngressSandbox::host_address() const {
  return Ipv4Address(config_.gateway_subnet.network().value() + 1);
}
Ipv4Address IngressSandbox::sandbox_address() const {
  return Ipv4Address(config_.gateway_subnet.network().value() + 2);
}

void IngressSandbox::build() {
  const unsigned length = config_.gateway_subnet.length();
  // The gateway bridge, made on first need and kept (like docker_gwbridge).
  host_.ensure_bridge(kGatewayBridge, 1500);
  host_.add_address(kGatewayBridge, Ipv4Prefix(host_address(), length));
  // localhost:PUBLISHED in ingress mode leaves through it from 127.0.0.1
  // until masqueraded (the firewall's chain localnet drops what comes to
  // 127.0.0.0/8 from outside).
  kernel::write_sysctl(std::string("net/ipv4/conf/") + kGatewayBridge + "/route_localnet", "1");
  host_.delete_link(kGatewayBridgeSandboxLink);  // a previous run's, if its sandbox still lives
  host_.delete_link(config_.host_link);
  host_.create_veth(kGatewayBridgeSandboxLink, kSandboxGatewayLink, netns_, 1500, "");
  host_.set_master(kGatewayBridgeSandboxLink, kGatewayBridge);
  host_.set_up(kGatewayBridgeSandboxLink);
  host_.create_veth(config_.host_link, kSandboxIngressLink, netns_, config_.ingress_mtu, config_.mac);
  host_.set_master(config_.host_link, config_.ingress_bridge);
  host_.set_up(config_.host_link);

  sandbox_.emplace(kernel::NetlinkSocket::open_in(netns_));
  sandbox_->set_up("lo");
  sandbox_->add_address(kSandboxGatewayLink, Ipv4Prefix(sandbox_address(), length));
  sandbox_->set_up(kSandboxGatewayLink);
  sandbox_->add_address(kSandboxIngressLink, Ipv4Prefix(config_.address, config_.ingress_subnet.length()));
  sandbox_->set_up(kSandboxIngressLink);
  sandbox_->replace_route(Ipv4Prefix(Ipv4Address(0), 0), host_address(), kSandboxGatewayLink);

  {
    kernel::NetnsGuard inside(netns_);
    kernel::write_sysctl("net/ipv4/ip_forward", "1");
    // Replies of local tasks arrive on gw0 from addresses routed there by
    // /32 routes; loose mode keeps the check without tripping on them.
    kernel::write_sysctl("net/ipv4/conf/all/rp_filter", "2");
    kernel::NftContext nft;
    nft.run(sandbox_ruleset());
    balancer_ = choose_balancer(config_.lb_backend);  // its sockets stay bound to the sandbox
  }
  // The host sends the ingress VIPs (the whole ingress subnet: the host has
  // no address there) into the sandbox.
  host_.replace_route(config_.ingress_subnet, sandbox_address(), kGatewayBridge);
  spdlog::info("routing mesh: ingress sandbox up, {} on the ingress network, gateway bridge {} {}/{}",
               config_.address.str(), kGatewayBridge, host_address().str(), length);
}

// After a failed build: nothing of it stays.
void IngressSandbox::teardown() noexcept {
  try {
    host_.delete_route(config_.ingress_subnet);
    host_.delete_link(kGatewayBridgeSandboxLink);
    host_.delete_link(config_.host_link);
  } catch (const std::exception& e) {
    spdlog::warn("routing mesh: removing the ingress sandbox's links: {}", e.what());
  }
}

void IngressSandbox::sync_routes(const std::map<Ipv4Address, std::optional<Ipv4Address>>& routes) {
  for (const auto& [task, via] : routes_) {
    if (!routes.count(task)) sandbox_->delete_route(Ipv4Prefix(task, 32));
  }
  for (const auto& [task, via] : routes) {
    auto it = routes_.find(task);
    if (it != routes_.end() && it->second == via) continue;
    if (via) {
      sandbox_->replace_route(Ipv4Prefix(task, 32), *via, kSandboxIngressLink);
    } else {
      sandbox_->replace_route(Ipv4Prefix(task, 32), host_address(), kSandboxGatewayLink);
    }
  }
  routes_ = routes;
}

}  // namespace swarmnet::daemon
