// Health checks end to end without root: a task whose port stops answering
// turns unhealthy and leaves the balancer's backends (a fake balancer), and
// comes back when the port answers again. The task's address is loopback,
// where the check's TCP connect really goes.
#include <catch2/catch.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <optional>

#include "daemon/controller.hpp"
#include "daemon/health.hpp"
#include "daemon/load_balancing.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
namespace asio = boost::asio;

namespace {

class FakeBalancer : public lb::Balancer {
 public:
  std::string_view name() const override { return "fake"; }
  void upsert(const lb::VirtualIp& vip) override { vips[vip.key] = vip; }
  void remove(const std::string& key) override { vips.erase(key); }
  void sync(const std::vector<lb::VirtualIp>& all) override {
    vips.clear();
    for (const auto& v : all) vips[v.key] = v;
  }
  std::vector<lb::VirtualIp> read_kernel_state() override { return {}; }
  void clear() override { vips.clear(); }
  std::vector<Ipv4Address> backends() const {
    return vips.empty() ? std::vector<Ipv4Address>{} : vips.begin()->second.backends;
  }
  std::map<std::string, lb::VirtualIp> vips;
};

// Runs the io_context until `done` holds or `limit` passes; whether it held.
template <class F>
bool run_until(asio::io_context& io, F done, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(50));
  }
  return true;
}

// One host: its store, a network "front" and the services API.
struct Host {
  Host() : store(dir.path()), controller(store, dataplane, "host1"), services(store, controller) {
    api::NetworkCreate front;
    front.name = "front";
    front.subnet = Ipv4Prefix::parse("10.1.0.0/24");
    network_id = controller.create_network(front).id;
  }
  // A task of this host at a loopback address, where a check connects.
  daemon::EndpointRecord local_task(const std::string& service, bool healthy = true) {
    daemon::EndpointRecord task;
    task.id = "ep-w1";
    task.network_id = network_id;
    task.node = store.node_id();
    task.container_id = "w1";
    task.ifname = "eth0";
    task.ip = Ipv4Address::parse("127.0.0.1");
    task.service = service;
    task.healthy = healthy;
    store.put(task);
    return task;
  }
  std::string task_key() const { return daemon::endpoint_key(network_id, store.node_id(), "w1", "eth0"); }

  asio::io_context io;
  testing::TempDir dir;
  testing::FakeDataplane dataplane;
  daemon::Store store;
  daemon::Controller controller;
  daemon::Services services;
  std::string network_id;
};

}  // namespace

TEST_CASE("health: a task whose port stops answering leaves the VIP, and comes back", "[health][lb]") {
  Host h;
  auto& store = h.store;
  asio::ip::tcp::acceptor listener(h.io, {asio::ip::make_address_v4("127.0.0.1"), 0});
  const unsigned port = listener.local_endpoint().port();
  api::ServiceCreate web;
  web.name = "web";
  web.networks = {"front"};
  web.health = api::HealthCheck{"tcp", static_cast<uint16_t>(port), "", 1, 1};
  h.services.create(web);
  FakeBalancer balancer;
  daemon::LoadBalancing lb(store, h.controller, balancer,
                           [](const std::string&, const std::optional<daemon::LoadBalancing::NodeAddress>&) {});

  const daemon::EndpointRecord task = h.local_task("web");
  const std::string key = h.task_key();
  const auto healthy = [&] { return store.find_endpoint(key)->healthy; };
  const auto serving = [&] { return balancer.backends() == std::vector<Ipv4Address>{task.ip}; };
  REQUIRE(serving());

  daemon::HealthChecker checker(h.io, store);
  checker.start();
  // Control: while the port answers, the task stays in (two intervals).
  CHECK_FALSE(run_until(h.io, [&] { return !healthy(); }, std::chrono::milliseconds(2500)));
  CHECK(serving());

  listener.close();  // the task's service stops answering
  REQUIRE(run_until(h.io, [&] { return !healthy(); }, std::chrono::seconds(5)));
  CHECK(balancer.backends().empty());

  listener.open(asio::ip::tcp::v4());
  listener.set_option(asio::socket_base::reuse_address(true));
  listener.bind({asio::ip::make_address_v4("127.0.0.1"), static_cast<uint16_t>(port)});
  listener.listen();
  REQUIRE(run_until(h.io, healthy, std::chrono::seconds(5)));
  CHECK(serving());
}

TEST_CASE("health: a task left unhealthy by a check that is gone is healthy again at the first tick", "[health]") {
  // The daemon restarted after the task's checked service was removed and
  // made again without a check: only the first tick looks at every local
  // task, so that one must find it.
  Host h;
  api::ServiceCreate web;
  web.name = "web";
  web.networks = {"front"};
  h.services.create(web);
  h.local_task("web", false);
  const std::string key = h.task_key();
  REQUIRE_FALSE(h.store.find_endpoint(key)->healthy);

  daemon::HealthChecker checker(h.io, h.store);
  checker.start();
  REQUIRE(run_until(h.io, [&] { return h.store.find_endpoint(key)->healthy; }, std::chrono::seconds(2)));
}
