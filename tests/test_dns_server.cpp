// The DNS server on loopback: UDP and TCP answers, truncation and the TCP
// retry, malformed packets, forwarding of outside names and its failure,
// the TCP accept loop out of descriptors, and the per-source limit.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <numeric>
#include <random>
#include <thread>

#include "common/error.hpp"
#include "dns/server.hpp"
#include "support/dns_packets.hpp"
#include "support/log_capture.hpp"
#include "support/loopback_dns.hpp"

using namespace swarmnet;
using namespace swarmnet::dns;
using swarmnet::test::make_query;
using swarmnet::test::parse_answer;

namespace {

std::vector<uint8_t> udp_ask(uint16_t port, const std::vector<uint8_t>& query, int timeout_ms = 2000) {
  return test::udp_exchange(port, query, std::chrono::milliseconds(timeout_ms)).value_or(test::Bytes{});
}

std::vector<uint8_t> tcp_ask(uint16_t port, const std::vector<uint8_t>& query) {
  return test::tcp_exchange(port, query, std::chrono::seconds(2)).value_or(test::Bytes{});
}

// A server on 127.0.0.1 at a free high port; the network "lo-net" has
// 127.0.0.1 as its gateway, so loopback queries are the host's own.
struct Running {
  NameTable table{2};
  uint16_t port = 0;
  std::unique_ptr<Server> server;
  explicit Running(unsigned queries_per_second = 0) {
    table.upsert_network({"n1", "lo-net", Ipv4Address::parse("127.0.0.1")});
    std::mt19937 rng(std::random_device{}());
    for (int attempt = 0; attempt < 20 && !server; ++attempt) {
      port = static_cast<uint16_t>(20000 + rng() % 30000);
      auto s = std::make_unique<Server>(table, ServerOptions{.port = port, .queries_per_second = queries_per_second});
      try {
        s->add_listener(Ipv4Address::parse("127.0.0.1"));
        server = std::move(s);
      } catch (const Error&) {
      }
    }
    REQUIRE(server);
    server->start();
  }
  void add(const std::string& name, const std::string& address, const std::string& key) {
    table.upsert_endpoint({key, "n1", key, name, {}, Ipv4Address::parse(address), false, "", true});
  }
};

}  // namespace

TEST_CASE("UDP and TCP queries are answered from the table") {
  Running r;
  r.add("web", "10.1.0.5", "c1");
  auto a = parse_answer(udp_ask(r.port, make_query("web", type::A)));
  REQUIRE(a.ok);
  REQUIRE(a.answers.size() == 1);
  CHECK(a.answers[0].data == "10.1.0.5");
  auto t = parse_answer(tcp_ask(r.port, make_query("web.lo-net", type::A)));
  REQUIRE(t.ok);
  REQUIRE(t.answers.size() == 1);
  CHECK(t.answers[0].data == "10.1.0.5");
  CHECK(r.server->stats().tcp_queries == 1);
}

TEST_CASE("an answer too big for UDP comes with TC, and whole over TCP") {
  Running r;
  for (int i = 0; i < 100; ++i) r.add("big", "10.1.0." + std::to_string(i + 1), "c" + std::to_string(i));
  auto a = parse_answer(udp_ask(r.port, make_query("big", type::A)));
  REQUIRE(a.ok);
  CHECK(a.tc());
  CHECK(a.answers.size() < 100);
  auto e = parse_answer(udp_ask(r.port, make_query("big", type::A, {.edns = true, .edns_size = 4096})));
  CHECK(e.tc());
  CHECK(e.answers.size() > a.answers.size());  // EDNS: up to 1232 bytes
  auto t = parse_answer(tcp_ask(r.port, make_query("big", type::A)));
  REQUIRE(t.ok);
  CHECK_FALSE(t.tc());
  CHECK(t.answers.size() == 100);
}

TEST_CASE("malformed packets get FORMERR or nothing, and the server keeps serving") {
  Running r;
  r.add("web", "10.1.0.5", "c1");
  std::vector<uint8_t> garbage = {0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3F, 'x'};
  auto e = parse_answer(udp_ask(r.port, garbage));
  CHECK(e.id == 0xBEEF);
  CHECK(e.rcode == 1);
  CHECK(udp_ask(r.port, {1, 2, 3}, 300).empty());  // no header: dropped
  auto a = parse_answer(udp_ask(r.port, make_query("web", type::A)));
  REQUIRE(a.answers.size() == 1);
  CHECK(r.server->stats().malformed == 2);
}

