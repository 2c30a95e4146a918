// The firewall's nft scripts, as text (no root, no kernel): what each
// operation sends, its inverse, and reading nft's JSON listing back.
// integration/test_firewall.cpp runs the same scripts against the kernel.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "daemon/firewall.hpp"
#include "kernel/published_ports.hpp"

using namespace swarmnet;
using namespace swarmnet::daemon;
namespace script = swarmnet::daemon::firewall_script;

namespace {

FirewallNetwork net_a() {
  return {"aaaa", "swn-a", Ipv4Prefix::parse_network("10.81.0.0/24"), false};
}
FirewallNetwork net_c_internal() {
  return {"cccc", "swn-c", Ipv4Prefix::parse_network("10.83.0.0/24"), true};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

template <typename F>
Errc error_code_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("no swarmnet::Error thrown");
  return Errc::internal;
}

}  // namespace

TEST_CASE("base: one table, hooks and priorities", "[firewall]") {
  const std::string s = script::base();
  CHECK(lines_of(s).front() == "add table inet swarmnet");
  // Nothing outside swarmnet's own table.
  for (const auto& line : lines_of(s)) CHECK(contains(line, " inet swarmnet"));
  CHECK(contains(s,
                 "add chain inet swarmnet forward { type filter hook forward priority "
                 "filter - 10; policy accept; }"));
  CHECK(contains(s,
                 "add chain inet swarmnet egress-nat { type nat hook postrouting priority "
                 "srcnat; policy accept; }"));
  CHECK(contains(s,
                 "add chain inet swarmnet published-dnat { type nat hook prerouting "
                 "priority dstnat; policy accept; }"));
  CHECK(contains(s, "add chain inet swarmnet published\n"));
  for (const auto& set : script::set_names()) CHECK(contains(s, "add set inet swarmnet " + set));
  CHECK(contains(s, "bridge-subnets { type ifname . ipv4_addr; flags interval; }"));
}

TEST_CASE("base: rewrites its own chains but never the published ones", "[firewall]") {
  const std::string s = script::base();
  for (const char* chain : {"forward", "from-network", "to-network", "egress-nat"}) {
    CHECK(contains(s, std::string("flush chain inet swarmnet ") + chain + "\n"));
  }
  CHECK_FALSE(contains(s, "flush chain inet swarmnet published"));
  CHECK_FALSE(contains(s, "flush table"));
  // The networks' sets keep their elements (only the DNS meter's dynamic
  // set is flushed, so a changed rate applies to every client).
  for (const std::string& set : script::set_names()) CHECK_FALSE(contains(s, "flush set inet swarmnet " + set + "\n"));
  // Every flush comes before the first rule, so the rules are only added once.
  CHECK(s.rfind("flush chain") < s.find("add rule"));
}

TEST_CASE("base: localhost:PUBLISHED for the host's processes, and nothing to 127.0.0.0/8 from outside", "[firewall]") {
  const std::string s = script::base();
  CHECK(contains(s, "add chain inet swarmnet published-dnat-local { type nat hook output priority -100; policy accept; }"));
  CHECK_FALSE(contains(s, "flush chain inet swarmnet published-dnat-local"));
  CHECK(contains(s, "add rule inet swarmnet egress-nat ip saddr 127.0.0.0/8 ct status dnat oifname \"swn-*\" masquerade"));
  CHECK(contains(s, "add chain inet swarmnet localnet { type filter hook prerouting priority raw; policy accept; }"));
  CHECK(contains(s, "add rule inet swarmnet localnet ip daddr 127.0.0.0/8 iifname != \"lo\" counter drop"));
  const std::string add = kernel::published_ports_script::add("host", "e1", Ipv4Address::parse("10.0.0.5"),
                                                              {{"tcp", 8080, 80, std::nullopt}});
  CHECK(contains(add, "add rule inet swarmnet published-dnat meta nfproto ipv4 fib daddr type local tcp dport 8080 "
                      "dnat ip to 10.0.0.5:80"));
  CHECK(contains(add, "add rule inet swarmnet published-dnat-local meta nfproto ipv4 fib daddr type local tcp dport "
                      "8080 dnat ip to 10.0.0.5:80"));
  CHECK_FALSE(contains(kernel::published_ports_script::add("host", "e1", Ipv4Address::parse("10.0.0.5"),
                                                           {{"tcp", 8080, 80, std::nullopt}}, false),
                       "published-dnat-local"));
}

