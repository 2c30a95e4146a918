#include "daemon/ingress/ingress_sandbox.hpp"

#include <cctype>
#include <cstdio>

#include "common/error.hpp"
#include "common/log.hpp"
#include "daemon/load_balancing.hpp"
#include "kernel/nftables.hpp"

namespace swarmnet::daemon {

namespace {

constexpr uint32_t kPeerRulePriority = 100;

// "02:42:0a:ff:00:02": the MACs come from other nodes' records and go into
// an nft script, so anything else is refused rather than quoted.
bool valid_mac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    const char c = mac[i];
    if (i % 3 == 2 ? c != ':' : !std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

// The sandbox's own filter, marks and NAT. It forwards only what its
// balancer chose (DNATed here), transit from other nodes' sandboxes to this
// node's tasks (ingress0 -> gw0), and the replies of both.
std::string sandbox_ruleset(const IngressSandboxConfig& config) {
  const std::string t = "inet swarmnet-ingress";
  std::string s = "add table " + t + "\nflush table " + t + "\n";
  s += "add map " + t + " peer-marks { type ether_addr : mark; }\n";
  // auto-merge: a member's address may fall inside one of the subnets.
  s += "add set " + t + " inside { type ipv4_addr; flags interval; auto-merge; }\n";
  s += "add chain " + t + " prerouting { type filter hook prerouting priority mangle; policy accept; }\n";
  s += "add rule " + t + " prerouting iifname \"ingress0\" ct state new ct mark set ether saddr map @peer-marks "
       "comment \"the sandbox that balanced this request to a task of this node\"\n";
  s += "add rule " + t + " prerouting ct direction reply ct mark != 0 meta mark set ct mark "
       "comment \"its replies go back to that sandbox (a rule and table per node)\"\n";
  s += "add chain " + t + " forward { type filter hook forward priority filter; policy drop; }\n";
  s += "add rule " + t + " forward ct state established,related accept\n";
  s += "add rule " + t + " forward ct status dnat accept comment \"balanced here\"\n";
  s += "add rule " + t + " forward iifname \"ingress0\" oifname \"gw0\" accept "
       "comment \"another node's sandbox to a task of this node\"\n";
  s += "add chain " + t + " postrouting { type nat hook postrouting priority srcnat; policy accept; }\n";
  if (config.keep_client_address) {
    s += "add rule " + t + " postrouting ct status dnat ip saddr @inside masquerade "
         "comment \"a client inside the cluster: the task's own host may hold its address\"\n";
  } else {
    s += "add rule " + t + " postrouting ct status dnat masquerade "
         "comment \"replies come back through this sandbox\"\n";
  }
  return s;
}

// The host's side: connections out of the sandbox are marked, their
// replies routed back into it (kMeshReplyTable), and only DNATed flows
// (published ports) go into the gateway bridge.
std::string host_ruleset(const std::string& ingress_bridge) {
  const std::string t = std::string("inet ") + kMeshHostTable;
  const std::string mark = hex(kMeshReplyMark);
  const std::string bridge = std::string("\"") + kGatewayBridge + "\"";
  std::string s = "add table " + t + "\nflush table " + t + "\n";
  // With br_netfilter the host's conntrack also sees the frames bridged
  // between the sandbox and VXLAN on the ingress bridge. A request to a task
  // of this node crosses it, then comes out of the sandbox: one connection
  // for the host, whose mark would then send the reply's VXLAN packet (which
  // takes the inner packet's mark) into the sandbox. Not tracked there, the
  // host's connection starts at the gateway bridge, and bridged frames cost
  // no conntrack work.
  s += "add chain " + t + " raw { type filter hook prerouting priority raw; policy accept; }\n";
  s += "add rule " + t + " raw iifname \"" + ingress_bridge +
       "\" notrack comment \"bridged between the sandbox and VXLAN\"\n";
  s += "add chain " + t + " prerouting { type filter hook prerouting priority mangle; policy accept; }\n";
  // Every packet of the host passes these chains, the overlay's bulk too:
  // each rule's cheapest test comes first (a state compare fails an
  // untracked or established packet before an interface name is read).
  s += "add rule " + t + " prerouting ct state new iifname " + bridge + " ct mark set " + mark +
       " comment \"from the ingress sandbox\"\n";
  s += "add rule " + t + " prerouting ct direction reply ct mark " + mark + " meta mark set " + mark +
       " comment \"replies go back into the sandbox\"\n";
  // The routing mesh's shortcut DNATs a request straight to a task of this
  // node (kernel/published_ports.hpp, Spread): a task calling its own
  // service's port may get itself, and could not answer a packet from its
  // own address; such a flow leaves from the bridge's address instead.
  s += "add set " + t + " hairpin { type ipv4_addr . ipv4_addr; }\n";
  s += "flush set " + t + " hairpin\n";  // an earlier run's (flush table keeps a set's elements)
  s += "add chain " + t + " postrouting { type nat hook postrouting priority srcnat; policy accept; }\n";
  s += "add rule " + t + " postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade "
       "comment \"a task DNATed straight to itself\"\n";
  // The output interface's name is read once per forwarded packet, not
  // once per rule.
  s += "add chain " + t + " forward { type filter hook forward priority filter - 5; policy accept; }\n";
  s += "add chain " + t + " into-sandbox\n";
  s += "add rule " + t + " forward oifname " + bridge + " jump into-sandbox\n";
  s += "add rule " + t + " into-sandbox ct direction reply accept\n";
  s += "add rule " + t + " into-sandbox ct status dnat accept comment \"a published port\"\n";
  s += "add rule " + t + " into-sandbox counter drop comment \"the sandbox, its VIPs and tasks only through a published port\"\n";
  return s;
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
  // Requests from outside clients arrive on it, whose route is elsewhere.
  kernel::write_sysctl(std::string("net/ipv4/conf/") + kGatewayBridge + "/rp_filter", "2");
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
    nft_.emplace();  // bound to the sandbox from now on
    nft_->run(sandbox_ruleset(config_));
    balancer_ = choose_balancer(config_.lb_backend);  // its sockets stay bound to the sandbox
  }
  sync_peers({}, {});
  // The host sends the ingress VIPs (the whole ingress subnet: the host has
  // no address there) into the sandbox, and the replies of what came out of
  // it back in.
  kernel::NftContext host_nft;
  host_nft.run(host_ruleset(config_.ingress_bridge));
  host_.replace_route(Ipv4Prefix(Ipv4Address(0), 0), sandbox_address(), kGatewayBridge, kMeshReplyTable);
  host_.add_mark_rule(kMeshReplyMark, kMeshReplyTable, kMeshRulePriority);
  host_.replace_route(config_.ingress_subnet, sandbox_address(), kGatewayBridge);
  spdlog::info("routing mesh: ingress sandbox up, {} on the ingress network, gateway bridge {} {}/{}",
               config_.address.str(), kGatewayBridge, host_address().str(), length);
}

// After a failed build: nothing of it stays.
void IngressSandbox::teardown() noexcept {
  try {
    host_.delete_route(config_.ingress_subnet);
    host_.delete_mark_rule(kMeshReplyMark, kMeshReplyTable, kMeshRulePriority);
    host_.delete_route(Ipv4Prefix(Ipv4Address(0), 0), kMeshReplyTable);
    kernel::NftContext().run(std::string("add table inet ") + kMeshHostTable + "\ndelete table inet " + kMeshHostTable);
    host_.delete_link(kGatewayBridgeSandboxLink);
    host_.delete_link(config_.host_link);
  } catch (const std::exception& e) {
    spdlog::warn("routing mesh: removing the ingress sandbox's links: {}", e.what());
  }
}

void IngressSandbox::set_route(Ipv4Address task, std::optional<Ipv4Address> via) {
  auto it = routes_.find(task);
  if (it != routes_.end() && it->second == via) return;
  if (via) {
    sandbox_->replace_route(Ipv4Prefix(task, 32), *via, kSandboxIngressLink);
  } else {
    sandbox_->replace_route(Ipv4Prefix(task, 32), host_address(), kSandboxGatewayLink);
  }
  routes_[task] = via;
}

void IngressSandbox::remove_route(Ipv4Address task) {
  if (routes_.erase(task)) sandbox_->delete_route(Ipv4Prefix(task, 32));
}

void IngressSandbox::set_hairpin(const std::set<Ipv4Address>& tasks) {
  if (hairpin_ == tasks) return;
  std::string script = std::string("flush set inet ") + kMeshHostTable + " hairpin\n";
  if (!tasks.empty()) {
    script += std::string("add element inet ") + kMeshHostTable + " hairpin { ";
    bool first = true;
    for (Ipv4Address task : tasks) {
      script += (first ? "" : ", ") + task.str() + " . " + task.str();
      first = false;
    }
    script += " }\n";
  }
  kernel::NftContext().run(script);
  hairpin_ = tasks;
}

void IngressSandbox::sync_peers(const std::map<Ipv4Address, std::string>& sandboxes,
                                const std::vector<Ipv4Address>& members) {
  if (members_ && peers_ == sandboxes && *members_ == members) return;
  // Routes before marks: a mark is only set once its way back exists.
  for (const auto& [address, mac] : sandboxes) {
    if (peers_.count(address)) continue;
    sandbox_->replace_route(Ipv4Prefix(Ipv4Address(0), 0), address, kSandboxIngressLink, address.value());
    sandbox_->add_mark_rule(address.value(), address.value(), kPeerRulePriority);
  }
  std::string script = "flush map inet swarmnet-ingress peer-marks\n";
  for (const auto& [address, mac] : sandboxes) {
    if (!valid_mac(mac)) {
      spdlog::warn("routing mesh: the sandbox {} has an invalid MAC \"{}\": replies to what it balances to this "
                   "node's tasks cannot find their way back",
                   address.str(), mac.substr(0, 32));
      continue;
    }
    script += "add element inet swarmnet-ingress peer-marks { " + mac + " : " + hex(address.value()) + " }\n";
  }
  if (!members_ || *members_ != members) {
    script += "flush set inet swarmnet-ingress inside\n";
    script += "add element inet swarmnet-ingress inside { " + config_.gateway_subnet.str() + ", " +
              config_.ingress_subnet.str();
    for (const auto& m : members) script += ", " + m.str();
    script += " }\n";
  }
  nft_->run(script);
  for (const auto& [address, mac] : peers_) {
    if (sandboxes.count(address)) continue;
    sandbox_->delete_mark_rule(address.value(), address.value(), kPeerRulePriority);
    sandbox_->delete_route(Ipv4Prefix(Ipv4Address(0), 0), address.value());
  }
  peers_ = sandboxes;
  members_ = members;
}

}  // namespace swarmnet::daemon
