// The nftables layer and the Firewall against the real kernel, with real
// packets, inside throw-away network namespaces only (named
// swn-fw-<pid>-*). Nothing is created or sent in the namespace the test runs
// in; every namespace is deleted by the fixture's destructor (also when a
// REQUIRE fails), and namespaces left by a killed earlier run are deleted at
// start, so the test runs twice in a row.
//
// The topology, as on one swarmnet host plus its underlay:
//
//   a1 10.81.0.2 ─┐                              ┌─ out 198.18.0.2 (the outside,
//   a2 10.81.0.3 ─┤ swn-fwa 10.81.0.1 (net A)    │   with a route to 10.80.0.0/14)
//                 │   └─ swn-vxa (VXLAN 4281) ┐  │
//   b1 10.82.0.2 ── swn-fwb 10.82.0.1 (net B)  │  ├─ uplink 198.18.0.1
//   c1 10.83.0.2 ── swn-fwc 10.83.0.1 (C, internal)  (host)
//                                             └── underlay2 198.18.1.1
//                                                  │
//   peer: VXLAN 4281 to the host, 10.81.0.200 ─────┘ 198.18.1.2 (a container
//         of network A on another host, reduced to its VXLAN end)
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "daemon/firewall.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "kernel/nftables.hpp"

using namespace swarmnet;
using namespace swarmnet::daemon;
using swarmnet::kernel::Netns;
using swarmnet::kernel::NetnsGuard;
using swarmnet::kernel::NftContext;

namespace {

const std::string kPrefix = "swn-fw-";

int run(const std::string& command) {
  return std::system(command.c_str());
}

void must(const std::string& command) {
  INFO(command);
  REQUIRE(run(command + " >/dev/null") == 0);
}

std::string capture(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// Namespaces of an earlier run of this test that was killed (its pid is
// gone): deleted, so a crash never blocks the next run.
void delete_stale_namespaces() {
  DIR* dir = ::opendir("/var/run/netns");
  if (!dir) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.rfind(kPrefix, 0) != 0) continue;
    std::string pid = name.substr(kPrefix.size(), name.find('-', kPrefix.size()) - kPrefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st {};
    if (::stat(("/proc/" + pid).c_str(), &st) != 0) stale.push_back(name);
  }
  ::closedir(dir);
  for (const auto& name : stale) run("ip netns del " + name + " 2>/dev/null");
}

// Named namespaces, all deleted on scope exit (which takes their links).
class Namespaces {
 public:
  Namespaces() { delete_stale_namespaces(); }
  ~Namespaces() {
    for (const auto& name : created_) run("ip netns del " + name + " 2>/dev/null");
  }
  Namespaces(const Namespaces&) = delete;
  Namespaces& operator=(const Namespaces&) = delete;

  // Creates swn-fw-<pid>-<suffix> with lo up; returns its name.
  std::string add(const std::string& suffix) {
    std::string name = kPrefix + std::to_string(::getpid()) + "-" + suffix;
    run("ip netns del " + name + " 2>/dev/null");
    created_.push_back(name);
    must("ip netns add " + name);
    must("ip -n " + name + " link set lo up");
    return name;
  }

 private:
  std::vector<std::string> created_;
};

Netns open_ns(const std::string& name) {
  return Netns::open("/var/run/netns/" + name);
}

bool ping(const std::string& ns, const std::string& address) {
  return run("ip netns exec " + ns + " ping -c 1 -W 1 -q " + address + " >/dev/null 2>&1") == 0;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in address_of(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  REQUIRE(::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) == 1);
  return a;
}

std::string ip_of(const sockaddr_in& a) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
  return text;
}