TEST_CASE("base: a per-container DNS limit on UDP port 53 from the bridges, only when asked", "[firewall]") {
  CHECK_FALSE(contains(script::base(0), "udp dport 53"));
  const std::string s = script::base(500);
  // The port before the interface's name: the tunnel's UDP packets fail
  // at a compare.
  CHECK(contains(s, "add rule inet swarmnet dns-input udp dport 53 iifname @bridges update @dns-clients "
                    "{ ip saddr limit rate over 500/second burst 500 packets } counter drop"));
}

TEST_CASE("base: connection tracking only where a NAT may apply", "[firewall]") {
  const std::string s = script::base(0, {4789, 7946, 0});
  auto at = [&](const std::string& part) {
    size_t pos = s.find(part);
    INFO(part);
    REQUIRE(pos != std::string::npos);
    return pos;
  };
  CHECK(contains(s, "add chain inet swarmnet untracked { type filter hook prerouting priority raw; policy accept; }"));
  CHECK(contains(s, "add chain inet swarmnet untracked-out { type filter hook output priority raw; policy accept; }"));
  CHECK(contains(s, "flush chain inet swarmnet untracked\n"));
  CHECK(contains(s, "flush chain inet swarmnet untracked-out\n"));
  // Filled by the kernel, kept across rewrites.
  CHECK(contains(s, "add set inet swarmnet dnat-clients { type ipv4_addr; flags dynamic; size 65536; }"));
  CHECK_FALSE(contains(s, "flush set inet swarmnet dnat-clients"));
  // The tunnel, both ways, only between members.
  at("untracked udp dport 4789 ip saddr @members ip daddr @members notrack");
  at("untracked-out udp dport 4789 ip saddr @members ip daddr @members notrack");
  at("untracked meta l4proto esp ip saddr @members ip daddr @members notrack");
  at("untracked-out meta l4proto esp ip saddr @members ip daddr @members notrack");
  // Bridged frames are decided by one rule: within the bridge's own subnet
  // (IPv4: `ip daddr` implies it), not a reply to a client of a NATed
  // connection, not to this host; everything else stays tracked.
  size_t bridged = at("add rule inet swarmnet untracked iifname . ip daddr @bridge-subnets ip daddr != @dnat-clients "
                      "fib daddr type != local notrack accept comment");
  // Each rule that decides ends the chain: no notrack without an accept,
  // and the tunnel's packets (the most frequent on the underlay) leave by
  // the first rule, before the bridged frames' lookups.
  CHECK_FALSE(contains(s, "notrack comment"));
  CHECK_FALSE(contains(s, "untracked notrack"));
  CHECK_FALSE(contains(s, "@bridge-subnets return"));
  size_t tunnel = at("add rule inet swarmnet untracked udp dport 4789 ip saddr @members ip daddr @members notrack accept");
  CHECK(tunnel < at("add rule inet swarmnet untracked meta l4proto esp"));
  CHECK(tunnel < bridged);
  CHECK(at("add rule inet swarmnet untracked-out udp dport 4789 ip saddr @members ip daddr @members notrack accept") <
        at("add rule inet swarmnet untracked-out meta l4proto esp ip saddr @members ip daddr @members notrack accept"));
  // Those frames leave the forward hook by its first rule, with the same
  // lookups from-network would make (anti-spoofing, own subnet), only when
  // untracked: a NATed connection's packets still meet from-network's
  // first rule, which remembers the client.
  size_t bulk = at("add rule inet swarmnet forward ct state untracked iifname . ip saddr @bridge-subnets "
                   "iifname . ip daddr @bridge-subnets accept");
  CHECK(s.find("add rule inet swarmnet forward ") == bulk);
  CHECK(bulk < at("forward iifname @bridges jump from-network"));
  // The clients of NATed connections, before any accept of from-network.
  size_t client = at("from-network ct status dnat ct direction original add @dnat-clients { ip saddr }");
  CHECK(client < at("from-network iifname . ip daddr @bridge-subnets accept"));
  // The tunnel's packets leave the underlay's input chain by its first rule.
  CHECK(at("underlay-input udp dport 4789 ip saddr @members ip daddr @members iifname != \"swn-*\" accept") <
        at("underlay-input iifname \"swn-*\" udp dport 4789 counter drop"));
}