TEST_CASE("outside names: forwarded and relayed unchanged; SERVFAIL when the upstream fails or is absent") {
  Running r;
  auto none = parse_answer(udp_ask(r.port, make_query("example.org", type::A)));
  CHECK(none.rcode == 2);  // no forwarder

  std::vector<uint8_t> canned;
  r.server->set_forwarder([&](std::span<const uint8_t> query, bool, ForwardDone done) {
    if (query.size() > 20 && query[13] == 'f') {  // "fail..."
      done({});
      return;
    }
    // An "upstream" answer: the query turned into a response, plus a byte we can recognise.
    canned.assign(query.begin(), query.end());
    canned[2] |= 0x80;
    done(canned);
  });
  auto q = make_query("example.org", type::A);
  auto relayed = udp_ask(r.port, q);
  REQUIRE(relayed.size() == q.size());
  CHECK(relayed == canned);
  auto failed = parse_answer(udp_ask(r.port, make_query("fail.example.org", type::A)));
  CHECK(failed.rcode == 2);
  CHECK(failed.qdcount == 1);
  auto over_tcp = tcp_ask(r.port, q);
  CHECK(over_tcp == canned);
  CHECK(r.server->stats().forwarded == 3);
}

TEST_CASE("answers are counted by the RCODE the client got, over UDP, TCP and from upstream") {
  Running r;
  r.add("web", "10.1.0.5", "c1");
  r.server->set_forwarder([](std::span<const uint8_t>, bool, ForwardDone done) { done({}); });
  CHECK(parse_answer(udp_ask(r.port, make_query("web", type::A))).rcode == 0);
  CHECK(parse_answer(tcp_ask(r.port, make_query("web", type::A))).rcode == 0);
  CHECK(parse_answer(udp_ask(r.port, make_query("nothing.lo-net", type::A))).rcode == 3);
  CHECK(parse_answer(udp_ask(r.port, make_query("example.org", type::A))).rcode == 2);  // upstream failed
  CHECK(parse_answer(tcp_ask(r.port, make_query("example.org", type::A))).rcode == 2);
  const auto counts = r.server->stats().answers_by_rcode;
  CHECK(counts[0] == 2);  // NOERROR
  CHECK(counts[2] == 2);  // SERVFAIL
  CHECK(counts[3] == 1);  // NXDOMAIN
  CHECK(std::accumulate(counts.begin(), counts.end(), uint64_t{0}) == 5);
}

TEST_CASE("a second server on the same address and port is refused with a clear error") {
  Running r;
  Server other(r.table, ServerOptions{.port = r.port});
  CHECK_THROWS_WITH(other.add_listener(Ipv4Address::parse("127.0.0.1")),
                    Catch::Contains("cannot listen on 127.0.0.1:" + std::to_string(r.port)));
}

TEST_CASE("out of descriptors, the TCP accept loop backs off, then answers") {
  Running r;
  r.add("web", "10.1.0.5", "c1");
  // The client's socket exists before the descriptors run out.
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(client >= 0);
  int base = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(base >= 0);
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 256);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> filler;
  for (int fd; (fd = ::fcntl(base, F_DUPFD_CLOEXEC, 0)) >= 0;) filler.push_back(fd);
  REQUIRE(errno == EMFILE);
  auto cpu = [] {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  const double before = cpu();
  sockaddr_in to = test::loopback_addr(r.port);
  REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  // A query, length-prefixed, waiting in the socket until it is accepted.
  auto q = make_query("web", type::A);
  std::vector<uint8_t> framed = {uint8_t(q.size() >> 8), uint8_t(q.size())};
  framed.insert(framed.end(), q.begin(), q.end());
  REQUIRE(::send(client, framed.data(), framed.size(), MSG_NOSIGNAL) == ssize_t(framed.size()));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const double used = cpu() - before;
  for (int fd : filler) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  ::close(base);
  // A spinning loop takes the whole 1.5 s of one core.
  CHECK(used < 0.5);
  // Descriptors are back: the query that waited is answered.
  pollfd p{client, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 2000) == 1);
  uint8_t buf[512];
  ssize_t n = ::recv(client, buf, sizeof buf, 0);
  ::close(client);
  REQUIRE(n > 2);
  auto a = parse_answer(std::vector<uint8_t>(buf + 2, buf + n));
  REQUIRE(a.ok);
  REQUIRE(a.answers.size() == 1);
  CHECK(a.answers[0].data == "10.1.0.5");
}