// A socket made inside a namespace stays in it, so the test needs no
// helper process to listen or connect from a container.
Fd socket_in(const std::string& ns, int type) {
  NetnsGuard guard(open_ns(ns));
  Fd fd(::socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  REQUIRE(fd.get() >= 0);
  return fd;
}

class TcpListener {
 public:
  TcpListener(const std::string& ns, uint16_t port) : fd_(socket_in(ns, SOCK_STREAM)) {
    int one = 1;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in any = address_of("0.0.0.0", port);
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&any), sizeof any) == 0);
    REQUIRE(::listen(fd_.get(), 8) == 0);
  }
  // The source address of the next connection, as this end sees it.
  std::optional<std::string> accept_peer(int timeout_ms = 1000) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    Fd conn(::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
    if (conn.get() < 0) return std::nullopt;
    return ip_of(peer);
  }

 private:
  Fd fd_;
};

// True when the TCP handshake completes within the timeout. A dropped SYN
// gives no answer at all, so the timeout is what a refusal looks like.
bool tcp_connects(const std::string& ns, const std::string& ip, uint16_t port,
                  int timeout_ms = 1000) {
  Fd fd = socket_in(ns, SOCK_STREAM);
  sockaddr_in to = address_of(ip, port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0;
}

// Connects from `client` to a listener in `server` and returns the source
// address the server saw, or nullopt if the connection did not happen.
std::optional<std::string> tcp_peer_seen(const std::string& client, const std::string& server,
                                         const std::string& server_ip, uint16_t port) {
  TcpListener listener(server, port);
  if (!tcp_connects(client, server_ip, port)) return std::nullopt;
  return listener.accept_peer();
}

template <typename F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no swarmnet::Error thrown");
  return Error(Errc::internal, "");
}

std::string list_tables(const std::string& ns) {
  return capture("ip netns exec " + ns + " nft list tables 2>&1");
}

// The host and its containers, as described at the top of this file.
struct Host {
  Namespaces namespaces;
  std::string host, a1, a2, b1, c1, out, peer;

  FirewallNetwork net_a{"net-a", "swn-fwa", Ipv4Prefix::parse_network("10.81.0.0/24"), false};
  FirewallNetwork net_b{"net-b", "swn-fwb", Ipv4Prefix::parse_network("10.82.0.0/24"), false};
  FirewallNetwork net_c{"net-c", "swn-fwc", Ipv4Prefix::parse_network("10.83.0.0/24"), true};

  Host() {
    host = namespaces.add("host");
    a1 = namespaces.add("a1");
    a2 = namespaces.add("a2");
    b1 = namespaces.add("b1");
    c1 = namespaces.add("c1");
    out = namespaces.add("out");
    peer = namespaces.add("peer");
    const std::string h = "ip -n " + host + " ";

    for (const auto* n : {&net_a, &net_b, &net_c}) {
      must(h + "link add " + n->bridge + " type bridge");
      must(h + "addr add " + Ipv4Prefix(Ipv4Address(n->subnet.network().value() + 1), 24).str() +
           " dev " + n->bridge);
      must(h + "link set " + n->bridge + " up");
    }
    container(a1, "va1", net_a, "10.81.0.2");
    container(a2, "va2", net_a, "10.81.0.3");
    container(b1, "vb1", net_b, "10.82.0.2");
    container(c1, "vc1", net_c, "10.83.0.2");

    // The outside: on the underlay, with a route to every container subnet
    // through the host (the strongest position to reach them from).
    must(h + "link add uplink type veth peer name eth0 netns " + out);
    must(h + "addr add 198.18.0.1/24 dev uplink");
    must(h + "link set uplink up");
    must("ip -n " + out + " addr add 198.18.0.2/24 dev eth0");
    must("ip -n " + out + " link set eth0 up");
    must("ip -n " + out + " route add 10.80.0.0/14 via 198.18.0.1");

    // Another host's container on network A, over VXLAN (UDP 4789 on the
    // underlay), as swarmnet's data plane carries it.
    must(h + "link add underlay2 type veth peer name eth0 netns " + peer);
    must(h + "addr add 198.18.1.1/24 dev underlay2");
    must(h + "link set underlay2 up");
    must("ip -n " + peer + " addr add 198.18.1.2/24 dev eth0");
    must("ip -n " + peer + " link set eth0 up");
    must(h + "link add swn-vxa type vxlan id 4281 local 198.18.1.1 remote 198.18.1.2 dstport 4789");
    must(h + "link set swn-vxa master swn-fwa up");
    must("ip -n " + peer +
         " link add vx0 type vxlan id 4281 local 198.18.1.2 remote 198.18.1.1 dstport 4789");
    must("ip -n " + peer + " addr add 10.81.0.200/24 dev vx0");
    must("ip -n " + peer + " link set vx0 up");
    must("ip -n " + peer + " route add default via 10.81.0.1");

    NetnsGuard guard(open_ns(host));
    enable_ip_forward();
    // br_netfilter's switch is per namespace (on by default here); set it
    // so that bridged frames surely cross the inet forward hook.
    kernel::write_sysctl("net/bridge/bridge-nf-call-iptables", "1");
  }