TEST_CASE("encrypted_vnis: drops in clear both ways, no mark (the policies select source ports)", "[firewall]") {
  const std::string s = script::encrypted_vnis({5, 7}, {4789, 7946, 0});
  CHECK(contains(s, "add rule inet swarmnet encrypted-output udp dport 4789 @th,96,24 { 5, 7 } rt ipsec missing "
                    "counter drop"));
  CHECK(contains(s, "add rule inet swarmnet encrypted-input udp dport 4789 @th,96,24 { 5, 7 } meta secpath "
                    "missing counter drop"));
  CHECK_FALSE(contains(s, "meta mark"));
  // An older version's marking chain goes.
  CHECK(contains(s, "delete chain inet swarmnet encrypted-mark\n"));
  CHECK(s.find("delete chain inet swarmnet encrypted-mark") < s.find("add rule"));
  const std::string none = script::encrypted_vnis({}, {4789, 7946, 0});
  CHECK_FALSE(contains(none, "add rule"));
}

TEST_CASE("base: the order of the isolation rules", "[firewall]") {
  const std::string s = script::base();
  auto at = [&](const std::string& part) {
    size_t pos = s.find(part);
    INFO(part);
    REQUIRE(pos != std::string::npos);
    return pos;
  };
  // Spoofed sources go first, then the network's own traffic (bridged
  // frames under br_netfilter included), then other networks, then egress.
  size_t spoof = at("from-network iifname . ip saddr != @bridge-subnets counter drop");
  size_t own = at("from-network iifname . ip daddr @bridge-subnets accept");
  size_t other = at("from-network ip daddr @subnets counter drop");
  size_t l2 = at("from-network iifname . oifname @same-bridge accept");
  size_t other_bridge = at("from-network oifname @bridges counter drop");
  size_t internal = at("from-network iifname @internal-bridges counter drop");
  size_t egress = at("from-network accept comment");
  CHECK(spoof < own);
  CHECK(own < other);
  CHECK(other < l2);
  CHECK(l2 < other_bridge);
  CHECK(other_bridge < internal);
  CHECK(internal < egress);

  size_t replies = at("to-network ct state established,related accept");
  size_t published = at("to-network jump published");
  size_t closed = at("to-network counter drop");
  CHECK(replies < published);
  CHECK(published < closed);

  CHECK(contains(s, "egress-nat ip saddr @masquerade-subnets oifname != @bridges masquerade"));
  CHECK(at("forward iifname @bridges jump from-network") <
        at("forward oifname @bridges jump to-network"));
}

TEST_CASE("add_network: elements only, no rules", "[firewall]") {
  const std::string s = script::add_network(net_a());
  CHECK(s ==
        "add element inet swarmnet bridges { \"swn-a\" }\n"
        "add element inet swarmnet subnets { 10.81.0.0/24 }\n"
        "add element inet swarmnet bridge-subnets { \"swn-a\" . 10.81.0.0/24 }\n"
        "add element inet swarmnet same-bridge { \"swn-a\" . \"swn-a\" }\n"
        "add element inet swarmnet masquerade-subnets { 10.81.0.0/24 }\n"
        "add element inet swarmnet internal-bridges { \"swn-a\" }\n"
        "delete element inet swarmnet internal-bridges { \"swn-a\" }\n");
  CHECK_FALSE(contains(s, "rule"));
  CHECK_FALSE(contains(s, "chain"));
}

