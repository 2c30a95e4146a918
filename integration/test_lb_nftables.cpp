// The nftables balancer against the real kernel. A "host" namespace with a
// bridge (10.250.0.0/24, gateway .1), three backend namespaces and a client
// namespace on it by veth pairs; each backend runs a TCP and a UDP server
// (a thread inside its namespace) that answers every message with its
// name. The client talks to the VIP 10.250.0.200 like a container would.
// Every namespace is named swn-lb-<pid>-* and deleted by its fixture's
// destructor (taking every link, rule and address inside with it), also
// when a check fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "lb/balancer.hpp"
#include "lb/conntrack_netlink.hpp"
#include "lb/vip_addresses.hpp"

using namespace swarmnet;
using namespace swarmnet::kernel;
using swarmnet::lb::VirtualIp;
using Clock = std::chrono::steady_clock;

namespace {

const std::string& prefix() {
  static const std::string p = "swn-lb-" + std::to_string(::getpid()) + "-";
  return p;
}

int run(const std::string& command) { return std::system(command.c_str()); }

std::string capture(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

class TestNetns {
 public:
  explicit TestNetns(const std::string& suffix) : name_(prefix() + suffix) {
    run("ip netns del " + name_ + " 2>/dev/null");
    if (run("ip netns add " + name_) != 0) FAIL("ip netns add " << name_ << " failed");
    run(exec("ip link set lo up"));
  }
  ~TestNetns() { run("ip netns del " + name_ + " 2>/dev/null"); }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  const std::string& name() const { return name_; }
  Netns open() const { return Netns::open("/var/run/netns/" + name_); }
  std::string exec(const std::string& command) const { return "ip netns exec " + name_ + " " + command; }

 private:
  std::string name_;
};

Ipv4Address ip(const char* text) { return Ipv4Address::parse(text); }

const char* kBridge = "swn-lbt";
const uint16_t kPort = 8080;
const auto kVip = ip("10.250.0.200");

sockaddr_in endpoint(Ipv4Address address, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = address.network_order();
  return sa;
}

// A socket in namespace `ns` (it stays there after we leave).
int socket_in(const TestNetns& ns, int type) {
  NetnsGuard guard(ns.open());
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) FAIL("socket: " << strerror(errno));
  return fd;
}

// TCP and UDP servers on port 8080 in one namespace, answering every
// message with their name, until destroyed.
class Backend {
 public:
  Backend(const TestNetns& ns, std::string name) : name_(std::move(name)) {
    tcp_ = socket_in(ns, SOCK_STREAM);
    udp_ = socket_in(ns, SOCK_DGRAM);
    int one = 1;
    setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in any = endpoint(Ipv4Address(), kPort);
    if (::bind(tcp_, reinterpret_cast<sockaddr*>(&any), sizeof(any)) < 0 || ::listen(tcp_, 512) < 0 ||
        ::bind(udp_, reinterpret_cast<sockaddr*>(&any), sizeof(any)) < 0) {
      FAIL("server " << name_ << ": " << strerror(errno));
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~Backend() {
    stop_ = true;
    thread_.join();
    for (int fd : connections_) ::close(fd);
    ::close(tcp_);
    ::close(udp_);
  }

 private:
  void serve() {
    while (!stop_) {
      std::vector<pollfd> fds{{tcp_, POLLIN, 0}, {udp_, POLLIN, 0}};
      for (int fd : connections_) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int fd = ::accept4(tcp_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) connections_.push_back(fd);
      }
      if (fds[1].revents & POLLIN) {
        char buf[512];
        sockaddr_in peer{};
        socklen_t len = sizeof(peer);
        if (::recvfrom(udp_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer), &len) >= 0) {
          ::sendto(udp_, name_.data(), name_.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        char buf[512];
        ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
        if (n > 0) {
          (void)!::write(fds[i].fd, name_.data(), name_.size());
        } else {
          ::close(fds[i].fd);
          connections_.erase(std::find(connections_.begin(), connections_.end(), fds[i].fd));
        }
      }
    }
  }

  std::string name_;
  int tcp_ = -1;
  int udp_ = -1;
  std::vector<int> connections_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

bool wait_readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

// A TCP connection from the client to the VIP. `error` is the errno of a
// failed connect (ECONNREFUSED, ETIMEDOUT).
class Connection {
 public:
  Connection(const TestNetns& client, Ipv4Address to) {
    fd_ = socket_in(client, SOCK_STREAM);
    int flags = ::fcntl(fd_, F_GETFL);
    ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
    sockaddr_in sa = endpoint(to, kPort);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 && errno != EINPROGRESS) {
      error = errno;
      return;
    }
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, 3000) != 1) {
      error = ETIMEDOUT;
      return;
    }
    socklen_t len = sizeof(error);
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len);
    ::fcntl(fd_, F_SETFL, flags);
  }
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The backend's name, "" when nothing came back.
  std::string ask() {
    if (error) return "";
    if (::write(fd_, "?", 1) != 1) return "";
    if (!wait_readable(fd_, 3000)) return "";
    char buf[64];
    ssize_t n = ::read(fd_, buf, sizeof(buf));
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

  int error = 0;

 private:
  int fd_ = -1;
};

std::string ask_tcp(const TestNetns& client, Ipv4Address to) {
  Connection c(client, to);
  return c.ask();
}

// One datagram from a fresh socket (a new source port); "" on no answer,
// "refused" on ICMP port unreachable.
std::string ask_udp(const TestNetns& client, Ipv4Address to) {
  int fd = socket_in(client, SOCK_DGRAM);
  sockaddr_in sa = endpoint(to, kPort);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 && ::send(fd, "?", 1, 0) == 1 &&
      wait_readable(fd, 2000)) {
    char buf[64];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    out = n > 0 ? std::string(buf, static_cast<size_t>(n)) : (errno == ECONNREFUSED ? "refused" : "");
  }
  ::close(fd);
  return out;
}

