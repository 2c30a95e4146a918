// swarmnetd's metrics: the address counts read from the tables, the labels
// of API requests, the upstream DNS wrapper, and the listener on loopback.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <boost/asio/io_context.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "daemon/api_routes.hpp"
#include "daemon/controller.hpp"
#include "daemon/daemon_metrics.hpp"
#include "daemon/events.hpp"
#include "daemon/metrics_http.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "support/daemon_routes.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {

api::NetworkCreate net(const std::string& name, const std::string& subnet) {
  api::NetworkCreate n;
  n.name = name;
  n.subnet = Ipv4Prefix::parse(subnet);
  return n;
}

api::EndpointCreate ep(const std::string& container) {
  api::EndpointCreate e;
  e.container_id = container;
  e.ifname = "eth0";
  e.netns = "/var/run/netns/" + container;
  return e;
}

// One HTTP/1.0 exchange with 127.0.0.1:port; the whole answer.
std::string http(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

}  // namespace

TEST_CASE("address usage per network: used, free, blocks and the blocks this node owns") {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "test");
  // A /24 is cut into 32 /29 blocks; the creator owns every block nobody was given.
  controller.create_network(net("front", "10.1.0.0/24"));
  controller.create_endpoint("front", ep("c1"));
  controller.create_endpoint("front", ep("c2"));
  auto u = daemon::address_usage(store).at("front");
  CHECK(u.used == 2);
  CHECK(u.free == 256 - 3 - 2);
  CHECK(u.blocks == 32);
  CHECK(u.blocks_owned == 32);

  // A block given to another node is no longer ours; one given back to us still is.
  const daemon::NetworkRecord& n = *store.find_network_by_name("front");
  store.put(daemon::BlockRecord{n.id, Ipv4Prefix::parse("10.1.0.248/29"), "other-node"});
  store.put(daemon::BlockRecord{n.id, Ipv4Prefix::parse("10.1.0.0/29"), store.node_id()});
  u = daemon::address_usage(store).at("front");
  CHECK(u.blocks_owned == 31);

  // Released addresses are free again; a network of another node owns nothing here.
  controller.delete_endpoint("front", "c2", "eth0");
  CHECK(daemon::address_usage(store).at("front").used == 1);
  daemon::NetworkRecord theirs = n;
  theirs.id = "0123456789abcdef0123456789abcdef";
  theirs.name = "theirs";
  theirs.subnet = Ipv4Prefix::parse("10.2.0.0/24");
  theirs.created_by = "other-node";
  store.put(theirs);
  u = daemon::address_usage(store).at("theirs");
  CHECK(u.used == 0);
  CHECK(u.free == 253);
  CHECK(u.blocks_owned == 0);
}

// The operation label values README's Metrics section lists: the words in
// backquotes from "`operation` is" to the end of that sentence's list.
std::set<std::string> documented_operations() {
  std::ifstream in(std::string(SWARMNET_FIXTURES_DIR) + "/../../README.md");
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  const size_t from = readme.find("`operation` is named by");
  REQUIRE(from != std::string::npos);
  const size_t to = readme.find("Latencies are", from);
  REQUIRE(to != std::string::npos);
  const std::string list = readme.substr(from, to - from);
  static const std::regex word("`([a-z_]+)`");
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(list.begin(), list.end(), word); it != std::sregex_iterator(); ++it) {
    out.insert((*it)[1]);
  }
  out.erase("operation");
  return out;
}

TEST_CASE("API requests are labelled by program and operation from a fixed set") {
  using daemon::api_client;
  testing::DaemonRoutes table;
  // The operation is the route's (daemon/api_routes.hpp).
  auto api_operation = [&table](const std::string& method, const std::string& target) {
    return std::string(table.router.operation_of(method, target));
  };
  CHECK(api_client("swarmnet") == "cni");
  CHECK(api_client("swarmnet-ipam") == "cni-ipam");
  CHECK(api_client("swarmnet-docker") == "docker");
  CHECK(api_client("swarmnetctl") == "ctl");
  CHECK(api_client("") == "other");
  CHECK(api_client("curl/7.88") == "other");

  CHECK(api_operation("POST", "/v1/networks/front/endpoints") == "endpoint_create");
  CHECK(api_operation("DELETE", "/v1/networks/front/endpoints/abc/eth0") == "endpoint_delete");
  CHECK(api_operation("GET", "/v1/networks/front/endpoints/abc/eth0") == "endpoint_get");
  CHECK(api_operation("PATCH", "/v1/networks/front/endpoints/abc/eth0") == "endpoint_update");
  CHECK(api_operation("POST", "/v1/networks/front/gc") == "gc");
  CHECK(api_operation("GET", "/v1/status") == "status");
  CHECK(api_operation("POST", "/v1/networks") == "network_create");
  CHECK(api_operation("DELETE", "/v1/networks/a%2Fb") == "network_delete");
  CHECK(api_operation("GET", "/v1/networks?x=1") == "network_list");
  // Whatever a client makes up stays in one label value.
  CHECK(api_operation("GET", "/v1/made/up/path") == "other");
  CHECK(api_operation("BREW", "/v1/networks/x/endpoints/a/b") == "other");
  CHECK(api_operation("GET", "/") == "other");
  CHECK(api_operation("POST", "/v1/services/web/attach") == "service_attach");
  CHECK(api_operation("PATCH", "/v1/services/web") == "service");
  CHECK(api_operation("DELETE", "/v1/nodes/n2") == "cluster");
  CHECK(api_operation("GET", "/v1/networks/front/verbose") == "other");
  // A path that no route takes is "other", whatever its prefix.
  CHECK(api_operation("GET", "/v1/services/web/made/up") == "other");

  // Every route's operation is one of the values README's Metrics section
  // lists, and every value listed but "other" names some route.
  const std::set<std::string> documented = documented_operations();
  CHECK(documented.count("endpoint_create") == 1);  // the list was found
  std::set<std::string> used{"other"};
  for (const auto& route : table.router.routes()) {
    INFO(route.method << " " << route.pattern << ": " << route.operation);
    CHECK(documented.count(route.operation) == 1);
    used.insert(route.operation);
  }
  CHECK(used == documented);
}