TEST_CASE("add_network: an internal network has no masquerade", "[firewall]") {
  const std::string s = script::add_network(net_c_internal());
  CHECK(contains(s, "add element inet swarmnet internal-bridges { \"swn-c\" }\n"));
  // Re-adding a network that was not internal takes its masquerade away.
  CHECK(contains(s,
                 "add element inet swarmnet masquerade-subnets { 10.83.0.0/24 }\n"
                 "delete element inet swarmnet masquerade-subnets { 10.83.0.0/24 }\n"));
  CHECK(s.find("masquerade-subnets") > s.find("internal-bridges"));
}

TEST_CASE("remove_network: every element, each add-then-delete", "[firewall]") {
  const std::string s = script::remove_network(net_a());
  const auto lines = lines_of(s);
  REQUIRE(lines.size() == 12);
  for (size_t i = 0; i < lines.size(); i += 2) {
    REQUIRE(lines[i].rfind("add element inet swarmnet ", 0) == 0);
    CHECK(lines[i + 1] == "delete" + lines[i].substr(3));
  }
  // Both kinds go, so a network is removed whatever flag it was added with.
  CHECK(contains(s, "delete element inet swarmnet internal-bridges { \"swn-a\" }"));
  CHECK(contains(s, "delete element inet swarmnet masquerade-subnets { 10.81.0.0/24 }"));
}

TEST_CASE("remove_all: deletes only swarmnet's table, missing or not", "[firewall]") {
  CHECK(script::remove_all() == "add table inet swarmnet\ndelete table inet swarmnet\n");
}

TEST_CASE("bad networks are refused before any script is made", "[firewall]") {
  auto with_bridge = [](std::string bridge) {
    FirewallNetwork n = net_a();
    n.bridge = std::move(bridge);
    return n;
  };
  for (const char* bad : {"", "a-name-of-16-chr", "swn\" accept", "swn a", "swn;a", "sw\n"}) {
    INFO(bad);
    CHECK(error_code_of([&] { script::add_network(with_bridge(bad)); }) == Errc::invalid_argument);
    CHECK(error_code_of([&] { script::remove_network(with_bridge(bad)); }) ==
          Errc::invalid_argument);
  }
  CHECK_NOTHROW(script::add_network(with_bridge("swn-0123456789a")));

  FirewallNetwork host_bits = net_a();
  host_bits.subnet = Ipv4Prefix::parse("10.81.0.5/24");
  CHECK(error_code_of([&] { script::add_network(host_bits); }) == Errc::invalid_argument);
  FirewallNetwork everything = net_a();
  everything.subnet = Ipv4Prefix::parse_network("0.0.0.0/0");
  CHECK(error_code_of([&] { script::add_network(everything); }) == Errc::invalid_argument);
}

TEST_CASE("expected_elements: every set present, elements per network", "[firewall]") {
  const FirewallElements none = script::expected_elements({});
  CHECK(none.size() == script::set_names().size());
  for (const auto& [set, elements] : none) CHECK(elements.empty());

  const FirewallElements e = script::expected_elements({net_a(), net_c_internal()});
  CHECK(e.at("bridges") == std::set<std::string>{"\"swn-a\"", "\"swn-c\""});
  CHECK(e.at("subnets") == std::set<std::string>{"10.81.0.0/24", "10.83.0.0/24"});
  CHECK(e.at("bridge-subnets") ==
        std::set<std::string>{"\"swn-a\" . 10.81.0.0/24", "\"swn-c\" . 10.83.0.0/24"});
  CHECK(e.at("same-bridge") ==
        std::set<std::string>{"\"swn-a\" . \"swn-a\"", "\"swn-c\" . \"swn-c\""});
  CHECK(e.at("internal-bridges") == std::set<std::string>{"\"swn-c\""});
  CHECK(e.at("masquerade-subnets") == std::set<std::string>{"10.81.0.0/24"});
}