  void container(const std::string& ns, const std::string& host_end, const FirewallNetwork& n,
                 const std::string& ip) {
    const std::string gateway = Ipv4Address(n.subnet.network().value() + 1).str();
    must("ip -n " + host + " link add " + host_end + " type veth peer name eth0 netns " + ns);
    must("ip -n " + host + " link set " + host_end + " master " + n.bridge + " up");
    must("ip -n " + ns + " addr add " + ip + "/24 dev eth0");
    must("ip -n " + ns + " link set eth0 up");
    must("ip -n " + ns + " route add default via " + gateway);
  }

  Firewall firewall() { return Firewall(NftContext::open_in(open_ns(host))); }
  std::string nft(const std::string& args) {
    return capture("ip netns exec " + host + " nft " + args + " 2>&1");
  }
};

}  // namespace

TEST_CASE("NftContext: one transaction per call, nft's messages as errors", "[firewall]") {
  Namespaces namespaces;
  const std::string ns = namespaces.add("ctx");
  const std::string other = namespaces.add("ctx2");
  NftContext nft = NftContext::open_in(open_ns(ns));

  nft.run("add table inet t1\nadd chain inet t1 c\n");
  CHECK(nft.run("list tables").find("table inet t1") != std::string::npos);

  SECTION("a failing command in the kernel undoes the whole batch") {
    Error e = error_of([&] {
      nft.run(
          "add table inet atomic\n"
          "add set inet atomic s { type ipv4_addr; }\n"
          "add element inet atomic s { 10.0.0.1 }\n"
          "create element inet atomic s { 10.0.0.1 }\n");
    });
    CHECK(e.code() == Errc::conflict);
    CHECK(std::string(e.what()).find("File exists") != std::string::npos);
    CHECK(nft.run("list tables").find("atomic") == std::string::npos);
  }
  SECTION("a syntax error sends nothing") {
    Error e = error_of([&] { nft.run("add table inet t2\nadd chain inet t2 {{\n"); });
    CHECK(e.code() == Errc::invalid_argument);
    CHECK(std::string(e.what()).rfind("nftables: Error: syntax error", 0) == 0);
    CHECK(nft.run("list tables").find("t2") == std::string::npos);
  }
  SECTION("missing objects are not_found") {
    Error e = error_of([&] { nft.run("delete table inet nothing-here"); });
    CHECK(e.code() == Errc::not_found);
    CHECK(std::string(e.what()).find("No such file or directory") != std::string::npos);
  }
  SECTION("errors do not leak into the next call's output") {
    CHECK_THROWS(nft.run("delete table inet nothing-here"));
    CHECK(nft.run("add table inet t3").empty());
  }
  SECTION("JSON in, JSON out") {
    nft.run(R"({"nftables": [{"add": {"table": {"family": "inet", "name": "tj"}}}]})");
    const std::string listing = nft.run("list tables", NftContext::Output::json);
    CHECK(listing.find(R"("name": "tj")") != std::string::npos);
  }
  SECTION("the context stays in the namespace it was made in") {
    {
      NetnsGuard guard(open_ns(other));
      nft.run("add table inet made-elsewhere");
    }
    CHECK(list_tables(ns).find("made-elsewhere") != std::string::npos);
    CHECK(list_tables(other).find("made-elsewhere") == std::string::npos);
  }
}

