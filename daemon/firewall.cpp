#include "daemon/firewall.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <sstream>
#include <utility>

#include "common/error.hpp"
#include "kernel/netlink.hpp"

namespace swarmnet::daemon {
namespace firewall_script {
namespace {

namespace json = boost::json;

const std::string kPrefix = "inet swarmnet";

// Interface names end up inside double quotes in nft scripts, so anything
// beyond the kernel's own name rules is refused rather than escaped.
void validate(const FirewallNetwork& n) {
  const bool name_ok = !n.bridge.empty() && n.bridge.size() < 16 &&
                       std::all_of(n.bridge.begin(), n.bridge.end(), [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
                       });
  if (!name_ok) {
    throw Error(Errc::invalid_argument,
                "firewall: invalid bridge name \"" + n.bridge + "\" for network " + n.id);
  }
  if (!n.subnet.is_network()) {
    throw Error(Errc::invalid_argument, "firewall: subnet " + n.subnet.str() + " of network " +
                                            n.id + " has host bits set");
  }
  // A /0 would put every address of the internet into `subnets`.
  if (n.subnet.length() == 0) {
    throw Error(Errc::invalid_argument,
                "firewall: subnet 0.0.0.0/0 of network " + n.id + " would match every address");
  }
}

std::string quoted(const std::string& name) {
  return "\"" + name + "\"";
}

// The elements one network contributes, set by set.
struct NetworkElements {
  std::vector<std::pair<std::string, std::string>> always;  // (set, element)
  std::pair<std::string, std::string> kind;                 // internal or masquerade
  std::pair<std::string, std::string> other_kind;           // the one it must not be in
};

NetworkElements elements_of(const FirewallNetwork& n) {
  validate(n);
  const std::string bridge = quoted(n.bridge);
  const std::string subnet = n.subnet.str();
  NetworkElements e;
  e.always = {{"bridges", bridge},
              {"subnets", subnet},
              {"bridge-subnets", bridge + " . " + subnet},
              {"same-bridge", bridge + " . " + bridge}};
  std::pair<std::string, std::string> internal{"internal-bridges", bridge};
  std::pair<std::string, std::string> masquerade{"masquerade-subnets", subnet};
  e.kind = n.internal ? internal : masquerade;
  e.other_kind = n.internal ? masquerade : internal;
  return e;
}

std::string add_element(const std::string& set, const std::string& element) {
  return "add element " + kPrefix + " " + set + " { " + element + " }\n";
}

std::string delete_element(const std::string& set, const std::string& element) {
  return "delete element " + kPrefix + " " + set + " { " + element + " }\n";
}

// Adding an element that exists is no error (without `create`), and the
// transaction sees its own changes: add-then-delete removes an element
// whether or not it was there. (nft 1.0.6 has no `destroy` command.)
std::string ensure_absent(const std::string& set, const std::string& element) {
  return add_element(set, element) + delete_element(set, element);
}

// One component of an element as nft writes it in a script, from nft's
// JSON: `type` is the set's type for that component.
std::string render_component(const json::value& v, const std::string& type, bool interval) {
  if (v.is_string()) {
    std::string s(v.as_string());
    if (type == "ifname" || type == "string") return quoted(s);
    // nft lists a one-address interval without its length.
    if (interval && type == "ipv4_addr" && s.find('/') == std::string::npos) return s + "/32";
    return s;
  }
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_object()) {
    const json::object& o = v.as_object();
    if (auto* p = o.if_contains("prefix")) {
      const json::object& po = p->as_object();
      return std::string(po.at("addr").as_string()) + "/" +
             std::to_string(po.at("len").to_number<unsigned>());
    }
    if (auto* r = o.if_contains("range")) {
      const json::array& ra = r->as_array();
      return render_component(ra.at(0), type, false) + "-" +
             render_component(ra.at(1), type, false);
    }
  }
  throw Error(Errc::internal,
              "firewall: unexpected element in nft's listing: " + json::serialize(v));
}

std::string render_element(const json::value& v, const std::vector<std::string>& types,
                           bool interval) {
  // Elements with a comment, timeout or counter come wrapped.
  if (v.is_object()) {
    const json::object& o = v.as_object();
    if (auto* e = o.if_contains("elem"))
      return render_element(e->as_object().at("val"), types, interval);
    if (auto* c = o.if_contains("concat")) {
      const json::array& parts = c->as_array();
      if (parts.size() != types.size()) {
        throw Error(Errc::internal,
                    "firewall: element " + json::serialize(v) + " does not match the set's type");
      }
      std::string out;
      for (size_t i = 0; i < parts.size(); ++i) {
        if (i) out += " . ";
        out += render_component(parts[i], types[i], interval);
      }
      return out;
    }
  }
  return render_component(v, types.empty() ? "" : types.front(), interval);
}

}  // namespace

const std::vector<std::string>& set_names() {
  static const std::vector<std::string> names = {"bridges",          "subnets",
                                                 "bridge-subnets",   "same-bridge",
                                                 "internal-bridges", "masquerade-subnets"};
  return names;
}

std::string base(unsigned dns_queries_per_second, UnderlayPorts ports) {
  const std::string vxlan = std::to_string(ports.vxlan);
  const std::string gossip = std::to_string(ports.gossip);
  std::ostringstream s;
  s << "add table " << kPrefix << "\n";
  s << "add set " << kPrefix << " bridges { type ifname; }\n";
  s << "add set " << kPrefix << " subnets { type ipv4_addr; flags interval; }\n";
  s << "add set " << kPrefix << " bridge-subnets { type ifname . ipv4_addr; flags interval; }\n";
  s << "add set " << kPrefix << " same-bridge { type ifname . ifname; }\n";
  s << "add set " << kPrefix << " internal-bridges { type ifname; }\n";
  s << "add set " << kPrefix << " masquerade-subnets { type ipv4_addr; flags interval; }\n";
  s << "add set " << kPrefix << " members { type ipv4_addr; }\n";
  // Written by the load balancing (daemon/load_balancing.hpp), never here.
  s << "add map " << kPrefix << " node-addresses { type ifname : ipv4_addr; }\n";

  s << "add chain " << kPrefix
    << " forward { type filter hook forward priority filter - 10; policy accept; }\n";
  s << "add chain " << kPrefix << " from-network\n";
  s << "add chain " << kPrefix << " to-network\n";
  s << "add chain " << kPrefix << " published\n";
  s << "add chain " << kPrefix
    << " published-dnat { type nat hook prerouting priority dstnat; policy accept; }\n";
  s << "add chain " << kPrefix
    << " published-dnat-local { type nat hook output priority -100; policy accept; }\n";
  s << "add chain " << kPrefix
    << " egress-nat { type nat hook postrouting priority srcnat; policy accept; }\n";
  s << "add chain " << kPrefix
    << " localnet { type filter hook prerouting priority raw; policy accept; }\n";
  s << "add set " << kPrefix
    << " dns-clients { type ipv4_addr; flags dynamic,timeout; timeout 1m; size 65536; }\n";
  s << "add chain " << kPrefix
    << " dns-input { type filter hook input priority filter - 10; policy accept; }\n";
  // The limit lives in each element: flushed so a changed rate applies.
  s << "flush set " << kPrefix << " dns-clients\n";
  s << "flush chain " << kPrefix << " dns-input\n";
  s << "add chain " << kPrefix
    << " underlay-input { type filter hook input priority filter - 10; policy accept; }\n";
  s << "flush chain " << kPrefix << " underlay-input\n";
  // Filled from the packet path (from-network), never by the daemon; kept
  // across rewrites: a connection NATed before must stay tracked.
  s << "add set " << kPrefix << " dnat-clients { type ipv4_addr; flags dynamic; size 65536; }\n";
  s << "add chain " << kPrefix
    << " untracked { type filter hook prerouting priority raw; policy accept; }\n";
  s << "add chain " << kPrefix
    << " untracked-out { type filter hook output priority raw; policy accept; }\n";

  // `published`, `published-dnat` and `published-dnat-local` are not
  // flushed: their rules belong to the code that publishes ports.
  for (const char* chain :
       {"forward", "from-network", "to-network", "egress-nat", "localnet", "untracked", "untracked-out"}) {
    s << "flush chain " << kPrefix << " " << chain << "\n";
  }
  auto rule = [&](const char* chain, const std::string& body) {
    s << "add rule " << kPrefix << " " << chain << " " << body << "\n";
  };

  // Only traffic of swarmnet bridges is ours; the policy leaves the rest to
  // whatever else filters on this host. Matching on the bridges, not on the
  // subnets' addresses: a swarmnet subnet may also live on another plugin's
  // bridge (swarmnet-ipam under the reference bridge plugin), whose bridged
  // frames must pass; a packet can only reach one of our containers by
  // leaving through one of our bridges, which `oifname @bridges` catches.
  // The overlay's bulk, frames bridged within a network (br_netfilter:
  // iifname and oifname both the bridge), untracked by the chain
  // `untracked`, is accepted here by one rule: the same two lookups as
  // from-network's anti-spoofing and own-network rules, without the jump
  // and the rules before them. (An untracked packet has no ct status, so
  // from-network's first rule never applied to it.) Anything else, tracked
  // or not, goes on as before.
  rule("forward", "ct state untracked iifname . ip saddr @bridge-subnets iifname . ip daddr @bridge-subnets "
                  "accept comment \"bridged within a network\"");
  rule("forward", "iifname @bridges jump from-network");
  rule("forward", "oifname @bridges jump to-network");

  // The client of a NATed connection (a VIP, a published port reached from
  // a network) gets its replies bridged, from the backend's address: those
  // must meet conntrack to be translated back (see untracked). An untracked
  // packet fails this rule at its first expression.
  rule("from-network", "ct status dnat ct direction original add @dnat-clients { ip saddr } "
                       "comment \"its replies must be tracked\"");
  rule("from-network",
       "iifname . ip saddr != @bridge-subnets counter drop "
       "comment \"source outside the bridge's own subnet\"");
  // Every packet within a network, the overlay's bulk, is decided here,
  // after two lookups. (No member's address is in a network's subnet: the
  // drops below are about packets that leave it.)
  rule("from-network",
       "iifname . ip daddr @bridge-subnets accept "
       "comment \"own network: same host, or over VXLAN\"");
  // Masqueraded, a container's packet to another node would come from this
  // node's address, a member's: the other node could not tell it apart.
  rule("from-network", "ip daddr @members udp dport " + vxlan +
                           " counter drop comment \"VXLAN to a member: only this host tunnels\"");
  rule("from-network", "ip daddr @members meta l4proto { tcp, udp } th dport " + gossip +
                           " counter drop comment \"gossip of a member: not for containers\"");
  if (ports.metrics) {
    rule("from-network", "ip daddr @members tcp dport " + std::to_string(ports.metrics) +
                             " counter drop comment \"metrics of a member: not for containers\"");
  }
  rule("from-network",
       "ip daddr @subnets counter drop comment \"another swarmnet network, whatever the route\"");
  rule("from-network",
       "iifname . oifname @same-bridge accept "
       "comment \"bridged (br_netfilter): broadcast, multicast, IPv6 link-local\"");
  rule("from-network", "oifname @bridges counter drop comment \"routed into another bridge\"");
  rule("from-network",
       "meta nfproto != ipv4 counter drop comment \"networks are IPv4: no IPv6 egress\"");
  rule("from-network", "iifname @internal-bridges counter drop comment \"internal: no egress\"");
  rule("from-network", "accept comment \"egress (masqueraded in egress-nat)\"");

  rule("to-network", "ct state established,related accept comment \"replies to egress\"");
  rule("to-network",
       "iifname \"swn-gwbridge\" accept comment \"the routing mesh: the ingress sandbox forwards only what its "
       "balancer chose\"");
  rule("to-network", "jump published");
  rule("to-network", "counter drop comment \"from the outside, not published\"");

  rule("egress-nat", "ip saddr @masquerade-subnets oifname != @bridges masquerade");
  // The host's own flows DNATed into a bridge (a VIP, a published port)
  // leave from this node's own address on that network: the gateway
  // address is every node's, so a task on another node could not answer it.
  rule("egress-nat", "ct status dnat fib saddr type local snat ip to oifname map @node-addresses "
                     "comment \"the node's own address on the network\"");
  // localhost:PUBLISHED, DNATed in published-dnat-local: the reply must find
  // its way back from the task's bridge or the gateway bridge (which have
  // route_localnet on for that, see localnet).
  rule("egress-nat", "ip saddr 127.0.0.0/8 ct status dnat oifname \"swn-*\" masquerade "
                     "comment \"localhost:PUBLISHED\"");
  // route_localnet (on swarmnet's bridges, or on every link when another
  // tool set it) makes the kernel route packets to 127.0.0.0/8 that come from
  // outside; this drops them before conntrack, so only the replies of our
  // masqueraded localhost flows (addressed to the bridge) get there
  // (CVE-2020-8558).
  rule("localnet", "ip daddr 127.0.0.0/8 iifname != \"lo\" counter drop "
                   "comment \"to localhost from outside the host\"");
  // Connection tracking only where a NAT may apply. The tunnel between
  // members is never NATed; neither is a frame bridged within a network
  // (to a container on this host or, through the VXLAN port, on another)
  // unless it is the reply of a NATed connection, which is why every
  // client of one is in dnat-clients. Everything to this host (gateway,
  // VIPs, node address) or out of the network stays tracked.
  // Every packet of the overlay passes here two or three times (bridged on
  // each host, the tunnel on the receiving one): each rule that decides
  // ends the chain (`accept` ends this base chain only), so no packet pays
  // for the rules after the one that matched it.
  const std::string tunnel = "udp dport " + vxlan + " ip saddr @members ip daddr @members notrack accept";
  rule("untracked", tunnel + " comment \"the overlay's tunnel from a member\"");
  rule("untracked-out", tunnel + " comment \"the overlay's tunnel to a member\"");
  // An encrypted network's tunnel: ESP out (after the transform the packet
  // goes through output again) and in (decrypted, its VXLAN goes through
  // prerouting again and meets the rule above).
  const std::string esp = "meta l4proto esp ip saddr @members ip daddr @members notrack accept";
  rule("untracked", esp + " comment \"ESP from a member\"");
  rule("untracked-out", esp + " comment \"ESP to a member\"");
  // Bridged within a network, in one rule: from one of our bridges to an
  // address of its own subnet (IPv4 only, as `ip daddr` implies), not the
  // reply to a client of a NATed connection, not to this host (gateway,
  // VIPs, the node's address). Anything else stays tracked.
  rule("untracked", "iifname . ip daddr @bridge-subnets ip daddr != @dnat-clients fib daddr type != local "
                    "notrack accept comment \"bridged within the network\"");
  // "swn-*" matches every swarmnet bridge and the gateway bridge by name, also
  // one whose network has not reached the sets yet: a container's packet to
  // this host arrives on its bridge.
  // The tunnel's own packets, every packet of the overlay, leave after one
  // rule (the other input chains still see them).
  rule("underlay-input", "udp dport " + vxlan + " ip saddr @members ip daddr @members iifname != \"swn-*\" "
                         "accept comment \"the tunnel between members\"");
  rule("underlay-input", "iifname \"swn-*\" udp dport " + vxlan +
                             " counter drop comment \"VXLAN from a container\"");
  rule("underlay-input", "iifname \"swn-*\" meta l4proto { tcp, udp } th dport " + gossip +
                             " counter drop comment \"gossip from a container\"");
  if (ports.metrics) {
    rule("underlay-input", "iifname \"swn-*\" tcp dport " + std::to_string(ports.metrics) +
                               " counter drop comment \"metrics from a container\"");
  }
  rule("underlay-input", "udp dport " + vxlan +
                             " ip saddr != @members counter drop comment \"VXLAN from a non-member\"");
  // The kernel's VXLAN socket takes frames sent to any address of the host.
  rule("underlay-input", "udp dport " + vxlan +
                             " ip daddr != @members counter drop comment \"VXLAN not to this node's advertise address\"");
  rule("underlay-input", "meta nfproto ipv6 udp dport " + vxlan +
                             " counter drop comment \"the overlay is IPv4\"");
  // The port first: the tunnel's packets (UDP too) fail at a compare, not
  // at a lookup of the input interface's name.
  if (dns_queries_per_second > 0) {
    rule("dns-input", "udp dport 53 iifname @bridges update @dns-clients { ip saddr limit rate over " +
                          std::to_string(dns_queries_per_second) + "/second burst " +
                          std::to_string(dns_queries_per_second) +
                          " packets } counter drop comment \"DNS flood from one container\"");
  }
  return s.str();
}

std::string add_network(const FirewallNetwork& network) {
  const NetworkElements e = elements_of(network);
  std::string script;
  for (const auto& [set, element] : e.always) script += add_element(set, element);
  script += add_element(e.kind.first, e.kind.second);
  script += ensure_absent(e.other_kind.first, e.other_kind.second);
  return script;
}

std::string remove_network(const FirewallNetwork& network) {
  const NetworkElements e = elements_of(network);
  std::string script;
  for (const auto& [set, element] : e.always) script += ensure_absent(set, element);
  script += ensure_absent(e.kind.first, e.kind.second);
  script += ensure_absent(e.other_kind.first, e.other_kind.second);
  return script;
}

std::string members(const std::vector<Ipv4Address>& addresses) {
  std::set<std::string> unique;
  for (const auto& a : addresses) unique.insert(a.str());
  std::string script = "flush set " + kPrefix + " members\n";
  if (unique.empty()) return script;
  std::string list;
  for (const auto& a : unique) list += (list.empty() ? "" : ", ") + a;
  return script + "add element " + kPrefix + " members { " + list + " }\n";
}

std::string encrypted_vnis(const std::set<uint32_t>& vnis, UnderlayPorts ports) {
  std::ostringstream s;
  // An older version marked these packets here for their policies; the
  // policies select source ports now (daemon/encryption.hpp).
  s << "add chain " << kPrefix << " encrypted-mark\n";
  s << "flush chain " << kPrefix << " encrypted-mark\n";
  s << "delete chain " << kPrefix << " encrypted-mark\n";
  s << "add chain " << kPrefix
    << " encrypted-output { type filter hook output priority filter - 10; policy accept; }\n";
  s << "add chain " << kPrefix
    << " encrypted-input { type filter hook input priority filter - 10; policy accept; }\n";
  for (const char* chain : {"encrypted-output", "encrypted-input"}) {
    s << "flush chain " << kPrefix << " " << chain << "\n";
  }
  if (vnis.empty()) return s.str();
  std::string list;
  for (uint32_t v : vnis) list += (list.empty() ? "" : ", ") + std::to_string(v);
  // The VNI: bits 96-119 of the UDP header's start (UDP 8 bytes, VXLAN
  // flags 1 and reserved 3 bytes before it).
  const std::string match = "udp dport " + std::to_string(ports.vxlan) + " @th,96,24 { " + list + " }";
  s << "add rule " << kPrefix << " encrypted-output " << match
    << " rt ipsec missing counter drop comment \"encrypted network without an SA: never in clear\"\n";
  s << "add rule " << kPrefix << " encrypted-input " << match
    << " meta secpath missing counter drop comment \"encrypted network's VXLAN not from ESP\"\n";
  return s.str();
}

std::string remove_all() {
  return "add table " + kPrefix + "\ndelete table " + kPrefix + "\n";
}

FirewallElements expected_elements(const std::vector<FirewallNetwork>& networks) {
  FirewallElements out;
  for (const auto& name : set_names()) out[name];
  for (const auto& n : networks) {
    const NetworkElements e = elements_of(n);
    for (const auto& [set, element] : e.always) out[set].insert(element);
    out[e.kind.first].insert(e.kind.second);
  }
  return out;
}

std::vector<std::string> differences(const FirewallElements& expected,
                                     const FirewallElements& actual) {
  std::vector<std::string> out;
  static const std::set<std::string> none;
  auto elements = [](const FirewallElements& m, const std::string& set) -> const auto& {
    auto it = m.find(set);
    return it == m.end() ? none : it->second;
  };
  std::set<std::string> sets;
  for (const auto& [name, _] : expected) sets.insert(name);
  for (const auto& [name, _] : actual) sets.insert(name);
  for (const auto& set : sets) {
    const auto& want = elements(expected, set);
    const auto& have = elements(actual, set);
    if (!expected.contains(set)) out.push_back("set " + set + ": unexpected set");
    if (!actual.contains(set)) out.push_back("set " + set + ": missing set");
    for (const auto& e : want) {
      if (!have.contains(e)) out.push_back("set " + set + ": missing " + e);
    }
    for (const auto& e : have) {
      if (!want.contains(e)) out.push_back("set " + set + ": unexpected " + e);
    }
  }
  return out;
}

std::string reconcile(const FirewallElements& expected, const FirewallElements& actual) {
  // Deletions first: a subnet that moved to another bridge must leave its
  // old interval before the new one can be added without an overlap.
  std::string deletions, additions;
  for (const auto& set : set_names()) {
    auto want = expected.find(set);
    auto have = actual.find(set);
    if (have != actual.end()) {
      for (const auto& e : have->second) {
        if (want == expected.end() || !want->second.contains(e))
          deletions += delete_element(set, e);
      }
    }
    if (want != expected.end()) {
      for (const auto& e : want->second) {
        if (have == actual.end() || !have->second.contains(e)) additions += add_element(set, e);
      }
    }
  }
  return deletions + additions;
}

FirewallElements parse_listing(std::string_view text) {
  FirewallElements out;
  try {
    const json::value root = json::parse(text);
    for (const json::value& item : root.at("nftables").as_array()) {
      const json::object& o = item.as_object();
      const json::value* set = o.if_contains("set");
      if (!set) continue;
      const json::object& s = set->as_object();
      if (s.at("table").as_string() != kTable || s.at("family").as_string() != kFamily) continue;
      // Only the networks' sets: dns-clients is the kernel's own (dynamic).
      const auto& names = set_names();
      if (std::find(names.begin(), names.end(), std::string(s.at("name").as_string())) == names.end()) continue;
      std::vector<std::string> types;
      const json::value& type = s.at("type");
      if (type.is_string()) {
        types.emplace_back(type.as_string());
      } else {
        for (const json::value& t : type.as_array()) types.emplace_back(t.as_string());
      }
      bool interval = false;
      if (auto* flags = s.if_contains("flags")) {
        for (const json::value& f : flags->as_array()) interval |= f.as_string() == "interval";
      }
      auto& elements = out[std::string(s.at("name").as_string())];
      if (auto* elem = s.if_contains("elem")) {
        for (const json::value& e : elem->as_array()) {
          elements.insert(render_element(e, types, interval));
        }
      }
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(Errc::internal,
                std::string("firewall: cannot read nft's JSON listing: ") + e.what());
  }
  return out;
}

}  // namespace firewall_script

Firewall::Firewall() : nft_() {}

Firewall::Firewall(kernel::NftContext&& nft) : nft_(std::move(nft)) {}

void Firewall::ensure_base() {
  nft_.run(firewall_script::base(dns_rate_, ports_));
}

void Firewall::set_encrypted_vnis(const std::set<uint32_t>& vnis) {
  if (encrypted_vnis_ == vnis) return;
  nft_.run(firewall_script::encrypted_vnis(vnis, ports_));
  encrypted_vnis_ = vnis;
}

void Firewall::set_members(const std::vector<Ipv4Address>& addresses) {
  nft_.run(firewall_script::members(addresses));
}

void Firewall::add_network(const FirewallNetwork& network) {
  try {
    nft_.run(firewall_script::add_network(network));
  } catch (const Error& e) {
    if (e.code() == Errc::not_found && !table_exists()) {
      throw Error(Errc::not_found,
                  "firewall: table inet swarmnet does not exist "
                  "(ensure_base() first) while adding network " +
                      network.id);
    }
    throw Error(e.code(), "firewall: adding network " + network.id + " (" + network.bridge + ", " +
                              network.subnet.str() + "): " + e.what());
  }
}

void Firewall::remove_network(const FirewallNetwork& network) {
  try {
    nft_.run(firewall_script::remove_network(network));
  } catch (const Error& e) {
    // Without the table there is nothing to remove: no error, as for an
    // element that is already gone.
    if (e.code() == Errc::not_found && !table_exists()) return;
    throw Error(e.code(), "firewall: removing network " + network.id + ": " + e.what());
  }
}

void Firewall::remove_all() {
  nft_.run(firewall_script::remove_all());
  encrypted_vnis_.reset();
}

bool Firewall::table_exists() {
  // Lists the table names only, not the (possibly large) sets.
  const std::string tables = nft_.run("list tables inet");
  return tables.find("table inet swarmnet\n") != std::string::npos;
}

std::string Firewall::dump() {
  try {
    return nft_.run("list table inet swarmnet", kernel::NftContext::Output::text_stateless);
  } catch (const Error& e) {
    if (e.code() == Errc::not_found) return "";
    throw;
  }
}

FirewallElements Firewall::actual_elements() {
  std::string listing;
  try {
    listing = nft_.run("list table inet swarmnet", kernel::NftContext::Output::json);
  } catch (const Error& e) {
    if (e.code() == Errc::not_found) return {};
    throw;
  }
  return firewall_script::parse_listing(listing);
}

std::vector<std::string> Firewall::check(const std::vector<FirewallNetwork>& expected) {
  return firewall_script::differences(firewall_script::expected_elements(expected),
                                      actual_elements());
}

void Firewall::reconcile(const std::vector<FirewallNetwork>& expected) {
  ensure_base();
  const std::string script =
      firewall_script::reconcile(firewall_script::expected_elements(expected), actual_elements());
  if (!script.empty()) nft_.run(script);
}

void enable_ip_forward() {
  kernel::write_sysctl("net/ipv4/ip_forward", "1");
}

}  // namespace swarmnet::daemon
