// Gossip on a thread of its own (ClusterOptions::gossip_thread): two daemons
// on loopback, each with its daemon thread, a real gossip node and a fake
// kernel. A kernel transaction that takes seconds on one daemon's thread
// (the fake sleeps, as a large nft transaction or a slow fdatasync can)
// must not delay its gossip: the other node never suspects it. The control
// runs gossip on the daemon's thread, as before it had one, and the other
// node does suspect it. Also: a node that joins learns the networks made
// before it joined by the join's push/pull (read from PushPullState on the
// gossip thread), before its join returns.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include "common/api.hpp"
#include "daemon/cluster.hpp"
#include "daemon/controller.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using namespace std::chrono_literals;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {

// The firewall sync (run on every network change) takes `stall` while armed.
class SlowDataplane : public FakeDataplane {
 public:
  void sync_firewall(const std::vector<daemon::NetworkRecord>& networks) override {
    if (armed.exchange(false)) {
      stalling = true;
      std::this_thread::sleep_for(stall);
      stalling = false;
      ++stalls;
    }
    FakeDataplane::sync_firewall(networks);
  }
  std::chrono::milliseconds stall{2000};
  std::atomic<bool> armed{false}, stalling{false};
  std::atomic<int> stalls{0};
};

// A port free for both UDP and TCP on 127.0.0.1 (gossip takes both).
uint16_t free_port() {
  boost::asio::io_context io;
  for (;;) {
    boost::asio::ip::udp::socket u(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    const uint16_t port = u.local_endpoint().port();
    boost::system::error_code ec;
    boost::asio::ip::tcp::acceptor t(io);
    t.open(boost::asio::ip::tcp::v4());
    t.bind({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) return port;
  }
}

gossip::Config fast_gossip() {
  gossip::Config c;
  c.probe_interval = 100ms;
  c.probe_timeout = 40ms;
  c.gossip_interval = 20ms;
  c.push_pull_interval = 30s;  // the join's push/pull only
  c.tick_interval = 5ms;
  return c;
}

// One daemon: its state, its controller over a fake kernel, its cluster, and
// a thread of its own that runs its io_context (the daemon's thread).
struct Host {
  Host(const std::string& name, bool gossip_thread)
      : store(dir.path() + "/state"), controller(store, dataplane, name) {
    daemon::ClusterOptions options;
    options.gossip_port = free_port();
    options.gossip = fast_gossip();
    options.gossip_thread = gossip_thread;
    cluster = std::make_unique<daemon::Cluster>(io, store, controller, dir.path() + "/state", name, options);
    thread = std::thread([this] { io.run(); });
  }
  ~Host() {
    // The daemon's thread first, as swarmnetd stops: whatever it still had
    // queued for the cluster is dropped, never run on a cluster that is gone.
    work.reset();
    io.stop();
    thread.join();
    cluster.reset();
  }
  // Runs f on the daemon's thread and waits for it.
  template <class F>
  auto on(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io, [&task] { task(); });
    return result.get();
  }
  // This node's status as `other`'s gossip sees it ("" if unknown there).
  std::string status_seen_by(Host& other) {
    for (const auto& m : other.cluster->gossip_node()->members()) {
      if (m.id == store.node_id()) return std::string(gossip::to_string(m.status));
    }
    return "";
  }

  TempDir dir;
  SlowDataplane dataplane;
  daemon::Store store;
  daemon::Controller controller;
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::unique_ptr<daemon::Cluster> cluster;
  std::thread thread;
};

api::NetworkCreate network(const std::string& name, const std::string& subnet) {
  api::NetworkCreate n;
  n.name = name;
  n.subnet = Ipv4Prefix::parse(subnet);
  return n;
}

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return f();
}

// A and B in one cluster (B joined through A), each seeing the other alive.
void form_cluster(Host& a, Host& b) {
  const Ipv4Address loopback = Ipv4Address::parse("127.0.0.1");
  const std::string token = a.on([&] { return a.cluster->init(loopback, Ipv4Prefix::parse("10.255.0.0/16")).token; });
  a.on([&] { a.controller.create_network(network("before-join", "10.1.0.0/24")); });
  std::promise<std::optional<std::string>> joined;
  // What B knows when its join returns (on B's thread, as the API reply would).
  std::promise<bool> knew_network;
  b.on([&] {
    b.cluster->join(token, loopback, [&](std::optional<std::string> error) {
      knew_network.set_value(b.store.find_network_by_name("before-join") != nullptr);
      joined.set_value(error);
    });
  });
  const auto error = joined.get_future().get();
  INFO(error.value_or(""));
  REQUIRE_FALSE(error);
  CHECK(knew_network.get_future().get());
  REQUIRE(eventually([&] { return b.status_seen_by(a) == "alive" && a.status_seen_by(b) == "alive"; }));
}

// Makes B's daemon thread stall in a kernel transaction (a network A made
// reaches B by gossip; B's firewall sync takes dataplane.stall), and returns
// every status A's gossip gave B meanwhile.
std::set<std::string> statuses_while_b_stalls(Host& a, Host& b) {
  b.dataplane.armed = true;
  a.on([&] { a.controller.create_network(network("slow", "10.2.0.0/24")); });
  REQUIRE(eventually([&] { return b.dataplane.stalling.load(); }, 5s));
  std::set<std::string> seen;
  while (b.dataplane.stalling) {
    seen.insert(b.status_seen_by(a));
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(b.dataplane.stalls == 1);
  // B's thread is free again: the network is there.
  CHECK(eventually([&] { return b.on([&] { return b.store.find_network_by_name("slow") != nullptr; }); }));
  return seen;
}

}  // namespace

TEST_CASE("gossip on its own thread: a slow kernel transaction on the daemon's thread delays no probe") {
  Host a("host-a", true), b("host-b", true);
  form_cluster(a, b);
  const auto seen = statuses_while_b_stalls(a, b);
  INFO("A's view of B while B's daemon thread stalled 2 s");
  CHECK(seen == std::set<std::string>{"alive"});
  // Membership still reaches B's daemon thread, in order, after the stall.
  CHECK(b.on([&] { return b.cluster->is_alive(a.store.node_id()); }));
}

TEST_CASE("control: gossip on the daemon's thread, the same stall gets the node suspected") {
  Host a("host-a", false), b("host-b", false);
  form_cluster(a, b);
  const auto seen = statuses_while_b_stalls(a, b);
  INFO("A's view of B while B's daemon thread stalled 2 s");
  CHECK((seen.count("suspect") || seen.count("dead")));
}