// The lab: host with the bridge, three backends, one client.
struct Lab {
  TestNetns host{"host"};
  TestNetns b1{"b1"}, b2{"b2"}, b3{"b3"}, client{"cl"};
  std::unique_ptr<lb::Balancer> balancer;
  std::vector<Ipv4Address> backends{ip("10.250.0.11"), ip("10.250.0.12"), ip("10.250.0.13")};

  Lab() {
    REQUIRE(run(host.exec("ip link add ") + kBridge + " type bridge") == 0);
    run(host.exec("ip addr add 10.250.0.1/24 dev ") + kBridge);
    run(host.exec("ip link set ") + kBridge + " up");
    run(host.exec("sysctl -qw net.ipv4.ip_forward=1"));
    run(host.exec("sysctl -qw net.bridge.bridge-nf-call-iptables=1"));
    struct Member {
      const TestNetns& ns;
      const char* address;
    };
    int i = 0;
    for (Member m : {Member{b1, "10.250.0.11"}, Member{b2, "10.250.0.12"}, Member{b3, "10.250.0.13"},
                     Member{client, "10.250.0.50"}}) {
      std::string port = "lbp" + std::to_string(i++);
      REQUIRE(run(host.exec("ip link add " + port + " type veth peer name eth0 netns " + m.ns.name())) == 0);
      run(host.exec("ip link set " + port + " master ") + kBridge);
      run(host.exec("ip link set " + port + " up"));
      run(m.ns.exec(std::string("ip addr add ") + m.address + "/24 dev eth0"));
      run(m.ns.exec("ip link set eth0 up"));
      run(m.ns.exec("ip route add default via 10.250.0.1"));
    }
    NetnsGuard guard(host.open());
    balancer = lb::make_nftables_balancer();
  }
  ~Lab() {
    if (balancer) {
      try {
        balancer->clear();
      } catch (...) {
      }
    }
  }

  VirtualIp vip(std::vector<Ipv4Address> to, const std::string& key = "web/net1",
                Ipv4Address address = kVip) const {
    return VirtualIp{key, address, kBridge, std::move(to)};
  }

  void set_conntrack_established_timeout(int seconds) {
    run(host.exec("sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established=" + std::to_string(seconds)));
  }
};

std::map<std::string, int> tally(int n, const std::function<std::string()>& ask) {
  std::map<std::string, int> seen;
  for (int i = 0; i < n; ++i) ++seen[ask()];
  return seen;
}

}  // namespace

TEST_CASE("VIP traffic reaches every backend, roughly evenly, over TCP and UDP", "[lb][nftables]") {
  Lab lab;
  Backend s1(lab.b1, "b1"), s2(lab.b2, "b2"), s3(lab.b3, "b3");
  lab.balancer->upsert(lab.vip(lab.backends));

  auto tcp = tally(300, [&] { return ask_tcp(lab.client, kVip); });
  INFO("tcp: b1=" << tcp["b1"] << " b2=" << tcp["b2"] << " b3=" << tcp["b3"] << " none=" << tcp[""]);
  CHECK(tcp[""] == 0);
  for (const char* b : {"b1", "b2", "b3"}) CHECK(tcp[b] >= 60);  // 100 each if perfectly even

  auto udp = tally(300, [&] { return ask_udp(lab.client, kVip); });
  INFO("udp: b1=" << udp["b1"] << " b2=" << udp["b2"] << " b3=" << udp["b3"] << " none=" << udp[""]);
  CHECK(udp[""] == 0);
  for (const char* b : {"b1", "b2", "b3"}) CHECK(udp[b] >= 60);
}