TEST_CASE("differences and reconcile", "[firewall]") {
  const FirewallElements want = script::expected_elements({net_a()});
  CHECK(script::differences(want, want).empty());
  CHECK(script::reconcile(want, want).empty());

  FirewallElements have = want;
  have["bridges"].erase("\"swn-a\"");
  have["internal-bridges"].insert("\"swn-z\"");
  CHECK(script::differences(want, have) ==
        std::vector<std::string>{"set bridges: missing \"swn-a\"",
                                 "set internal-bridges: unexpected \"swn-z\""});
  // Deletions before additions, one transaction.
  CHECK(script::reconcile(want, have) ==
        "delete element inet swarmnet internal-bridges { \"swn-z\" }\n"
        "add element inet swarmnet bridges { \"swn-a\" }\n");

  FirewallElements missing_set = want;
  missing_set.erase("same-bridge");
  const auto d = script::differences(want, missing_set);
  CHECK(d.front() == "set same-bridge: missing set");
}

TEST_CASE("parse_listing reads nft's JSON (as nft 1.0.6 prints it)", "[firewall]") {
  // Captured from `nft -j list table inet swarmnet`, with a /32 in two
  // interval sets (nft prints those without a length) and a foreign table.
  const std::string listing = R"({"nftables": [
    {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "swarmnet", "handle": 1}},
    {"set": {"family": "inet", "name": "bridges", "table": "swarmnet", "type": "ifname", "handle": 1, "elem": ["swn-b"]}},
    {"set": {"family": "inet", "name": "subnets", "table": "swarmnet", "type": "ipv4_addr", "handle": 2, "flags": ["interval"], "elem": ["10.9.9.9", {"prefix": {"addr": "10.82.0.0", "len": 24}}]}},
    {"set": {"family": "inet", "name": "bridge-subnets", "table": "swarmnet", "type": ["ifname", "ipv4_addr"], "handle": 3, "flags": ["interval"], "elem": [{"concat": ["swn-b", {"prefix": {"addr": "10.82.0.0", "len": 24}}]}, {"concat": ["x", "10.9.9.8"]}]}},
    {"set": {"family": "inet", "name": "same-bridge", "table": "swarmnet", "type": ["ifname", "ifname"], "handle": 4, "elem": [{"concat": ["swn-b", "swn-b"]}]}},
    {"set": {"family": "inet", "name": "internal-bridges", "table": "swarmnet", "type": "ifname", "handle": 5}},
    {"set": {"family": "inet", "name": "masquerade-subnets", "table": "swarmnet", "type": "ipv4_addr", "handle": 6, "flags": ["interval"], "elem": [{"elem": {"val": {"prefix": {"addr": "10.82.0.0", "len": 24}}, "comment": "b"}}]}},
    {"set": {"family": "ip", "name": "bridges", "table": "other", "type": "ifname", "handle": 1, "elem": ["eth9"]}},
    {"chain": {"family": "inet", "table": "swarmnet", "name": "forward", "handle": 7, "type": "filter", "hook": "forward", "prio": -10, "policy": "accept"}}
  ]})";
  const FirewallElements e = script::parse_listing(listing);
  CHECK(e.size() == 6);
  CHECK(e.at("bridges") == std::set<std::string>{"\"swn-b\""});
  CHECK(e.at("subnets") == std::set<std::string>{"10.9.9.9/32", "10.82.0.0/24"});
  CHECK(e.at("bridge-subnets") ==
        std::set<std::string>{"\"swn-b\" . 10.82.0.0/24", "\"x\" . 10.9.9.8/32"});
  CHECK(e.at("same-bridge") == std::set<std::string>{"\"swn-b\" . \"swn-b\""});
  CHECK(e.at("internal-bridges").empty());
  CHECK(e.at("masquerade-subnets") == std::set<std::string>{"10.82.0.0/24"});

  // What the kernel holds for network b, read back, is what b expects.
  const FirewallNetwork b{"bbbb", "swn-b", Ipv4Prefix::parse_network("10.82.0.0/24"), false};
  FirewallElements only_b = e;
  only_b["subnets"].erase("10.9.9.9/32");
  only_b["bridge-subnets"].erase("\"x\" . 10.9.9.8/32");
  CHECK(script::differences(script::expected_elements({b}), only_b).empty());
}