TEST_CASE("upstream DNS queries are counted by outcome and timed") {
  daemon::DaemonMetrics m;
  std::vector<dns::ForwardDone> pending;
  auto forward = m.time_upstream(
      [&](std::span<const uint8_t>, bool, dns::ForwardDone done) { pending.push_back(std::move(done)); });
  int answered = 0;
  const std::vector<uint8_t> query = {1, 2, 3}, answer = {4, 5, 6, 7};
  forward(query, false, [&](std::span<const uint8_t> a) { answered += a.size() == 4; });
  forward(query, true, [&](std::span<const uint8_t> a) { answered += a.empty() ? 10 : 0; });
  REQUIRE(pending.size() == 2);
  pending[0](answer);
  pending[1]({});
  CHECK(answered == 11);  // each caller got its own outcome, unchanged
  const std::string text = m.registry().render();
  CHECK(text.find("swarmnet_dns_upstream_queries_total{result=\"answered\"} 1\n") != std::string::npos);
  CHECK(text.find("swarmnet_dns_upstream_queries_total{result=\"failed\"} 1\n") != std::string::npos);
  CHECK(text.find("swarmnet_dns_upstream_duration_seconds_count 2\n") != std::string::npos);
}

TEST_CASE("the metrics address (--metrics-addr): IP:PORT or [IPv6]:PORT, anything else a clear error") {
  CHECK(daemon::parse_metrics_address("127.0.0.1:9476").port() == 9476);
  CHECK(daemon::parse_metrics_address("0.0.0.0:1").address().to_string() == "0.0.0.0");
  CHECK(daemon::parse_metrics_address("[::1]:9476").address().is_v6());
  for (const char* bad : {"9476", "localhost:9476", "127.0.0.1:0", "127.0.0.1:70000", "::1:9476",
                          "127.0.0.1:", "[::1]", "1.2.3:80"}) {
    INFO(bad);
    CHECK_THROWS_AS(daemon::parse_metrics_address(bad), Error);
  }
}

TEST_CASE("the listener answers GET /metrics in the text format, and nothing else") {
  metrics::Registry registry;
  registry.counter("swarmnet_test_total", "A test counter.").with({}).inc(7);
  boost::asio::io_context io;
  // Port 0: the kernel picks one.
  daemon::MetricsServer server(io, {boost::asio::ip::make_address("127.0.0.1"), 0}, registry);
  const uint16_t port = server.local_endpoint().port();
  REQUIRE(port != 0);
  std::thread t([&] { io.run(); });

  const std::string ok = http(port, "GET /metrics HTTP/1.0\r\n\r\n");
  CHECK(ok.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  CHECK(ok.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
  CHECK(ok.find("\r\n\r\n# HELP swarmnet_test_total A test counter.\n") != std::string::npos);
  CHECK(ok.find("swarmnet_test_total 7\n") != std::string::npos);
  CHECK(http(port, "GET /other HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 404", 0) == 0);
  CHECK(http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").rfind("HTTP/1.0 405", 0) == 0);
  const std::string head = http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  CHECK(head.rfind("HTTP/1.0 200", 0) == 0);
  CHECK(head.find("# HELP") == std::string::npos);
  // Garbage costs the sender its connection, not the listener.
  CHECK(http(port, "\x01\x02 nonsense\r\n\r\n").find("200 OK") == std::string::npos);
  CHECK(http(port, "GET /metrics HTTP/1.0\r\n\r\n").find("swarmnet_test_total 7\n") != std::string::npos);

  boost::asio::post(io, [&] {
    server.close();
    io.stop();
  });
  t.join();
}
