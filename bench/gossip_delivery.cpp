// Does every broadcast reach every node, and how fast?
// The real gossip core (daemon/gossip) over the simulated network, in
// virtual time. For each cluster size and loss rate: a cluster forms and
// settles, then WRITES writes of 400 bytes (a typical store line) are
// broadcast from random nodes at RATE per second in total; then the run goes
// on until every node has every write or 30 s have passed. Printed: the
// deliveries that never happened (a node never got the write from gossip),
// the delay from a write to its arrival at each node (median, p99, max),
// how many arrived later than 5 s, and what it cost (streams, bytes).
//
// Usage: gossip_delivery [--nodes 3,10,100] [--loss 0,5] [--writes W] [--rate R] [--seed S]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/gossip/sim.hpp"

using namespace swarmnet::gossip;
using namespace std::chrono_literals;

namespace {

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

std::vector<double> list(const std::string& text) {
  std::vector<double> out;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) out.push_back(std::strtod(part.c_str(), nullptr));
  return out;
}

std::string item(size_t k) {
  std::string s = "w" + std::to_string(k) + ":";
  return s + std::string(400 - s.size(), 'x');
}

struct Result {
  size_t expected = 0, missed = 0, late = 0;
  double p50 = 0, p99 = 0, max = 0;
  uint64_t streams = 0, bytes = 0;
  double seconds = 0;
};

Result run(size_t n, double loss, size_t writes, double rate, uint64_t seed) {
  sim::Network net({.loss = loss, .latency = 1ms, .jitter = 1ms, .step = 5ms, .seed = seed}, Config{});
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; ++i) net.add_node();
  for (size_t i = 1; i < n; ++i) {
    net.join(i, rng() % i);
    net.run_for(5ms);
  }
  net.run_until(
      [&] {
        for (size_t i = 0; i < n; ++i)
          if (net.node(i).num_alive() != n || net.node(i).queued_broadcasts() != 0) return false;
        return true;
      },
      120s);
  uint64_t streams0 = 0, bytes0 = 0;
  for (size_t i = 0; i < n; ++i) {
    streams0 += net.node(i).stats().streams_out;
    bytes0 += net.bytes_sent(i);
  }
  std::vector<size_t> before(n);
  for (size_t i = 0; i < n; ++i) before[i] = net.delegate(i).messages.size();

  std::map<std::string, std::pair<TimePoint, size_t>> sent;  // write -> when, from
  auto gap = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(1.0 / rate));
  auto t0 = net.now();
  for (size_t k = 0; k < writes; ++k) {
    size_t from = rng() % n;
    sent[item(k)] = {net.now(), from};
    net.publish(from, item(k));
    net.run_for(gap);
  }
  auto delivered = [&] {
    size_t got = 0;
    for (size_t i = 0; i < n; ++i) got += net.delegate(i).messages.size() - before[i];
    return got;
  };
  Result r;
  r.expected = writes * (n - 1);
  net.run_until([&] { return delivered() >= r.expected; }, 30s);
  r.seconds = seconds(net.now() - t0);

  std::vector<double> delays;
  for (size_t i = 0; i < n; ++i) {
    auto& d = net.delegate(i);
    for (size_t m = before[i]; m < d.messages.size(); ++m) {
      auto it = sent.find(std::string(d.messages[m].begin(), d.messages[m].end()));
      if (it == sent.end()) continue;
      double s = seconds(d.message_at[m] - it->second.first);
      delays.push_back(s);
      if (s > 5.0) r.late++;
    }
  }
  r.missed = r.expected - std::min(r.expected, delays.size());
  std::sort(delays.begin(), delays.end());
  auto pct = [&](double p) {
    if (delays.empty()) return 0.0;
    return delays[std::min(delays.size() - 1, static_cast<size_t>(p * static_cast<double>(delays.size())))];
  };
  r.p50 = pct(0.5);
  r.p99 = pct(0.99);
  r.max = delays.empty() ? 0 : delays.back();
  for (size_t i = 0; i < n; ++i) {
    r.streams += net.node(i).stats().streams_out;
    r.bytes += net.bytes_sent(i);
  }
  r.streams -= streams0;
  r.bytes -= bytes0;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<double> sizes = {3, 10, 100}, losses = {0, 5};
  size_t writes = 1000;
  double rate = 20;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--nodes")
      sizes = list(argv[i + 1]);
    else if (a == "--loss")
      losses = list(argv[i + 1]);
    else if (a == "--writes")
      writes = std::strtoul(argv[i + 1], nullptr, 10);
    else if (a == "--rate")
      rate = std::strtod(argv[i + 1], nullptr);
    else if (a == "--seed")
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr,
                   "usage: %s [--nodes 3,10,100] [--loss 0,5] [--writes W] [--rate PER_S] [--seed S]\n",
                   argv[0]);
      return 2;
    }
  }
  if (writes == 0 || rate <= 0) return 2;
  auto wall0 = std::chrono::steady_clock::now();
  std::printf("%zu writes of 400 bytes from random nodes, %.0f per second in total; memberlist's LAN "
              "timings\n\n",
              writes, rate);
  std::printf("%6s %6s %10s %8s %8s %8s %8s %10s %9s %12s\n", "nodes", "loss", "deliveries",
              "missed", "p50 s", "p99 s", "max s", "after 5 s", "streams", "KB/node/s");
  bool ok = true;
  for (double nd : sizes) {
    for (double l : losses) {
      size_t n = static_cast<size_t>(nd);
      if (n < 2) continue;
      Result r = run(n, l / 100.0, writes, rate, seed);
      double kbs = static_cast<double>(r.bytes) / 1000.0 / static_cast<double>(n) / r.seconds;
      std::printf("%6zu %5.1f%% %10zu %8zu %8.3f %8.3f %8.3f %10zu %9lu %12.1f\n", n, l, r.expected,
                  r.missed, r.p50, r.p99, r.max, r.late, static_cast<unsigned long>(r.streams), kbs);
      std::fflush(stdout);
      if (r.missed > 0 || (r.late > 0 && l <= 5.0)) ok = false;
    }
  }
  std::printf("\ngoal: 0 missed at 0%% loss, all within 5 s at 5%% loss: %s   (wall %.1f s)\n",
              ok ? "met" : "NOT met",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count());
  return ok ? 0 : 1;
}