TEST_CASE("parse_listing refuses what nft would not print", "[firewall]") {
  CHECK(error_code_of([] { script::parse_listing("not json"); }) == Errc::internal);
  CHECK(error_code_of([] { script::parse_listing(R"({"tables": []})"); }) == Errc::internal);
  CHECK(error_code_of([] {
          script::parse_listing(
              R"({"nftables": [{"set": {"family": "inet", "name": "bridge-subnets", "table": "swarmnet",
                 "type": ["ifname", "ipv4_addr"], "elem": [{"concat": ["a"]}]}}]})");
        }) == Errc::internal);
}

TEST_CASE("parse_listing reads only the networks' sets, not the DNS meter's", "[firewall]") {
  auto e = script::parse_listing(
      R"({"nftables": [{"set": {"family": "inet", "name": "dns-clients", "table": "swarmnet",
         "type": "ipv4_addr", "elem": ["10.0.0.5"]}},
        {"set": {"family": "inet", "name": "bridges", "table": "swarmnet", "type": "ifname",
         "elem": ["swn-a"]}}]})");
  CHECK(e.count("dns-clients") == 0);
  CHECK(e["bridges"] == std::set<std::string>{"\"swn-a\""});
}

TEST_CASE("base: the underlay takes VXLAN only from members, never from a container", "[firewall][underlay]") {
  const std::string s = script::base();
  CHECK(contains(s, "add set inet swarmnet members { type ipv4_addr; }\n"));
  // Membership writes the set; rewriting the rules must not empty it.
  CHECK_FALSE(contains(s, "flush set inet swarmnet members"));
  CHECK(contains(s,
                 "add chain inet swarmnet underlay-input { type filter hook input priority "
                 "filter - 10; policy accept; }\n"
                 "flush chain inet swarmnet underlay-input\n"));
  CHECK(contains(s, "underlay-input iifname \"swn-*\" udp dport 4789 counter drop"));
  CHECK(contains(s, "underlay-input iifname \"swn-*\" meta l4proto { tcp, udp } th dport 7946 counter drop"));
  CHECK(contains(s, "underlay-input udp dport 4789 ip saddr != @members counter drop"));
  CHECK(contains(s, "underlay-input udp dport 4789 ip daddr != @members counter drop"));
  CHECK(contains(s, "underlay-input meta nfproto ipv6 udp dport 4789 counter drop"));
  // Gossip from the underlay is not filtered: a joining node is no member yet.
  for (const auto& line : lines_of(s)) {
    if (contains(line, "th dport 7946")) CHECK((contains(line, "iifname \"swn-*\"") || contains(line, "ip daddr @members")));
  }
  // A container's packet to a member is dropped on its own host, where its
  // bridge still shows: masqueraded, the member would take it as ours.
  auto at = [&](const std::string& part) {
    INFO(part);
    size_t pos = s.find(part);
    REQUIRE(pos != std::string::npos);
    return pos;
  };
  const size_t vxlan = at("from-network ip daddr @members udp dport 4789 counter drop");
  const size_t gossip = at("from-network ip daddr @members meta l4proto { tcp, udp } th dport 7946 counter drop");
  CHECK(vxlan < at("from-network accept comment"));
  CHECK(gossip < at("from-network accept comment"));
}

TEST_CASE("base: the underlay's ports follow the daemon's flags", "[firewall][underlay]") {
  const std::string s = script::base(0, {.vxlan = 4281, .gossip = 17946});
  CHECK(contains(s, "underlay-input udp dport 4281 ip saddr != @members counter drop"));
  CHECK(contains(s, "underlay-input iifname \"swn-*\" meta l4proto { tcp, udp } th dport 17946 counter drop"));
  CHECK(contains(s, "from-network ip daddr @members udp dport 4281 counter drop"));
  CHECK_FALSE(contains(s, "4789"));
  CHECK_FALSE(contains(s, "dport 7946 "));
}