TEST_CASE("Firewall: isolation, egress and ingress with real packets", "[firewall]") {
  Host t;

  // Without the table, everything reaches everything: the refusals below
  // are the firewall's doing, not a missing route.
  REQUIRE(ping(t.a1, "10.82.0.2"));
  REQUIRE(ping(t.out, "10.81.0.2"));
  REQUIRE(ping(t.peer, "10.82.0.2"));
  REQUIRE(ping(t.c1, "198.18.0.2"));

  // Another firewall in the host that accepts everything, earlier than us:
  // its accept must not bypass isolation.
  must("ip netns exec " + t.host +
       " nft 'add table inet other; add chain inet other forward { type filter hook forward "
       "priority -100; policy accept; }; add rule inet other forward accept'");

  Firewall fw = t.firewall();
  fw.ensure_base();
  fw.add_network(t.net_a);
  fw.add_network(t.net_b);
  fw.add_network(t.net_c);
  CHECK(fw.check({t.net_a, t.net_b, t.net_c}).empty());
  // Both ends of the VXLAN tunnel are members (the host and the peer).
  const auto host_vtep = Ipv4Address::parse("198.18.1.1");
  const auto peer_vtep = Ipv4Address::parse("198.18.1.2");
  fw.set_members({host_vtep, peer_vtep});
  UNSCOPED_INFO(fw.dump());

  SECTION("one network: same host through the bridge, and across hosts over VXLAN") {
    CHECK(ping(t.a1, "10.81.0.3"));
    CHECK(ping(t.a2, "10.81.0.2"));
    // Not masqueraded inside a network.
    CHECK(tcp_peer_seen(t.a1, t.a2, "10.81.0.3", 8080) == "10.81.0.2");
    CHECK(ping(t.a1, "10.81.0.200"));
    CHECK(ping(t.peer, "10.81.0.2"));
  }

  SECTION("VXLAN only from a member's address") {
    fw.set_members({host_vtep});
    CHECK_FALSE(ping(t.peer, "10.81.0.2"));
    CHECK_FALSE(ping(t.a1, "10.81.0.200"));
    // Rewriting the rules keeps the members.
    fw.set_members({host_vtep, peer_vtep});
    fw.ensure_base();
    // The refused ping from a1 left its ARP entry for 10.81.0.200 resolving
    // (INCOMPLETE: a solicitation a second, the answers dropped with the
    // peer's VXLAN): a1's echo reply would wait for the next solicitation,
    // which may come after ping's 1 s (CI saw it). Fresh entries resolve at
    // once, as they would on a host that was never cut off.
    must("ip -n " + t.a1 + " neigh flush all");
    must("ip -n " + t.peer + " neigh flush all");
    CHECK(ping(t.peer, "10.81.0.2"));
    fw.set_members({});
    CHECK_FALSE(ping(t.peer, "10.81.0.2"));
  }

  SECTION("different networks: no ping, no TCP, either way") {
    CHECK_FALSE(ping(t.a1, "10.82.0.2"));
    CHECK_FALSE(ping(t.b1, "10.81.0.2"));
    CHECK_FALSE(ping(t.c1, "10.81.0.2"));
    CHECK_FALSE(tcp_peer_seen(t.a1, t.b1, "10.82.0.2", 8081));
    CHECK_FALSE(tcp_peer_seen(t.b1, t.a1, "10.81.0.2", 8081));
  }

  SECTION("different networks, with routes added by hand in the container") {
    must("ip netns exec " + t.a1 + " ip route add 10.82.0.0/24 via 10.81.0.1 dev eth0");
    CHECK_FALSE(ping(t.a1, "10.82.0.2"));
    // On-link, with the host's bridge as the neighbour: the packet is
    // handed straight to the host's router.
    const std::string bridge_mac =
        capture("ip -n " + t.host + " -br link show swn-fwa | awk '{print $3}'");
    REQUIRE(bridge_mac.size() >= 17);
    must("ip netns exec " + t.a1 + " ip route replace 10.82.0.0/24 dev eth0");
    must("ip netns exec " + t.a1 + " ip neigh replace 10.82.0.2 lladdr " +
         bridge_mac.substr(0, 17) + " dev eth0");
    CHECK_FALSE(ping(t.a1, "10.82.0.2"));
    CHECK_FALSE(tcp_peer_seen(t.a1, t.b1, "10.82.0.2", 8082));
  }

  SECTION("different networks across hosts: the VXLAN peer's route to B is refused") {
    // (peer routes 10.82.0.0/24 through its default, 10.81.0.1 on this host.)
    CHECK_FALSE(ping(t.peer, "10.82.0.2"));
    CHECK_FALSE(tcp_peer_seen(t.peer, t.b1, "10.82.0.2", 8083));
  }

  SECTION("a container reaches the outside, masqueraded to the host's address") {
    CHECK(ping(t.a1, "198.18.0.2"));
    CHECK(tcp_peer_seen(t.a1, t.out, "198.18.0.2", 8084) == "198.18.0.1");
    CHECK(tcp_peer_seen(t.b1, t.out, "198.18.0.2", 8084) == "198.18.0.1");
  }

  SECTION("an internal network has no egress") {
    CHECK_FALSE(ping(t.c1, "198.18.0.2"));
    CHECK_FALSE(tcp_peer_seen(t.c1, t.out, "198.18.0.2", 8085));
  }

  SECTION("the outside cannot reach a container, even with a route to it") {
    CHECK_FALSE(ping(t.out, "10.81.0.2"));
    CHECK_FALSE(ping(t.out, "10.83.0.2"));
    CHECK_FALSE(tcp_peer_seen(t.out, t.a1, "10.81.0.2", 8086));
    // The host itself stays reachable from the underlay (TCP, UDP, ping):
    // its input is filtered only on the VXLAN and gossip ports. VXLAN (UDP
    // 4789, from a member) is shown working by the
    // pings over swn-vxa above; its socket holds 4789, so UDP is tried next
    // door.
    CHECK(ping(t.out, "198.18.0.1"));
    CHECK(tcp_peer_seen(t.out, t.host, "198.18.0.1", 8086) == "198.18.0.2");
    Fd udp = socket_in(t.host, SOCK_DGRAM);
    sockaddr_in udp_port = address_of("198.18.0.1", 4790);
    REQUIRE(::bind(udp.get(), reinterpret_cast<sockaddr*>(&udp_port), sizeof udp_port) == 0);
    Fd sender = socket_in(t.out, SOCK_DGRAM);
    REQUIRE(::sendto(sender.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&udp_port),
                     sizeof udp_port) == 1);
    pollfd p{udp.get(), POLLIN, 0};
    CHECK(::poll(&p, 1, 1000) == 1);
  }

  SECTION("removing a network removes its elements, and nothing else") {
    const std::string rules_before = fw.dump().substr(fw.dump().find("\tchain "));
    fw.remove_network(t.net_b);
    CHECK(fw.check({t.net_a, t.net_c}).empty());
    const FirewallElements e = fw.actual_elements();
    for (const auto& [set, elements] : e) {
      for (const auto& element : elements) CHECK(element.find("swn-fwb") == std::string::npos);
      for (const auto& element : elements) CHECK(element.find("10.82.") == std::string::npos);
    }
    fw.remove_network(t.net_b);  // again: no error
    // A stays isolated from C, and A's egress still works.
    CHECK_FALSE(ping(t.a1, "10.83.0.2"));
    CHECK(tcp_peer_seen(t.a1, t.out, "198.18.0.2", 8087) == "198.18.0.1");
    // The rules are untouched (the dump leaves out the counters those
    // packets moved).
    CHECK(fw.dump().substr(fw.dump().find("\tchain ")) == rules_before);
    CHECK(t.nft("list chain inet swarmnet from-network").find("counter packets 0 ") !=
          std::string::npos);
  }

  SECTION("remove_all leaves no table, and other tables alone") {
    fw.remove_all();
    CHECK_FALSE(fw.table_exists());
    CHECK(fw.dump().empty());
    CHECK(fw.actual_elements().empty());
    const std::string tables = list_tables(t.host);
    CHECK(tables.find("swarmnet") == std::string::npos);
    CHECK(tables.find("table inet other") != std::string::npos);
    fw.remove_all();             // again: no error
    fw.remove_network(t.net_a);  // no table: nothing to remove
    Error e = error_of([&] { fw.add_network(t.net_a); });
    CHECK(e.code() == Errc::not_found);
    CHECK(std::string(e.what()).find("ensure_base") != std::string::npos);
    // Isolation is gone with the table: proof it was the table's doing.
    CHECK(ping(t.a1, "10.82.0.2"));
  }
}

