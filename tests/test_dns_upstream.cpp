// Upstream forwarding against a real dnsmasq on loopback (a free port, no
// root needed beyond what dnsmasq wants): answers relayed byte for byte with
// the client's id, over UDP and TCP; REFUSED relayed, not retried; a closed
// port and a silent server fail in bounded time; the outstanding limit;
// many queries at once; clean destruction with queries in flight; and
// swarmnet's DNS server relaying outside names through it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "dns/name_table.hpp"
#include "dns/server.hpp"
#include "dns/upstream.hpp"
#include "support/dns_packets.hpp"
#include "support/loopback_dns.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr const char* kDnsmasq = "/usr/sbin/dnsmasq";
const Ipv4Address kLoopback(0x7f000001);

// A query packet (support/dns_packets.hpp builds it by hand, so these tests
// do not lean on the codec): one question, RD set, optionally EDNS.
Bytes make_query(uint16_t id, const std::string& name, uint16_t qtype, uint16_t edns_size = 0) {
  return test::make_query(name, qtype, {.id = id, .edns = edns_size != 0, .edns_size = edns_size});
}

uint16_t id_of(const Bytes& m) { return uint16_t(m.at(0) << 8 | m.at(1)); }
int rcode_of(const Bytes& m) { return m.at(3) & 0x0f; }
bool tc_of(const Bytes& m) { return (m.at(2) & 0x02) != 0; }
unsigned ancount_of(const Bytes& m) { return unsigned(m.at(6) << 8 | m.at(7)); }

using test::Fd;
using test::loopback_addr;

uint16_t bound_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// A UDP socket bound on loopback that never reads: a server that never answers.
Fd silent_udp_server() {
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa = loopback_addr(0);
  REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  return fd;
}

// A port free for both UDP and TCP on loopback right now.
uint16_t free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    Fd tcp(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = loopback_addr(0);
    if (bind(tcp.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) continue;
    const uint16_t port = bound_port(tcp.get());
    Fd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sa = loopback_addr(port);
    if (bind(udp.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return port;
  }
  FAIL("no free port");
  return 0;
}

std::optional<Bytes> direct_udp(uint16_t port, const Bytes& query) {
  return test::udp_exchange(port, query, 300ms);
}

std::optional<Bytes> direct_tcp(uint16_t port, const Bytes& query) { return test::tcp_exchange(port, query, 2s); }

// dnsmasq on 127.0.0.1:port answering *.example.test with 192.0.2.7 and
// big.hosts.test with 60 addresses (an answer above 512 bytes); anything
// else is REFUSED (no upstream). Killed by pid when the test ends.
class Dnsmasq {
 public:
  Dnsmasq() : port_(free_port()) {
    // dnsmasq reads its hosts file after dropping to its own user.
    std::filesystem::permissions(dir_.path(), std::filesystem::perms(0755));
    std::ofstream hosts(dir_ / "hosts");
    for (int i = 1; i <= 60; ++i) hosts << "198.51.100." << i << " big.hosts.test\n";
    hosts.close();
    const std::vector<std::string> args = {
        kDnsmasq, "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=",
        "--address=/example.test/192.0.2.7", "--addn-hosts=" + dir_ / "hosts",
        "--bind-interfaces", "--listen-address=127.0.0.1", "-p", std::to_string(port_)};
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, kDnsmasq, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(rc == 0);
    const auto deadline = Clock::now() + 5s;
    while (!direct_udp(port_, make_query(1, "ready.example.test", 1))) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("dnsmasq exited at start");
      }
      REQUIRE(Clock::now() < deadline);
    }
  }
  ~Dnsmasq() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  uint16_t port() const { return port_; }

 private:
  testing::TempDir dir_;
  uint16_t port_;
  pid_t pid_ = -1;
};

struct Outcome {
  bool called = false;
  Bytes answer;
  Clock::duration elapsed{};
};

// Runs `io` until `done()` is true or `limit` passes.
template <typename Pred>
void run_until(boost::asio::io_context& io, Pred done, Clock::duration limit = 10s) {
  const auto deadline = Clock::now() + limit;
  while (!done() && Clock::now() < deadline) {
    if (io.stopped()) io.restart();
    io.run_one_for(10ms);
  }
}