namespace {

// `n` queries for `name` sent at once from `source` (an address of
// loopback), then whatever answers come within half a second after the last.
std::vector<test::Answer> burst(uint16_t port, const char* source, int n, const std::string& name) {
  test::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &from.sin_addr);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
  // Room for every answer, whenever this thread gets to read them (without
  // root the default, net.core.rmem_max, holds 256: bursts stay below).
  const int room = 4 << 20;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &room, sizeof room) != 0)
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &room, sizeof room);
  sockaddr_in to = test::loopback_addr(port);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  std::vector<test::Answer> answers;
  auto collect = [&](int timeout_ms) {
    pollfd p{fd.get(), POLLIN, 0};
    while (::poll(&p, 1, timeout_ms) == 1) {
      uint8_t buf[512];
      ssize_t len = ::recv(fd.get(), buf, sizeof buf, 0);
      if (len > 0) answers.push_back(parse_answer(std::vector<uint8_t>(buf, buf + len)));
    }
  };
  for (int i = 0; i < n; ++i) {
    auto q = make_query(name, type::A);
    q[0] = uint8_t(i >> 8);
    q[1] = uint8_t(i);
    REQUIRE(::send(fd.get(), q.data(), q.size(), 0) == ssize_t(q.size()));
    collect(0);  // the socket's queue stays short (256 answers fill its default size)
  }
  collect(500);
  return answers;
}

}  // namespace

TEST_CASE("past its limit a source gets REFUSED with its question, then nothing; other sources are answered") {
  // Control: without a limit, every query of the burst is answered.
  {
    Running r;
    r.add("web", "10.1.0.5", "c1");
    auto all = burst(r.port, "127.0.0.2", 250, "web");
    CHECK(all.size() == 250);
  }
  Running r(60);
  r.add("web", "10.1.0.5", "c1");
  testing::LogCapture log;
  auto answers = burst(r.port, "127.0.0.2", 250, "web");
  int noerror = 0, refused = 0;
  for (const auto& a : answers) {
    if (a.rcode == 0 && a.answers.size() == 1) ++noerror;
    // Its question echoed, or glibc would not take it as the answer.
    if (a.rcode == 5 && a.ok && a.qdcount == 1) ++refused;
  }
  // A second's worth (the burst takes some ms to send: a few tokens more).
  CHECK(noerror >= 60);
  CHECK(noerror <= 75);
  CHECK(refused >= 15);
  CHECK(refused <= 20);
  CHECK(answers.size() == size_t(noerror + refused));
  const ServerStats s = r.server->stats();
  CHECK(s.over_limit_refused == uint64_t(refused));
  CHECK(s.over_limit_dropped == 250 - answers.size());
  // Another container at the same moment is answered.
  auto other = parse_answer(test::udp_exchange(r.port, make_query("web", type::A), std::chrono::seconds(2)).value_or(test::Bytes{}));
  CHECK(other.rcode == 0);
  CHECK(other.answers.size() == 1);
  // One log line for the whole burst, not one a query.
  CHECK(log.matching({"over the per-container limit of 60 queries a second", "127.0.0.2"}).size() == 1);
  // Over TCP the excess is refused, never left unanswered (the client would
  // wait on its connection): 100 queries one after the other on one connection.
  test::Fd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.2", &from.sin_addr);
  REQUIRE(::bind(tcp.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
  sockaddr_in to = test::loopback_addr(r.port);
  REQUIRE(::connect(tcp.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  int tcp_refused = 0, tcp_answers = 0;
  for (int i = 0; i < 100; ++i) {
    auto q = make_query("web", type::A);
    std::vector<uint8_t> framed = {uint8_t(q.size() >> 8), uint8_t(q.size())};
    framed.insert(framed.end(), q.begin(), q.end());
    REQUIRE(::send(tcp.get(), framed.data(), framed.size(), MSG_NOSIGNAL) == ssize_t(framed.size()));
    pollfd p{tcp.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) break;
    uint8_t buf[512];
    ssize_t n = ::recv(tcp.get(), buf, sizeof buf, 0);
    if (n <= 2) break;
    auto a = parse_answer(std::vector<uint8_t>(buf + 2, buf + n));
    ++tcp_answers;
    tcp_refused += a.rcode == 5;
  }
  CHECK(tcp_answers == 100);
  CHECK(tcp_refused >= 30);
}
