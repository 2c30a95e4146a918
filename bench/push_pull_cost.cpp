// push_pull_cost: what a gossip push/pull costs this node, in-process (no
// sockets): a store with N endpoints (ids, names and paths of real lengths),
// then R push/pull messages put together from it (daemon/push_pull_state:
// read from the store itself, a few hundred entries at a time under its
// lock), timed; then the same while another thread writes endpoints as the
// daemon's thread does, with the longest wait of one write (what a change
// can lose to a push/pull) beside the writes' own time.
//
// Prints per message: ms, MB, microseconds an entry; the writes' p50/p99/max
// with and without the reader; the load average. The state directory is
// under TMPDIR (a tmpfs makes the fill fast; the writes are not synced).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/load_average.hpp"
#include "daemon/push_pull_state.hpp"
#include "daemon/store.hpp"

using namespace swarmnet;
using Clock = std::chrono::steady_clock;

namespace {

using swarmnet::bench::load_average;

std::string hex_id(std::mt19937_64& rng, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s(n, '0');
  for (auto& c : s) c = digits[rng() & 15];
  return s;
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

daemon::EndpointRecord endpoint(const daemon::Store& store, const std::string& network, int i, std::mt19937_64& rng) {
  daemon::EndpointRecord e;
  e.id = hex_id(rng, 16);
  e.network_id = network;
  e.node = store.node_id();
  e.container_id = hex_id(rng, 64);
  e.ifname = "eth0";
  e.netns = "/var/run/netns/cni-" + hex_id(rng, 36);
  e.ip = Ipv4Address(Ipv4Address::parse("10.128.0.2").value() + static_cast<uint32_t>(i));
  e.host_ifname = "swv" + e.id.substr(0, 12);
  e.name = "web." + std::to_string(i % 50 + 1) + "." + hex_id(rng, 25);
  e.aliases = {"web"};
  e.service = "web";
  e.owner = "cni";
  e.cni_config = "swarmnet";
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The cost of a gossip push/pull message: put together from the store, and what it costs the writes"};
  int count = 20000;
  int rounds = 10;
  int writes = 2000;
  app.add_option("--endpoints", count, "endpoints in the store")->check(CLI::Range(1, 1000000));
  app.add_option("--rounds", rounds, "messages put together")->check(CLI::Range(1, 1000));
  app.add_option("--writes", writes, "endpoint writes timed, without and then with a push/pull running beside them")
      ->check(CLI::Range(10, 1000000));
  CLI11_PARSE(app, argc, argv);

  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/push_pull_cost." + std::to_string(::getpid());
  {
    std::printf("push/pull cost: %d endpoints; load average %s\n", count, load_average().c_str());
    daemon::Store store(dir);
    daemon::PushPullState push_pull(store);
    std::mt19937_64 rng(42);
    daemon::NetworkRecord n;
    n.id = hex_id(rng, 64);
    n.name = "bench";
    n.subnet = Ipv4Prefix::parse("10.128.0.0/10");
    n.gateway = Ipv4Address::parse("10.128.0.1");
    n.vni = 4097;
    n.block_length = 24;
    store.put(n);
    auto t0 = Clock::now();
    for (int i = 0; i < count; ++i) store.put_unsynced(endpoint(store, n.id, i, rng));
    store.sync_journal();
    std::printf("  filled in %.0f ms\n", ms_since(t0));

    std::vector<double> times;
    size_t size = 0;
    for (int r = 0; r < rounds; ++r) {
      t0 = Clock::now();
      size = push_pull.bytes().size();
      times.push_back(ms_since(t0));
    }
    const double p50 = percentile(times, 0.5);
    std::printf("  one message: %.2f MB, p50 %.1f ms, max %.1f ms (%d rounds): %.2f us an entry\n", size / 1e6, p50,
                *std::max_element(times.begin(), times.end()), rounds, 1000.0 * p50 / (count + 1));

    // The daemon's thread writing while the gossip thread puts messages
    // together: how long one write takes, and the longest.
    auto timed_writes = [&](bool with_reader) {
      std::atomic<bool> done{false};
      std::atomic<int> messages{0};
      std::thread reader;
      if (with_reader) {
        reader = std::thread([&] {
          while (!done.load()) {
            push_pull.bytes();
            ++messages;
          }
        });
      }
      std::vector<double> w;
      std::mt19937_64 wrng(7);
      for (int i = 0; i < writes; ++i) {
        auto e = endpoint(store, n.id, static_cast<int>(wrng() % static_cast<uint64_t>(count)), wrng);
        const auto t = Clock::now();
        store.put_unsynced(e);
        w.push_back(ms_since(t));
      }
      done = true;
      if (reader.joinable()) reader.join();
      std::printf("  %d writes %s: p50 %.3f ms, p99 %.3f ms, max %.3f ms%s\n", writes,
                  with_reader ? "while push/pull messages are put together" : "alone", percentile(w, 0.5),
                  percentile(w, 0.99), *std::max_element(w.begin(), w.end()),
                  with_reader ? (" (" + std::to_string(messages.load()) + " messages meanwhile)").c_str() : "");
    };
    timed_writes(false);
    timed_writes(true);
    store.sync_journal();
    std::printf("  load average %s\n", load_average().c_str());
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