Outcome forward_and_wait(boost::asio::io_context& io, dns::Upstream& upstream, const Bytes& query,
                         bool over_tcp) {
  Outcome out;
  const auto start = Clock::now();
  upstream.forward(query, over_tcp, [&](std::span<const uint8_t> answer) {
    out.called = true;
    out.answer.assign(answer.begin(), answer.end());
    out.elapsed = Clock::now() - start;
  });
  CHECK_FALSE(out.called);  // never inside forward
  run_until(io, [&] { return out.called; });
  REQUIRE(out.called);
  return out;
}

dns::Upstream::Options to(uint16_t port) {
  dns::Upstream::Options options;
  options.servers = {{kLoopback, port}};
  return options;
}

long ms(Clock::duration d) { return long(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()); }

bool have_dnsmasq() {
  if (std::filesystem::exists(kDnsmasq)) return true;
  WARN("dnsmasq missing (apt-get install dnsmasq-base): test not run");
  return false;
}

}  // namespace

TEST_CASE("an upstream answer is relayed byte for byte, with the client's id") {
  if (!have_dnsmasq()) return;
  Dnsmasq dnsmasq;
  boost::asio::io_context io;
  dns::Upstream upstream(io, to(dnsmasq.port()));
  CHECK(upstream.servers() == std::vector<std::string>{"127.0.0.1:" + std::to_string(dnsmasq.port())});

  for (bool tcp : {false, true}) {
    INFO((tcp ? "TCP" : "UDP"));
    const Bytes query = make_query(0xbeef, "a.example.test", 1);
    auto direct = tcp ? direct_tcp(dnsmasq.port(), query) : direct_udp(dnsmasq.port(), query);
    REQUIRE(direct);
    REQUIRE(rcode_of(*direct) == 0);
    REQUIRE(ancount_of(*direct) == 1);
    const Outcome out = forward_and_wait(io, upstream, query, tcp);
    CHECK(out.answer == *direct);
    CHECK(id_of(out.answer) == 0xbeef);
  }
}

TEST_CASE("REFUSED from upstream is relayed, not turned into a failure") {
  if (!have_dnsmasq()) return;
  Dnsmasq dnsmasq;
  boost::asio::io_context io;
  dns::Upstream upstream(io, to(dnsmasq.port()));
  const Bytes query = make_query(0x0102, "elsewhere.test", 1);
  auto direct = direct_udp(dnsmasq.port(), query);
  REQUIRE(direct);
  REQUIRE(rcode_of(*direct) == 5);
  const Outcome out = forward_and_wait(io, upstream, query, false);
  CHECK(out.answer == *direct);
}

TEST_CASE("an answer too large for c-ares' UDP buffer comes back as TC, and whole over TCP") {
  if (!have_dnsmasq()) return;
  Dnsmasq dnsmasq;
  boost::asio::io_context io;
  dns::Upstream upstream(io, to(dnsmasq.port()));
  const Bytes query = make_query(0x4242, "big.hosts.test", 1, 4096);
  auto direct = direct_udp(dnsmasq.port(), query);
  REQUIRE(direct);
  REQUIRE(direct->size() > 512);
  REQUIRE_FALSE(tc_of(*direct));

  const Outcome udp = forward_and_wait(io, upstream, query, false);
  CHECK(tc_of(udp.answer));
  CHECK(id_of(udp.answer) == 0x4242);
  CHECK(ancount_of(udp.answer) == 0);
  // The header and the question, nothing cut in the middle of a record.
  CHECK(udp.answer.size() == query.size() - 11);

  auto direct_over_tcp = direct_tcp(dnsmasq.port(), query);
  REQUIRE(direct_over_tcp);
  const Outcome tcp = forward_and_wait(io, upstream, query, true);
  // dnsmasq rotates the order of the addresses from one answer to the next:
  // compare the header and question, then the records as a set.
  REQUIRE(tcp.answer.size() == direct_over_tcp->size());
  CHECK(ancount_of(tcp.answer) == 60);
  const size_t records_at = query.size() - 11, record_size = 16;
  CHECK(Bytes(tcp.answer.begin(), tcp.answer.begin() + long(records_at)) ==
        Bytes(direct_over_tcp->begin(), direct_over_tcp->begin() + long(records_at)));
  auto records = [&](const Bytes& m) {
    std::vector<Bytes> out;
    for (size_t at = records_at; at + record_size <= records_at + 60 * record_size; at += record_size)
      out.emplace_back(m.begin() + long(at), m.begin() + long(at + record_size));
    std::sort(out.begin(), out.end());
    return out;
  };
  CHECK(records(tcp.answer) == records(*direct_over_tcp));
}