TEST_CASE("Firewall: idempotent, incremental, reconcilable", "[firewall]") {
  Host t;
  Firewall fw = t.firewall();
  fw.ensure_base();
  const std::string base_dump = fw.dump();

  fw.ensure_base();
  CHECK(fw.dump() == base_dump);

  fw.add_network(t.net_a);
  fw.add_network(t.net_a);
  fw.add_network(t.net_c);
  const std::string chains = fw.dump().substr(fw.dump().find("\tchain "));
  // Networks are elements: the rules are those of the empty table.
  CHECK(chains == base_dump.substr(base_dump.find("\tchain ")));
  CHECK(fw.check({t.net_a, t.net_c}).empty());

  SECTION("ensure_base keeps the elements and the published chains' rules") {
    must("ip netns exec " + t.host +
         " nft add rule inet swarmnet published ip daddr 10.81.0.2 tcp dport 80 accept");
    fw.ensure_base();
    CHECK(fw.check({t.net_a, t.net_c}).empty());
    CHECK(t.nft("list chain inet swarmnet published").find("tcp dport 80 accept") !=
          std::string::npos);
    CHECK(fw.dump().find("tcp dport 80") != std::string::npos);
  }

  SECTION("the internal flag can change on re-add") {
    FirewallNetwork a = t.net_a;
    a.internal = true;
    fw.add_network(a);
    CHECK(fw.check({a, t.net_c}).empty());
    CHECK_FALSE(ping(t.a1, "198.18.0.2"));
    a.internal = false;
    fw.add_network(a);
    CHECK(fw.check({a, t.net_c}).empty());
    CHECK(ping(t.a1, "198.18.0.2"));
  }

  SECTION("an overlapping subnet is refused with nft's message") {
    FirewallNetwork overlap{"net-x", "swn-fwx", Ipv4Prefix::parse_network("10.81.0.0/16"), false};
    Error e = error_of([&] { fw.add_network(overlap); });
    INFO(e.what());
    CHECK(std::string(e.what()).find("net-x") != std::string::npos);
    // Nothing of the refused network was added.
    CHECK(fw.check({t.net_a, t.net_c}).empty());
  }

  SECTION("check reports drift; reconcile repairs it in one go") {
    must("ip netns exec " + t.host +
         " nft 'delete element inet swarmnet bridges { \"swn-fwa\" }; "
         "add element inet swarmnet subnets { 10.99.0.0/24 }'");
    const auto diff = fw.check({t.net_a, t.net_c});
    CHECK(diff == std::vector<std::string>{"set bridges: missing \"swn-fwa\"",
                                           "set subnets: unexpected 10.99.0.0/24"});
    fw.reconcile({t.net_a, t.net_b, t.net_c});
    CHECK(fw.check({t.net_a, t.net_b, t.net_c}).empty());
    CHECK_FALSE(ping(t.a1, "10.82.0.2"));
    CHECK(ping(t.a1, "10.81.0.3"));
  }
}

