// The real gossip core (daemon/gossip) over
// a simulated lossy network, in virtual time.
//  (b) time and gossip rounds until 99% and 100% of 1,000 nodes hold one
//      broadcast, next to memberlist/serf's convergence model;
//  (c) gossip bytes per node per second at rest and under churn.
//
// The model is the one behind serf's convergence simulator (serf.io,
// "Convergence Simulator"): a logistic epidemic where the fraction of nodes
// infected after x rounds is 1 / (1 + (n+1) e^(-c n x)), with contact rate
// c = fanout/n * (1 - loss) * (1 - failed) * 0.5. It never reaches 100%, so
// for "100%" we take the round where fewer than half a node is expected to
// be missing it.
//
// Usage: gossip_convergence [--nodes N] [--loss PERCENT] [--trials T] [--seed S]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "daemon/gossip/sim.hpp"

using namespace swarmnet::gossip;
using namespace std::chrono_literals;

namespace {

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

struct Model {
  double rounds_99, rounds_100;
};

Model model(double n, double fanout, double loss) {
  double contact = fanout / n * (1 - loss) * 0.5;
  double cn = contact * n;
  // 1/(1+(n+1)e^(-cn x)) = f  =>  x = ln((n+1) f / (1-f)) / cn
  auto rounds_for = [&](double f) { return std::log((n + 1) * f / (1 - f)) / cn; };
  return Model{rounds_for(0.99), rounds_for(1 - 0.5 / n)};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

uint64_t total_bytes(sim::Network& net) {
  uint64_t b = 0;
  for (size_t i = 0; i < net.size(); ++i) b += net.bytes_sent(i);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 1000;
  double loss = 0.01;
  int trials = 5;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--nodes")
      n = std::strtoul(argv[i + 1], nullptr, 10);
    else if (a == "--loss")
      loss = std::strtod(argv[i + 1], nullptr) / 100.0;
    else if (a == "--trials")
      trials = std::atoi(argv[i + 1]);
    else if (a == "--seed")
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: %s [--nodes N] [--loss PERCENT] [--trials T] [--seed S]\n",
                   argv[0]);
      return 2;
    }
  }
  if (n < 2 || trials < 1) return 2;

  Config cfg;  // memberlist's LAN defaults: 200 ms gossip, fanout 3, ...
  sim::NetConfig netcfg{.loss = loss, .latency = 1ms, .jitter = 1ms, .step = 5ms, .seed = seed};
  sim::Network net(netcfg, cfg);
  auto wall0 = std::chrono::steady_clock::now();

  // Build the cluster: each node joins through a random earlier one, then
  // the join gossip settles (queues drain) so the measured broadcast does
  // not compete with the cluster's own formation.
  for (size_t i = 0; i < n; ++i) net.add_node();
  std::mt19937_64 rng(seed);
  for (size_t i = 1; i < n; ++i) {
    net.join(i, rng() % i);
    net.run_for(5ms);
  }
  auto settled = [&] {
    for (size_t i = 0; i < n; ++i)
      if (net.node(i).num_alive() != n || net.node(i).queued_broadcasts() != 0) return false;
    return true;
  };
  auto t_build = net.now();
  bool ok = net.run_until(settled, 600s);
  std::printf("cluster of %zu nodes formed and settled in %.1f s virtual (%s), %.1f s wall\n", n,
              seconds(net.now() - t_build), ok ? "all see all alive, queues empty" : "NOT settled",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count());
  std::fflush(stdout);

  // (b) convergence of one broadcast, several trials from random origins.
  std::vector<double> t99, t100;
  for (int t = 0; t < trials; ++t) {
    size_t origin = rng() % n;
    std::vector<size_t> before(n);
    for (size_t i = 0; i < n; ++i) before[i] = net.delegate(i).messages.size();
    auto holders = [&] {
      size_t h = 1;  // the origin
      for (size_t i = 0; i < n; ++i)
        if (i != origin && net.delegate(i).messages.size() > before[i]) h++;
      return h;
    };
    auto start = net.now();
    net.node(origin).broadcast(Bytes{'u', 'p', 'd', static_cast<uint8_t>(t)});
    double a = -1, b = -1;
    size_t need99 = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(n)));
    net.run_until(
        [&] {
          size_t h = holders();
          if (a < 0 && h >= need99) a = seconds(net.now() - start);
          if (b < 0 && h == n) b = seconds(net.now() - start);
          return b >= 0;
        },
        60s);
    if (a < 0 || b < 0) {
      std::printf("trial %d: did not converge within 60 s (%zu/%zu)\n", t, holders(), n);
      return 1;
    }
    t99.push_back(a);
    t100.push_back(b);
    net.run_for(10s);  // let the retransmissions die down before the next
  }

  double interval = seconds(cfg.gossip_interval);
  Model m = model(static_cast<double>(n), cfg.gossip_nodes, loss);
  double m99 = m.rounds_99 * interval, m100 = m.rounds_100 * interval;
  double r99 = median(t99), r100 = median(t100);
  std::printf(
      "\n(b) convergence: %zu nodes, gossip interval %.0f ms, fanout %u, packet loss %.1f%%,"
      " median of %d broadcasts\n",
      n, interval * 1000, cfg.gossip_nodes, loss * 100, trials);
  std::printf("  %-14s %-24s %-26s %s\n", "", "swarmnet (measured)", "memberlist model", "ratio");
  std::printf("  %-14s %5.2f s  (%4.1f rounds)    %5.2f s  (%4.1f rounds)      %.2f\n",
              "99% of nodes", r99, r99 / interval, m99, m.rounds_99, r99 / m99);
  std::printf("  %-14s %5.2f s  (%4.1f rounds)    %5.2f s  (%4.1f rounds)*     %.2f\n",
              "100% of nodes", r100, r100 / interval, m100, m.rounds_100, r100 / m100);
  std::printf("  per trial (99%% / 100%%, s):");
  for (size_t i = 0; i < t99.size(); ++i) std::printf(" %.2f/%.2f", t99[i], t100[i]);
  std::printf(
      "\n  * the model is asymptotic; its 100%% is where < 0.5 node is expected to miss it\n");
  std::printf(
      "  goal (DESIGN.md): same or better than the model's ~1.5 s to 99%% at 1,000 nodes: %s\n",
      r99 <= m99 ? "met" : "NOT met");

  // (c) bandwidth at rest: probes, acks, push/pull. The window is one
  // push/pull period (30 s, scaled up with cluster size: 180 s at 1,000
  // nodes), so every node does about one exchange in it.
  const Duration window = std::max<Duration>(60s, push_pull_scale(cfg.push_pull_interval, n));
  net.run_for(30s);
  uint64_t b0 = total_bytes(net);
  net.run_for(window);
  double rest =
      static_cast<double>(total_bytes(net) - b0) / static_cast<double>(n) / seconds(window);

  // ...and under churn: every second one node crashes, and one that has
  // been down for 10 s comes back and rejoins (about 1% of the cluster
  // replaced every 10 s).
  std::vector<std::pair<TimePoint, size_t>> down;
  uint64_t c0 = total_bytes(net);
  auto churn_start = net.now();
  size_t crashes = 0, rejoins = 0;
  while (net.now() - churn_start < window) {
    size_t victim = rng() % n;
    if (net.is_up(victim)) {
      net.stop(victim);
      down.emplace_back(net.now(), victim);
      crashes++;
    }
    if (!down.empty() && net.now() - down.front().first >= 10s) {
      size_t back = down.front().second;
      down.erase(down.begin());
      size_t seed_node;
      do seed_node = rng() % n;
      while (!net.is_up(seed_node));
      net.restart(back, seed_node);
      rejoins++;
    }
    net.run_for(1s);
  }
  double churn =
      static_cast<double>(total_bytes(net) - c0) / static_cast<double>(n) / seconds(window);
  std::printf(
      "\n(c) gossip bytes per node per second (UDP + TCP push/pull, incl. the 37-byte"
      " AES-GCM envelope per datagram)\n");
  std::printf("  at rest:      %8.0f B/s  (%.1f kbit/s)\n", rest, rest * 8 / 1000);
  std::printf("  under churn:  %8.0f B/s  (%.1f kbit/s)   %zu crashes + %zu rejoins in %.0f s\n",
              churn, churn * 8 / 1000, crashes, rejoins, seconds(window));
  std::printf(
      "  serf simulator's bound for this config (1400 B x fanout x 2 / interval): %.0f B/s\n",
      1400.0 * cfg.gossip_nodes * 2 / interval);
  std::printf("\nwall time %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count());
  return 0;
}