TEST_CASE("a removed backend gets no new connection; open connections keep their backend", "[lb][nftables]") {
  Lab lab;
  Backend s1(lab.b1, "b1"), s2(lab.b2, "b2"), s3(lab.b3, "b3");
  lab.balancer->upsert(lab.vip(lab.backends));

  std::vector<std::unique_ptr<Connection>> open;
  std::vector<std::string> first;
  std::map<std::string, int> spread;
  for (int i = 0; i < 30; ++i) {
    open.push_back(std::make_unique<Connection>(lab.client, kVip));
    first.push_back(open.back()->ask());
    ++spread[first.back()];
  }
  REQUIRE(spread["b3"] > 0);  // some open connection is on the backend that goes

  lab.balancer->upsert(lab.vip({lab.backends[0], lab.backends[1]}));

  auto after = tally(150, [&] { return ask_tcp(lab.client, kVip); });
  CHECK(after["b3"] == 0);
  CHECK(after[""] == 0);
  CHECK(after["b1"] > 0);
  CHECK(after["b2"] > 0);
  for (size_t i = 0; i < open.size(); ++i) CHECK(open[i]->ask() == first[i]);
}

// A UDP client that keeps its source port (a resolver, syslog, statsd):
// every datagram renews its conntrack entry, which keeps the DNAT it got.
class PinnedUdpClient {
 public:
  PinnedUdpClient(const TestNetns& client, Ipv4Address to, uint16_t source_port) {
    fd_ = socket_in(client, SOCK_DGRAM);
    sockaddr_in from = endpoint(Ipv4Address(0), source_port);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in sa = endpoint(to, kPort);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) == 0);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  }
  ~PinnedUdpClient() { ::close(fd_); }
  PinnedUdpClient(const PinnedUdpClient&) = delete;
  PinnedUdpClient& operator=(const PinnedUdpClient&) = delete;

  // The backend's name; "" when nothing came back.
  std::string ask() {
    if (::send(fd_, "?", 1, 0) != 1 || !wait_readable(fd_, 2000)) return "";
    char buf[64];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  int fd_ = -1;
};