TEST_CASE("a closed port fails quickly") {
  uint16_t port;
  {
    Fd probe = silent_udp_server();
    port = bound_port(probe.get());
  }  // closed: nothing listens there now
  boost::asio::io_context io;
  auto options = to(port);
  options.timeout = 2000ms;
  dns::Upstream upstream(io, options);
  for (bool tcp : {false, true}) {
    INFO((tcp ? "TCP" : "UDP"));
    const Outcome out = forward_and_wait(io, upstream, make_query(7, "a.example.test", 1), tcp);
    CHECK(out.answer.empty());
    CHECK(ms(out.elapsed) < 500);
  }
}

TEST_CASE("a server that never answers fails after timeout * tries, not much sooner or later") {
  Fd silent = silent_udp_server();
  boost::asio::io_context io;
  auto options = to(bound_port(silent.get()));
  options.timeout = 300ms;
  options.tries = 2;
  dns::Upstream upstream(io, options);
  const Outcome out = forward_and_wait(io, upstream, make_query(9, "a.example.test", 1), false);
  CHECK(out.answer.empty());
  CHECK(ms(out.elapsed) >= 590);
  CHECK(ms(out.elapsed) < 600 + 300);
}

TEST_CASE("queries beyond max_outstanding fail at once, the others still get their turn") {
  Fd silent = silent_udp_server();
  boost::asio::io_context io;
  auto options = to(bound_port(silent.get()));
  options.timeout = 200ms;
  options.tries = 1;
  options.max_outstanding = 3;
  dns::Upstream upstream(io, options);
  const auto start = Clock::now();
  std::vector<std::optional<Clock::duration>> finished(5);
  for (size_t i = 0; i < finished.size(); ++i) {
    upstream.forward(make_query(uint16_t(100 + i), "a.example.test", 1), false,
                     [&, i](std::span<const uint8_t> answer) {
                       CHECK(answer.empty());
                       finished[i] = Clock::now() - start;
                     });
  }
  CHECK(upstream.outstanding() == 3);
  run_until(io, [&] { return std::all_of(finished.begin(), finished.end(), [](auto& f) { return f.has_value(); }); });
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(finished[i]);
    CHECK(ms(*finished[i]) >= 190);
  }
  for (size_t i = 3; i < 5; ++i) {
    REQUIRE(finished[i]);
    CHECK(ms(*finished[i]) < 100);
  }
}

TEST_CASE("malformed queries fail without reaching upstream") {
  boost::asio::io_context io;
  dns::Upstream upstream(io, to(53));  // never contacted
  for (size_t size : {size_t(0), size_t(5), size_t(11), size_t(65536)}) {
    INFO(size);
    const Outcome out = forward_and_wait(io, upstream, Bytes(size, 0), false);
    CHECK(out.answer.empty());
    CHECK(upstream.outstanding() == 0);
  }
}

TEST_CASE("excluded nameservers are not used") {
  boost::asio::io_context io;
  auto options = to(53);
  options.exclude = {kLoopback};
  dns::Upstream upstream(io, options);
  CHECK(upstream.servers().empty());
  const Outcome out = forward_and_wait(io, upstream, make_query(3, "a.example.test", 1), false);
  CHECK(out.answer.empty());
  CHECK(ms(out.elapsed) < 100);
}

TEST_CASE("without servers given, the nameservers come from resolv.conf") {
  boost::asio::io_context io;
  dns::Upstream upstream(io, {});
  for (const auto& server : upstream.servers()) CHECK(server.find(':') != std::string::npos);
}