TEST_CASE("members: the whole set replaced in one script", "[firewall][underlay]") {
  CHECK(script::members({}) == "flush set inet swarmnet members\n");
  const auto a = Ipv4Address::parse("172.31.250.12");
  const auto b = Ipv4Address::parse("172.31.250.11");
  CHECK(script::members({a, b, a}) ==
        "flush set inet swarmnet members\n"
        "add element inet swarmnet members { 172.31.250.11, 172.31.250.12 }\n");
}

TEST_CASE("published ports: the routing mesh's shortcut spreads a port's DNAT by a hash of the flow", "[firewall]") {
  namespace pp = kernel::published_ports_script;
  const Ipv4Address vip = Ipv4Address::parse("10.255.0.7");
  const std::vector<kernel::PublishedPort> ports{{"tcp", 8080, 80, std::nullopt}, {"udp", 5353, 53, std::nullopt}};
  // 1 task of 3 on this node: one slot straight to it, two to the VIP.
  kernel::Spread spread{{Ipv4Address::parse("10.1.0.5")}, 2};
  const std::string s = pp::add("ingress", "svc1", vip, ports, true, spread);
  const std::string tcp = " meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to jhash ip saddr . tcp sport "
                          "mod 3 seed 0x4e5c0003 map { 0 : 10.1.0.5 . 80, 1 : 10.255.0.7 . 80, 2 : 10.255.0.7 . 80 } "
                          "comment \"ingress:svc1 tcp/8080\"\n";
  CHECK(contains(s, "add rule inet swarmnet published-dnat" + tcp));
  CHECK(contains(s, "add rule inet swarmnet published-dnat-local" + tcp));  // the host's own processes too
  CHECK(contains(s, "udp dport 5353 dnat ip to jhash ip saddr . udp sport mod 3 seed 0x4e5c0003 map { "
                    "0 : 10.1.0.5 . 53, 1 : 10.255.0.7 . 53, 2 : 10.255.0.7 . 53 }"));
  // The filter lets the DNATed flows into the task's bridge, as for a host-mode port.
  CHECK(contains(s, "add rule inet swarmnet published ip daddr 10.255.0.7 tcp dport 80 ct status dnat accept "
                    "comment \"ingress:svc1 tcp/8080\"\n"));
  CHECK(contains(s, "add rule inet swarmnet published ip daddr { 10.1.0.5 } tcp dport 80 ct status dnat accept "
                    "comment \"ingress:svc1 tcp/8080\"\n"));
  // Every rule keeps the comment its owner finds it by (after a restart too).
  for (const auto& line : lines_of(s)) CHECK(contains(line, "comment \"ingress:svc1 "));

  // Every task here: only straight slots.
  const std::string all_here = pp::add("ingress", "svc1", vip, {ports[0]}, false,
                                       kernel::Spread{{Ipv4Address::parse("10.1.0.5"), Ipv4Address::parse("10.1.0.6")}, 0});
  CHECK(contains(all_here, "dnat ip to jhash ip saddr . tcp sport mod 2 seed 0x4e5c0003 map { 0 : 10.1.0.5 . 80, "
                           "1 : 10.1.0.6 . 80 }"));
  CHECK(contains(all_here, "published ip daddr { 10.1.0.5, 10.1.0.6 } tcp dport 80"));
  // No task here (or masquerading): the plain DNAT to the VIP, as before.
  const std::string plain = pp::add("ingress", "svc1", vip, {ports[0]});
  CHECK(contains(plain, "tcp dport 8080 dnat ip to 10.255.0.7:80 comment"));
  CHECK_FALSE(contains(plain, "jhash"));
  CHECK(plain == pp::add("ingress", "svc1", vip, {ports[0]}, true, kernel::Spread{}));
}