TEST_CASE("a UDP client that keeps its source port fails over when its backend leaves the VIP",
          "[lb][nftables]") {
  Lab lab;
  Backend s1(lab.b1, "b1"), s2(lab.b2, "b2"), s3(lab.b3, "b3");
  lab.balancer->upsert(lab.vip(lab.backends));
  const std::map<std::string, Ipv4Address> address{
      {"b1", lab.backends[0]}, {"b2", lab.backends[1]}, {"b3", lab.backends[2]}};
  auto flows_to_vip = [&] {
    NetnsGuard guard(lab.host.open());
    return lb::conntrack::ConntrackSocket().udp_flows(kVip);
  };
  // The flows are forgotten just after the change, by the balancer's
  // thread: true once no flow to the VIP goes to `backend` (or to any).
  auto forgotten = [&](std::optional<Ipv4Address> backend) {
    for (auto until = Clock::now() + std::chrono::seconds(3); Clock::now() < until;) {
      auto flows = flows_to_vip();
      if (std::none_of(flows.begin(), flows.end(), [&](const lb::conntrack::Flow& f) {
            return !backend || f.reply_source == *backend;
          })) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  };

  PinnedUdpClient pinned(lab.client, kVip, 40000);
  std::string first = pinned.ask();
  REQUIRE(address.count(first));
  // The control: the flow stays where it went (its entry keeps its NAT).
  for (int i = 0; i < 5; ++i) REQUIRE(pinned.ask() == first);
  auto flows = flows_to_vip();
  REQUIRE(flows.size() == 1);
  CHECK(flows[0].source == ip("10.250.0.50"));
  CHECK(flows[0].source_port == 40000);
  CHECK(flows[0].destination_port == kPort);
  CHECK(flows[0].reply_source == address.at(first));

  // Its backend leaves: the next datagram, same port, goes to one that is left.
  std::vector<Ipv4Address> rest;
  for (Ipv4Address b : lab.backends) {
    if (b != address.at(first)) rest.push_back(b);
  }
  lab.balancer->upsert(lab.vip(rest));
  REQUIRE(forgotten(address.at(first)));
  std::string second = pinned.ask();
  INFO("first " << first << ", then " << second);
  CHECK(address.count(second));
  CHECK(second != first);
  for (int i = 0; i < 5; ++i) CHECK(pinned.ask() == second);

  // A backend that stays keeps its flows: another backend leaving changes nothing.
  std::vector<Ipv4Address> others;
  for (Ipv4Address b : rest) {
    if (b != address.at(second)) others.push_back(b);
  }
  lab.balancer->upsert(lab.vip({address.at(second)}));
  REQUIRE(forgotten(others[0]));
  CHECK(pinned.ask() == second);
  lab.balancer->upsert(lab.vip(lab.backends));
  CHECK(pinned.ask() == second);

  // The same after a daemon restart: a new balancer's sync that drops it.
  {
    NetnsGuard guard(lab.host.open());
    auto restarted = lb::make_nftables_balancer();
    restarted->sync({lab.vip(others)});
  }  // (its destructor waits for its thread's deletes)
  std::string third = pinned.ask();
  INFO("after the sync: " << third);
  CHECK(third == [&] {
    for (const auto& [name, a] : address) {
      if (a == others[0]) return name;
    }
    return std::string();
  }());

  // And when the VIP goes, none of its flows is left.
  lab.balancer->remove("web/net1");
  CHECK(forgotten(std::nullopt));
}

TEST_CASE("an idle connection outlives its conntrack entry: the hash sends it back to its backend",
          "[lb][nftables]") {
  Lab lab;
  Backend s1(lab.b1, "b1"), s2(lab.b2, "b2"), s3(lab.b3, "b3");
  lab.balancer->upsert(lab.vip(lab.backends));
  lab.set_conntrack_established_timeout(2);

  // Several connections: with a random choice per new flow, each would
  // land on another backend (and be reset) two times in three.
  std::vector<std::unique_ptr<Connection>> open;
  std::vector<std::string> first;
  for (int i = 0; i < 6; ++i) {
    open.push_back(std::make_unique<Connection>(lab.client, kVip));
    first.push_back(open.back()->ask());
    REQUIRE(!first.back().empty());
  }
  auto tracked = [&] {
    std::string table = capture(lab.host.exec("cat /proc/net/nf_conntrack"));
    size_t n = 0;
    for (size_t at = table.find("dport=8080"); at != std::string::npos; at = table.find("dport=8080", at + 1)) ++n;
    return n;
  };
  REQUIRE(tracked() > 0);
  std::this_thread::sleep_for(std::chrono::seconds(5));  // > 2 s: the entries expire
  REQUIRE(tracked() == 0);
  for (size_t i = 0; i < open.size(); ++i) CHECK(open[i]->ask() == first[i]);
}

TEST_CASE("a VIP with no backend refuses at once, even with a host process on the port", "[lb][nftables]") {
  Lab lab;
  // A listener in the host namespace on the service port: the VIP must not
  // reach it.
  Backend on_host(lab.host, "host");
  lab.balancer->upsert(lab.vip({}));

  auto start = Clock::now();
  Connection c(lab.client, kVip);
  CHECK(c.error == ECONNREFUSED);
  CHECK(ask_udp(lab.client, kVip) == "refused");
  CHECK(Clock::now() - start < std::chrono::seconds(1));

  // And balanced again once there is a backend.
  Backend s1(lab.b1, "b1");
  lab.balancer->upsert(lab.vip({lab.backends[0]}));
  CHECK(ask_tcp(lab.client, kVip) == "b1");
  CHECK(ask_udp(lab.client, kVip) == "b1");
}

TEST_CASE("read_kernel_state, remove, sync and clear leave exactly what was asked", "[lb][nftables]") {
  Lab lab;
  auto& balancer = *lab.balancer;
  VirtualIp a = lab.vip({lab.backends[0], lab.backends[2]}, "a/net1", ip("10.250.0.200"));
  VirtualIp b = lab.vip({lab.backends[1]}, "b/net1", ip("10.250.0.201"));
  VirtualIp c = lab.vip({}, "c/net1", ip("10.250.0.202"));
  balancer.upsert(a);
  balancer.upsert(b);
  balancer.upsert(c);
  CHECK(balancer.read_kernel_state() == std::vector<VirtualIp>{a, b, c});
  CHECK(lb::describe_differences({a, b, c}, balancer.read_kernel_state()).empty());
  balancer.upsert(a);  // idempotent
  CHECK(balancer.read_kernel_state() == std::vector<VirtualIp>{a, b, c});

  auto routes = [&] {
    NetnsGuard guard(lab.host.open());
    auto nl = NetlinkSocket::open();
    return lb::list_vip_routes(nl);
  };
  balancer.remove("a/net1");
  balancer.remove("a/net1");  // already gone: no error
  CHECK(balancer.read_kernel_state() == std::vector<VirtualIp>{b, c});
  std::string table = capture(lab.host.exec("nft list table ip swarmnet-lb"));
  CHECK(table.find("10.250.0.200") == std::string::npos);
  CHECK(table.find("a/net1") == std::string::npos);
  CHECK(routes() ==
        std::vector<std::pair<std::string, Ipv4Address>>{{kBridge, b.vip}, {kBridge, c.vip}});
  // As `ip route` shows them: local routes in the local table, no address.
  std::string local = capture(lab.host.exec("ip -4 route show table local proto 83"));
  CHECK(local.find("local 10.250.0.201 dev swn-lbt") != std::string::npos);
  CHECK(local.find("local 10.250.0.202 dev swn-lbt") != std::string::npos);
  CHECK(capture(lab.host.exec("ip -4 -o address show")).find("10.250.0.20") == std::string::npos);

  // A VIP's address and backends change under the same key.
  VirtualIp b2 = lab.vip({lab.backends[0], lab.backends[1], lab.backends[2]}, "b/net1", ip("10.250.0.210"));
  balancer.upsert(b2);
  CHECK(balancer.read_kernel_state() == std::vector<VirtualIp>{b2, c});

  // sync: d is added, c removed, b changed; a second balancer (a daemon
  // restart) sees the same.
  VirtualIp d = lab.vip({lab.backends[2]}, "d/net1", ip("10.250.0.203"));
  VirtualIp b3 = lab.vip({lab.backends[1]}, "b/net1", ip("10.250.0.210"));
  {
    NetnsGuard guard(lab.host.open());
    auto restarted = lb::make_nftables_balancer();
    restarted->sync({d, b3});
    CHECK(restarted->read_kernel_state() == std::vector<VirtualIp>{b3, d});
  }
  CHECK(balancer.read_kernel_state() == std::vector<VirtualIp>{b3, d});
  CHECK(routes() ==
        std::vector<std::pair<std::string, Ipv4Address>>{{kBridge, d.vip}, {kBridge, b3.vip}});
  CHECK(lb::describe_differences({b3, d}, balancer.read_kernel_state()).empty());
  // The balancer that did not sync learns the new state after a refused batch.
  balancer.upsert(lab.vip({lab.backends[0]}, "d/net1", ip("10.250.0.203")));
  CHECK(balancer.read_kernel_state()[1].backends == std::vector<Ipv4Address>{lab.backends[0]});

  // A backend removed by hand shows in lb check's terms.
  run(lab.host.exec("nft delete element ip swarmnet-lb backends '{ 10.250.0.210 . 0x00000000 }'"));
  CHECK(lb::describe_differences({b3}, {balancer.read_kernel_state()[0]}) ==
        "VIP b/net1: missing backend 10.250.0.12\n");

  balancer.clear();
  CHECK(run(lab.host.exec("nft list table ip swarmnet-lb >/dev/null 2>&1")) != 0);
  CHECK(routes().empty());
  CHECK(balancer.read_kernel_state().empty());
}

// An address on the lab's bridge with an address protocol (iproute2 6.1's
// `ip address add` cannot set one).
void add_address_with_protocol(const TestNetns& ns, Ipv4Address address, uint8_t protocol) {
  NetnsGuard guard(ns.open());
  auto nl = NetlinkSocket::open();
  ifaddrmsg header{};
  header.ifa_family = AF_INET;
  header.ifa_prefixlen = 32;
  header.ifa_index = static_cast<unsigned>(nl.link_index(kBridge));
  uint32_t bytes = address.network_order();
  nl_msg* msg = nlmsg_alloc_simple(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  REQUIRE(msg);
  int err = nlmsg_append(msg, &header, sizeof(header), NLMSG_ALIGNTO);
  if (err >= 0) err = nla_put(msg, IFA_LOCAL, 4, &bytes);
  if (err >= 0) err = nla_put(msg, IFA_ADDRESS, 4, &bytes);
  if (err >= 0) err = nla_put_u8(msg, IFA_PROTO, protocol);
  if (err >= 0) err = nl_send_auto(nl.raw(), msg);
  if (err >= 0) err = nl_wait_for_ack(nl.raw());
  nlmsg_free(msg);
  REQUIRE(err >= 0);
}

TEST_CASE(
    "an earlier release's VIP addresses are taken over: local routes instead, traffic balanced",
    "[lb][nftables]") {
  Lab lab;
  Backend s1(lab.b1, "b1"), s2(lab.b2, "b2"), s3(lab.b3, "b3");
  VirtualIp web = lab.vip({lab.backends[0], lab.backends[1]});
  VirtualIp api = lab.vip({lab.backends[2]}, "api/net1", ip("10.250.0.201"));
  lab.balancer->sync({web, api});
  // As an earlier release left them: each VIP a /32 on the bridge with
  // address protocol 83, and no route of ours.
  {
    NetnsGuard guard(lab.host.open());
    auto nl = NetlinkSocket::open();
    lb::remove_vip_route(nl, kBridge, web.vip);
    lb::remove_vip_route(nl, kBridge, api.vip);
    REQUIRE(lb::list_vip_routes(nl).empty());
  }
  add_address_with_protocol(lab.host, web.vip, 83);
  add_address_with_protocol(lab.host, api.vip, 83);
  // The node's own address (protocol 84) is no VIP: it stays.
  add_address_with_protocol(lab.host, ip("10.250.0.60"), 84);
  // Control: the addresses are there and the VIPs answer through them.
  REQUIRE(capture(lab.host.exec("ip -4 -o address show dev swn-lbt")).find(" 10.250.0.200/32") !=
          std::string::npos);
  REQUIRE(!ask_tcp(lab.client, kVip).empty());

  {
    NetnsGuard guard(lab.host.open());
    auto restarted = lb::make_nftables_balancer();
    restarted->sync({web, api});
    CHECK(restarted->read_kernel_state() == std::vector<VirtualIp>{api, web});
    auto nl = NetlinkSocket::open();
    CHECK(lb::list_vip_routes(nl) ==
          std::vector<std::pair<std::string, Ipv4Address>>{{kBridge, web.vip}, {kBridge, api.vip}});
  }
  std::string addresses = capture(lab.host.exec("ip -4 -o address show dev swn-lbt"));
  CHECK(addresses.find(" 10.250.0.200/32") == std::string::npos);
  CHECK(addresses.find(" 10.250.0.201/32") == std::string::npos);
  CHECK(addresses.find(" 10.250.0.60/32") != std::string::npos);
  // A fresh ARP entry: the client must ask the host for the VIP again.
  run(lab.client.exec("ip neigh flush dev eth0"));
  auto tcp = tally(60, [&] { return ask_tcp(lab.client, kVip); });
  INFO("web: b1=" << tcp["b1"] << " b2=" << tcp["b2"] << " b3=" << tcp["b3"]
                  << " none=" << tcp[""]);
  CHECK(tcp[""] == 0);
  CHECK(tcp["b3"] == 0);
  CHECK(tcp["b1"] > 0);
  CHECK(tcp["b2"] > 0);
  CHECK(ask_udp(lab.client, api.vip) == "b3");
}

// The table as the previous release made it: VIP -> goto mod-N in the
// verdict map @vips (the earlier shape), with `vip` balanced over `backends`.
std::string earlier_table(const VirtualIp& vip) {
  std::string text =
      "table ip swarmnet-lb {\n"
      "  map vips { type ipv4_addr : verdict; }\n"
      "  set vip-addresses { type ipv4_addr; }\n"
      "  map backends { typeof ip daddr . numgen inc mod 2 : ip daddr; }\n"
      "  set hairpin { type ipv4_addr . ipv4_addr; }\n"
      "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n"
      "    meta l4proto tcp ip daddr vmap @vips\n"
      "    meta l4proto udp ip daddr vmap @vips\n  }\n"
      "  chain output { type nat hook output priority -100; policy accept;\n"
      "    meta l4proto tcp ip daddr vmap @vips\n"
      "    meta l4proto udp ip daddr vmap @vips\n  }\n"
      "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
      "    ip saddr . ip daddr @hairpin masquerade\n  }\n"
      "  chain input { type filter hook input priority filter; policy accept;\n"
      "    meta l4proto tcp ct direction original ip daddr @vip-addresses reject with tcp reset\n"
      "    meta l4proto udp ct direction original ip daddr @vip-addresses reject\n  }\n";
  for (int n = 1; n <= 3; ++n) {
    text += "  chain mod-" + std::to_string(n) + " { dnat to ip daddr . jhash ip saddr . th sport . ip daddr . th dport mod " +
            std::to_string(n) + " seed 0x5357524d map @backends; }\n";
  }
  text += "}\n";
  text += "add element ip swarmnet-lb vips { " + vip.vip.str() + " comment \"key " + vip.key + " bridge " +
          vip.bridge + "\" : goto mod-" + std::to_string(vip.backends.size()) + " }\n";
  text += "add element ip swarmnet-lb vip-addresses { " + vip.vip.str() + " }\n";
  for (size_t i = 0; i < vip.backends.size(); ++i) {
    text += "add element ip swarmnet-lb backends { " + vip.vip.str() + " . " + std::to_string(i) + " : " +
            vip.backends[i].str() + " }\n";
    text += "add element ip swarmnet-lb hairpin { " + vip.backends[i].str() + " . " + vip.backends[i].str() + " }\n";
  }
  return text;
}

TEST_CASE("a table of the earlier shape (a verdict map of VIPs) is replaced, its VIPs kept and balanced",
          "[lb][nftables]") {
  Lab lab;
  Backend s1(lab.b1, "b1"), s2(lab.b2, "b2"), s3(lab.b3, "b3");
  VirtualIp web = lab.vip({lab.backends[0], lab.backends[1]});
  VirtualIp api = lab.vip({lab.backends[2]}, "api/net1", ip("10.250.0.201"));
  {
    std::string path = "/tmp/" + prefix() + "earlier.nft";
    FILE* file = std::fopen(path.c_str(), "w");
    REQUIRE(file);
    std::string text = earlier_table(web);
    std::fwrite(text.data(), 1, text.size(), file);
    std::fclose(file);
    int rc = run(lab.host.exec("nft -f " + path));
    std::remove(path.c_str());
    REQUIRE(rc == 0);
    NetnsGuard guard(lab.host.open());
    auto nl = NetlinkSocket::open();
    lb::ensure_vip_route(nl, kBridge, web.vip);
  }
  // Control: the earlier table balances web.
  auto before = tally(30, [&] { return ask_tcp(lab.client, kVip); });
  REQUIRE(before[""] == 0);
  REQUIRE(before["b1"] + before["b2"] == 30);

  // A balancer of this release (a daemon upgraded, before its sync) adds a VIP.
  {
    NetnsGuard guard(lab.host.open());
    auto upgraded = lb::make_nftables_balancer();
    upgraded->upsert(api);
    CHECK(upgraded->read_kernel_state() == std::vector<VirtualIp>{api, web});
  }
  std::string table = capture(lab.host.exec("nft list table ip swarmnet-lb"));
  INFO(table);
  CHECK(table.find("map vips ") == std::string::npos);
  CHECK(table.find("goto mod-") == std::string::npos);
  CHECK(table.find("set vips-2 ") != std::string::npos);
  auto tcp = tally(60, [&] { return ask_tcp(lab.client, kVip); });
  INFO("web: b1=" << tcp["b1"] << " b2=" << tcp["b2"] << " b3=" << tcp["b3"] << " none=" << tcp[""]);
  CHECK(tcp[""] == 0);
  CHECK(tcp["b3"] == 0);
  CHECK(tcp["b1"] > 0);
  CHECK(tcp["b2"] > 0);
  CHECK(ask_udp(lab.client, api.vip) == "b3");
}

TEST_CASE("nft lists the table, JSON too, with a backend count beyond the precreated ones", "[lb][nftables]") {
  Lab lab;
  std::vector<Ipv4Address> many;
  for (uint32_t i = 0; i < 20; ++i) many.push_back(Ipv4Address(0x0afa0000u + 100 + i));
  VirtualIp big = lab.vip(many, "big/net1", ip("10.250.0.220"));
  VirtualIp web = lab.vip({lab.backends[0], lab.backends[1]});
  lab.balancer->upsert(web);
  lab.balancer->upsert(big);
  CHECK(lab.balancer->read_kernel_state() == std::vector<VirtualIp>{big, web});
  // The JSON listing is what the integration scripts read; each VIP's N
  // is the set it is in.
  std::string json = capture(lab.host.exec(
      "nft -j list table ip swarmnet-lb | jq -r '.nftables[] | .set // empty | select(.name | startswith(\"vips-\")) "
      "| select(.elem) | \"\\(.name) \\(.elem | length)\"'"));
  CHECK(json == "vips-2 1\nvips-20 1\n");
  std::string text = capture(lab.host.exec("nft list table ip swarmnet-lb 2>&1"));
  INFO(text);
  CHECK(text.find("ip daddr @vips-20 dnat to ip daddr . jhash ip saddr . th sport . ip daddr . th dport mod 20 "
                  "seed 0x5357524d map @backends") != std::string::npos);
  CHECK(text.find("ip daddr @vip-addresses goto balance") != std::string::npos);
}

TEST_CASE("a VIP moved to another bridge keeps its one local route, through the new bridge",
          "[lb][nftables]") {
  Lab lab;
  REQUIRE(run(lab.host.exec("ip link add swn-lbt2 type bridge")) == 0);
  run(lab.host.exec("ip link set swn-lbt2 up"));
  VirtualIp web = lab.vip({lab.backends[0]});
  lab.balancer->upsert(web);
  web.bridge = "swn-lbt2";
  lab.balancer->upsert(web);
  NetnsGuard guard(lab.host.open());
  auto nl = NetlinkSocket::open();
  CHECK(lb::list_vip_routes(nl) ==
        std::vector<std::pair<std::string, Ipv4Address>>{{"swn-lbt2", kVip}});
  CHECK(lab.balancer->read_kernel_state() == std::vector<VirtualIp>{web});
}

TEST_CASE(
    "10,000 VIPs of 10 backends: full load, one change, and a VIP added costs as much as with 10",
    "[lb][nftables][scale]") {
  TestNetns host("scale");
  run(host.exec("ip link add ") + kBridge + " type bridge");
  run(host.exec("ip link set ") + kBridge + " up");
  NetnsGuard guard(host.open());
  auto balancer = lb::make_nftables_balancer();
  std::vector<VirtualIp> all;
  for (uint32_t i = 0; i < 10000; ++i) {
    VirtualIp v{"svc" + std::to_string(i) + "/net1", Ipv4Address(0x0a800000u + i), kBridge, {}};
    for (uint32_t j = 0; j < 10; ++j) v.backends.push_back(Ipv4Address(0x0a000000u + i * 16 + j));
    all.push_back(v);
  }
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  // The median time of adding 21 new VIPs (numbered from `first`) to what is loaded.
  auto add_median = [&](uint32_t first) {
    std::vector<double> adds;
    for (uint32_t k = first; k < first + 21; ++k) {
      VirtualIp v{"new" + std::to_string(k) + "/net1", Ipv4Address(0x0ac00000u + k), kBridge, {}};
      for (uint32_t j = 0; j < 10; ++j) v.backends.push_back(Ipv4Address(0x0ad00000u + k * 16 + j));
      auto t = Clock::now();
      balancer->upsert(v);
      adds.push_back(ms_since(t));
    }
    std::sort(adds.begin(), adds.end());
    return adds[10];
  };
  // The median time of 21 changes of a backend count (10 -> 9 -> 10...) among the first `among` VIPs.
  auto change_median = [&](size_t among) {
    std::vector<double> changes;
    for (size_t k = 0; k < 21; ++k) {
      VirtualIp v = all[(k * 397) % among];
      if ((k / among) % 2 == 0) v.backends.pop_back();
      auto t = Clock::now();
      balancer->upsert(v);
      changes.push_back(ms_since(t));
    }
    std::sort(changes.begin(), changes.end());
    return changes;
  };
  balancer->sync({all.begin(), all.begin() + 10});
  double add_small = add_median(0);
  double change_small = change_median(10)[10];

  auto t0 = Clock::now();
  balancer->sync(all);
  double load = ms_since(t0);
  double add_large = add_median(100);

  std::vector<double> changes = change_median(all.size());
  WARN("10,000 VIPs x 10 backends: full load (with the VIP routes) "
       << load << " ms; one change: median " << change_small << " ms among 10 VIPs, " << changes[10]
       << " ms among 10,000 (max " << changes.back() << " ms); a VIP added: median " << add_small
       << " ms with 10 VIPs, " << add_large << " ms with 10,000");
  // A generous bound for a loaded CI machine: with the VIPs as /32
  // addresses on the bridge the load took 4 to 15 s (bench/lb_bench has the
  // figures).
  CHECK(load < 5000);
  // Flat: among 10,000 VIPs a change and a VIP added cost what they cost
  // among 10 (the slack is for a loaded machine's jitter). With a verdict
  // map of VIPs each took 2.4-2.9 ms among 10,000 against 0.05 among 10.
  CHECK(changes[10] < 3 * change_small + 0.5);
  CHECK(add_large < 3 * add_small + 0.5);
  balancer->clear();
}