TEST_CASE("many queries at once all come back, each with its own id") {
  if (!have_dnsmasq()) return;
  Dnsmasq dnsmasq;
  boost::asio::io_context io;
  dns::Upstream upstream(io, to(dnsmasq.port()));
  constexpr size_t kUdp = 400, kTcp = 100;
  size_t done = 0, answered = 0;
  for (size_t i = 0; i < kUdp + kTcp; ++i) {
    const uint16_t id = uint16_t(1000 + i);
    upstream.forward(make_query(id, "n" + std::to_string(i) + ".example.test", 1), i >= kUdp,
                     [&, id](std::span<const uint8_t> answer) {
                       ++done;
                       if (answer.size() > 12 && id_of(Bytes(answer.begin(), answer.end())) == id &&
                           (answer[3] & 0x0f) == 0)
                         ++answered;
                     });
  }
  run_until(io, [&] { return done == kUdp + kTcp; }, 20s);
  CHECK(done == kUdp + kTcp);
  CHECK(answered == kUdp + kTcp);
  CHECK(upstream.outstanding() == 0);
}

TEST_CASE("destroying the upstream with queries in flight calls nobody") {
  Fd silent = silent_udp_server();
  boost::asio::io_context io;
  int calls = 0;
  {
    auto options = to(bound_port(silent.get()));
    options.timeout = 50ms;
    options.max_outstanding = 4;
    dns::Upstream upstream(io, options);
    for (int i = 0; i < 6; ++i)  // 4 in flight, 2 rejected with a failure posted
      upstream.forward(make_query(uint16_t(i), "a.example.test", 1), false,
                       [&](std::span<const uint8_t>) { ++calls; });
    io.run_for(5ms);
    calls = 0;  // the posted rejections may have run; what matters is what comes after
    upstream.forward(make_query(99, "a.example.test", 1), false, [&](std::span<const uint8_t>) { ++calls; });
  }
  io.restart();
  io.run_for(300ms);
  CHECK(calls == 0);
}

// The wiring the daemon uses: the Upstream lives on the server's io_context,
// made before the server's thread starts and owned by the forwarder, so it
// goes after that thread has stopped and before the io_context does.
TEST_CASE("swarmnet's DNS server relays outside names through the upstream, SERVFAIL when it is silent") {
  if (!have_dnsmasq()) return;
  Dnsmasq dnsmasq;
  Fd silent = silent_udp_server();
  dns::NameTable table;
  table.upsert_network({"net-1", "front", kLoopback});  // the host asking its "gateway" 127.0.0.1

  auto serve = [&](dns::Server& server, dns::Upstream::Options options) {
    server.set_forwarder([upstream = std::make_shared<dns::Upstream>(server.io(), options)](
                             std::span<const uint8_t> query, bool over_tcp, dns::ForwardDone done) {
      upstream->forward(query, over_tcp, std::move(done));
    });
    server.start();
    server.add_listener(kLoopback);
  };

  {
    const uint16_t port = free_port();
    dns::Server server(table, {.port = port});
    serve(server, to(dnsmasq.port()));
    const Bytes query = make_query(0x7777, "outside.example.test", 1);
    auto direct = direct_udp(dnsmasq.port(), query);
    REQUIRE(direct);
    CHECK(direct_udp(port, query) == direct);
    auto direct_over_tcp = direct_tcp(dnsmasq.port(), query);
    REQUIRE(direct_over_tcp);
    CHECK(direct_tcp(port, query) == direct_over_tcp);
    CHECK(server.stats().forwarded == 2);
  }
  {
    const uint16_t port = free_port();
    dns::Server server(table, {.port = port});
    auto options = to(bound_port(silent.get()));
    options.timeout = 100ms;
    options.tries = 1;
    serve(server, options);
    const auto start = Clock::now();
    auto answer = direct_udp(port, make_query(0x0808, "outside.example.test", 1));
    REQUIRE(answer);
    CHECK(id_of(*answer) == 0x0808);
    CHECK(rcode_of(*answer) == 2);  // SERVFAIL
    CHECK(ms(Clock::now() - start) < 300);
  }
}