TEST_CASE("Firewall: the overlay is not connection-tracked, NATed connections still are", "[firewall]") {
  Host t;
  Firewall fw = t.firewall();
  fw.ensure_base();
  fw.add_network(t.net_a);
  fw.set_members({Ipv4Address::parse("198.18.1.1"), Ipv4Address::parse("198.18.1.2")});
  // The host's connection tracking table, as the kernel lists it.
  auto tracked = [&](const std::string& part) {
    const std::string table = capture("ip netns exec " + t.host + " cat /proc/net/nf_conntrack");
    UNSCOPED_INFO(table);
    return table.find(part) != std::string::npos;
  };

  SECTION("within a network, on this host and over VXLAN, neither the flows nor the tunnel") {
    // The tunnel's entries made before the firewall was there: the fixture's
    // VXLAN floods to its remote, so an IGMP or MLD report that the kernel
    // sends at a random moment after the bridge comes up may have crossed,
    // tracked, just before (it made CI fail once). Only new ones count.
    auto tunnel_flows = [&] {
      std::set<std::string> flows;
      std::istringstream table(capture("ip netns exec " + t.host + " cat /proc/net/nf_conntrack"));
      for (std::string line; std::getline(table, line);) {
        const size_t sport = line.find("sport=");
        if (line.find("dport=4789 ") != std::string::npos && sport != std::string::npos) {
          flows.insert(line.substr(sport, line.find(' ', sport) - sport));
        }
      }
      return flows;
    };
    const std::set<std::string> tunnel_before = tunnel_flows();
    INFO("tunnel flows tracked before the traffic: " << tunnel_before.size());
    CHECK(tcp_peer_seen(t.a1, t.a2, "10.81.0.3", 8090) == "10.81.0.2");
    CHECK(tcp_peer_seen(t.a1, t.peer, "10.81.0.200", 8091) == "10.81.0.2");
    CHECK(tcp_peer_seen(t.peer, t.a1, "10.81.0.2", 8092) == "10.81.0.200");
    CHECK_FALSE(tracked("dport=8090 "));
    CHECK_FALSE(tracked("dport=8091 "));
    CHECK_FALSE(tracked("dport=8092 "));
    std::set<std::string> tunnel_new;
    for (const auto& flow : tunnel_flows()) {
      if (!tunnel_before.count(flow)) tunnel_new.insert(flow);
    }
    CHECK(tunnel_new.empty());
    // Control: the same table shows a masqueraded connection to the outside.
    CHECK(tcp_peer_seen(t.a1, t.out, "198.18.0.2", 8093) == "198.18.0.1");
    CHECK(tracked("dport=8093 "));
  }

  SECTION("a VIP DNATed to a container here and to one over VXLAN: the replies, bridged, are translated back") {
    // As the balancer does it: the VIP on the bridge, DNAT in prerouting.
    must("ip -n " + t.host + " addr add 10.81.0.100/32 dev swn-fwa");
    must("ip netns exec " + t.host +
         " nft 'add table ip vip; add chain ip vip pre { type nat hook prerouting priority dstnat; }; "
         "add rule ip vip pre ip daddr 10.81.0.100 tcp dport 8094 dnat to 10.81.0.3; "
         "add rule ip vip pre ip daddr 10.81.0.100 tcp dport 8095 dnat to 10.81.0.200'");
    // A reply left untranslated comes from the backend's address: a1 answers
    // it with a reset and never connects.
    CHECK(tcp_peer_seen(t.a1, t.a2, "10.81.0.100", 8094) == "10.81.0.2");
    CHECK(tcp_peer_seen(t.a1, t.peer, "10.81.0.100", 8095) == "10.81.0.2");
    CHECK(tracked("dport=8094 "));
    CHECK(tracked("dport=8095 "));
    // Other connections of that client, within the network, are tracked
    // too from now on (its replies might be a NATed connection's); a
    // container that opened none stays untracked.
    CHECK(tcp_peer_seen(t.a2, t.peer, "10.81.0.200", 8096) == "10.81.0.3");
    CHECK_FALSE(tracked("dport=8096 "));
  }
}
