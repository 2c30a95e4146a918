// lb_bench: programming service VIPs into the kernel, swarmnet's nftables
// balancer (and its IPVS balancer, where the kernel has IPVS) next to the
// `nft` command doing the same load, in the same run, with the figures each
// of the balancer's goals needs.
//
// For N services (1,000 and 10,000 by default) of 10 backends each:
//   - full load: Balancer::sync() of all N from scratch: one netlink batch
//     and the N VIPs' local routes (lb/vip_addresses.hpp), all included;
//   - one change: upsert of one VIP with a backend less (its backend count
//     changes, the costliest change), median of 20;
//   - one VIP added: upsert of a new service of 10 backends into the loaded
//     table (its route included), median of 20; also measured with 10
//     services loaded (--small), so the ratio shows whether adding a VIP
//     costs more when there are many;
//   - nft: `nft -f` of the same ruleset (same table, chains, maps and
//     elements) written as text, then one `nft add element` (median of 5),
//     which is what a tool driving the nft command would run per change;
//   - the VIP's local route alone: one more into a local table holding N
//     VIP routes, median of 5 (the route's share of a VIP added);
//   - the kernel's cost of an interface address (how VIPs were placed
//     before: a /32 on the bridge): one more address on a bridge holding
//     N, median of 5, next to one VIP added;
//   - ipvs (with --ipvs, or whenever the kernel has IPVS): the IPVS
//     balancer's sync() and upsert() on the same VIPs. This machine's
//     kernel has no IPVS: bench/lb_bench_ipvs.sh runs this program inside a
//     VM that has it.
// With --rounds R, every path runs R times, in reversed order every other
// round (the machine's load moves while it runs), and each figure is the
// median of the rounds'. It ends with the goals' figures side by side and
// the load average.
// Each measurement runs in a fresh throwaway network namespace, deleted at
// the end (also on error).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/load_average.hpp"
#include "common/error.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "lb/balancer.hpp"
#include "lb/nft_plan.hpp"
#include "lb/vip_addresses.hpp"

using namespace swarmnet;
using Clock = std::chrono::steady_clock;

namespace {

using swarmnet::bench::load_average;

const char* kBridge = "swn-lbbench";

// iproute2's ip by its path: a shell that prefers its own applets (the
// busybox sh of the VM of lb_bench_ipvs.sh) would run busybox's `ip`,
// which has no `netns`.
std::string ip_command() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "ip";
}
const std::string kIp = ip_command();

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A fresh namespace with the bridge, entered for the scope.
class Throwaway {
 public:
  Throwaway() : name_("swn-lbbench-" + std::to_string(::getpid())) {
    std::system((kIp + " netns del " + name_ + " 2>/dev/null").c_str());
    if (std::system((kIp + " netns add " + name_).c_str()) != 0) {
      throw Error(Errc::internal, "ip netns add " + name_ + " failed");
    }
    guard_.emplace(kernel::Netns::open("/var/run/netns/" + name_));
    auto nl = kernel::NetlinkSocket::open();
    nl.ensure_bridge(kBridge, 1500);
  }
  ~Throwaway() {
    guard_.reset();
    std::system((kIp + " netns del " + name_ + " 2>/dev/null").c_str());
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::optional<kernel::NetnsGuard> guard_;
};

std::vector<lb::VirtualIp> services(uint32_t n) {
  std::vector<lb::VirtualIp> all;
  for (uint32_t i = 0; i < n; ++i) {
    lb::VirtualIp v{"svc" + std::to_string(i) + "/net1", Ipv4Address(0x0a800000u + i), kBridge, {}};
    for (uint32_t j = 0; j < 10; ++j) v.backends.push_back(Ipv4Address(0x0a000000u + i * 16 + j));
    all.push_back(v);
  }
  return all;
}

struct Figures {
  double load_ms = 0;
  double change_ms = 0;
  double add_ms = 0;
};

// A new service for the VIP-add figure: addresses past every load's.
lb::VirtualIp new_service(uint32_t k) {
  lb::VirtualIp v{"new" + std::to_string(k) + "/net1", Ipv4Address(0x0ac00000u + k), kBridge, {}};
  for (uint32_t j = 0; j < 10; ++j) v.backends.push_back(Ipv4Address(0x0ad00000u + k * 16 + j));
  return v;
}

// Any Balancer: full load by sync(), one backend less on 20 VIPs, then 20
// new VIPs.
Figures measure(lb::Balancer& balancer, const std::vector<lb::VirtualIp>& all) {
  Figures f;
  auto start = Clock::now();
  balancer.sync(all);
  f.load_ms = ms_since(start);
  std::vector<double> changes;
  for (size_t k = 0; k < 20; ++k) {
    lb::VirtualIp v = all[(k * 397) % all.size()];
    v.backends.pop_back();
    auto t = Clock::now();
    balancer.upsert(v);
    changes.push_back(ms_since(t));
  }
  f.change_ms = median(changes);
  std::vector<double> adds;
  for (uint32_t k = 0; k < 20; ++k) {
    lb::VirtualIp v = new_service(k);
    auto t = Clock::now();
    balancer.upsert(v);
    adds.push_back(ms_since(t));
  }
  f.add_ms = median(adds);
  balancer.clear();
  return f;
}

// The kernel's cost of one more /32 address on a bridge that holds `n`
// (median of 5): the price of a VIP placed as an interface address.
double address_add(uint32_t n) {
  auto nl = kernel::NetlinkSocket::open();
  for (uint32_t i = 0; i < n; ++i) nl.add_address(kBridge, Ipv4Prefix(Ipv4Address(0x0a800000u + i), 32));
  std::vector<double> adds;
  for (uint32_t k = 0; k < 5; ++k) {
    auto t = Clock::now();
    nl.add_address(kBridge, Ipv4Prefix(Ipv4Address(0x0ac00000u + k), 32));
    adds.push_back(ms_since(t));
  }
  return median(adds);
}

// The VIP's local route alone (lb/vip_addresses.hpp), one more into a
// local table holding `n` of them (median of 5): the route's share of a
// VIP added.
double route_add(uint32_t n) {
  auto nl = kernel::NetlinkSocket::open();
  std::vector<std::pair<std::string, Ipv4Address>> routes;
  for (uint32_t i = 0; i < n; ++i) routes.emplace_back(kBridge, Ipv4Address(0x0a800000u + i));
  lb::ensure_vip_routes(nl, routes);
  std::vector<double> adds;
  for (uint32_t k = 0; k < 5; ++k) {
    auto t = Clock::now();
    lb::ensure_vip_route(nl, kBridge, Ipv4Address(0x0ac00000u + k));
    adds.push_back(ms_since(t));
  }
  return median(adds);
}

// nft types the map by expression (typeof): its key is an integer there,
// the same 32 host-order bits our balancer stores as a mark.
std::string hex_bucket(uint32_t bucket) { return std::to_string(bucket); }

// The same table as the nftables balancer's, as nft text.
std::string ruleset(const std::vector<lb::VirtualIp>& all) {
  std::ostringstream out;
  out << "table ip swarmnet-lb {\n"
         "  set vip-addresses { type ipv4_addr; }\n"
         "  map backends { typeof ip daddr . numgen inc mod 2 : ip daddr; }\n"
         "  set hairpin { type ipv4_addr . ipv4_addr; }\n";
  for (uint32_t n = 1; n <= lb::nft::kPrecreatedBuckets; ++n) out << "  set vips-" << n << " { type ipv4_addr; }\n";
  out << "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n"
         "    meta l4proto tcp ip daddr @vip-addresses goto balance\n"
         "    meta l4proto udp ip daddr @vip-addresses goto balance\n  }\n"
         "  chain output { type nat hook output priority -100; policy accept;\n"
         "    meta l4proto tcp ip daddr @vip-addresses goto balance\n"
         "    meta l4proto udp ip daddr @vip-addresses goto balance\n  }\n"
         "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
         "    ip saddr . ip daddr @hairpin masquerade\n  }\n"
         "  chain input { type filter hook input priority filter; policy accept;\n"
         "    meta l4proto tcp ct direction original ip daddr @vip-addresses reject with tcp reset\n"
         "    meta l4proto udp ct direction original ip daddr @vip-addresses reject\n  }\n"
         "  chain balance {\n";
  for (uint32_t n = 1; n <= lb::nft::kPrecreatedBuckets; ++n) {
    out << "    ip daddr @vips-" << n << " dnat to ip daddr . jhash ip saddr . th sport . ip daddr . th dport mod "
        << n << " seed 0x5357524d map @backends\n";
  }
  out << "  }\n}\n";
  std::set<Ipv4Address> tasks;
  for (const auto& v : all) {
    out << "add element ip swarmnet-lb vip-addresses { " << v.vip.str() << " comment \"key " << v.key << " bridge "
        << v.bridge << "\" }\n";
    out << "add element ip swarmnet-lb vips-" << v.backends.size() << " { " << v.vip.str() << " }\n";
    out << "add element ip swarmnet-lb backends { ";
    for (uint32_t i = 0; i < v.backends.size(); ++i) {
      out << (i ? ", " : "") << v.vip.str() << " . " << hex_bucket(i) << " : " << v.backends[i].str();
      tasks.insert(v.backends[i]);
    }
    out << " }\n";
  }
  for (Ipv4Address task : tasks) {
    out << "add element ip swarmnet-lb hairpin { " << task.str() << " . " << task.str() << " }\n";
  }
  return out.str();
}

Figures measure_nft_command(const std::vector<lb::VirtualIp>& all, const std::string& netns) {
  std::string path = "/tmp/swn-lbbench-" + std::to_string(::getpid()) + ".nft";
  {
    std::ofstream file(path);
    file << ruleset(all);
  }
  Figures f;
  std::string exec = kIp + " netns exec " + netns + " ";
  auto start = Clock::now();
  int rc = std::system((exec + "nft -f " + path).c_str());
  f.load_ms = ms_since(start);
  std::filesystem::remove(path);
  if (rc != 0) throw Error(Errc::internal, "nft -f failed");
  std::vector<double> changes;
  for (uint32_t k = 0; k < 5; ++k) {
    const auto& v = all[(k * 397) % all.size()];
    std::string command = exec + "nft add element ip swarmnet-lb backends '{ " + v.vip.str() + " . " +
                          hex_bucket(100 + k) + " : 10.9.9.9 }'";
    auto t = Clock::now();
    if (std::system(command.c_str()) != 0) throw Error(Errc::internal, "nft add element failed");
    changes.push_back(ms_since(t));
  }
  f.change_ms = median(changes);
  return f;
}

// One size's figures; with several rounds, each is the median of the
// rounds' figures.
struct Row {
  uint32_t services = 0;
  Figures ours, nft, ipvs;
  double address_ms = 0;
  double route_ms = 0;
};

Figures median_of(const std::vector<Figures>& rounds) {
  std::vector<double> load, change, add;
  for (const Figures& f : rounds) {
    load.push_back(f.load_ms);
    change.push_back(f.change_ms);
    add.push_back(f.add_ms);
  }
  return {median(load), median(change), median(add)};
}

double median_of(const std::vector<double>& rounds) { return median(rounds); }

// Every path measured on `n` services, `rounds` times; the order of the
// paths is reversed every other round, so that none always runs first
// (or last) while the machine's load moves.
Row measure_size(uint32_t n, uint32_t rounds, bool nft_command, bool ipvs) {
  const auto all = services(n);
  std::vector<Figures> ours, nft, ipvs_figures;
  std::vector<double> address, route;
  std::vector<std::function<void()>> paths{
      [&] {
        Throwaway ns;
        auto balancer = lb::make_nftables_balancer();
        ours.push_back(measure(*balancer, all));
      },
      [&] {
        Throwaway ns;
        address.push_back(address_add(n));
      },
      [&] {
        Throwaway ns;
        route.push_back(route_add(n));
      },
  };
  if (nft_command) {
    paths.push_back([&] {
      Throwaway ns;
      nft.push_back(measure_nft_command(all, ns.name()));
    });
  }
  if (ipvs) {
    paths.push_back([&] {
      Throwaway ns;
      auto balancer = lb::make_ipvs_balancer();
      ipvs_figures.push_back(measure(*balancer, all));
    });
  }
  for (uint32_t r = 0; r < rounds; ++r) {
    if (r % 2 == 0) {
      for (auto& path : paths) path();
    } else {
      for (auto it = paths.rbegin(); it != paths.rend(); ++it) (*it)();
    }
  }
  Row row;
  row.services = n;
  row.ours = median_of(ours);
  if (nft_command) row.nft = median_of(nft);
  if (ipvs) row.ipvs = median_of(ipvs_figures);
  row.address_ms = median_of(address);
  row.route_ms = median_of(route);
  return row;
}

const char* verdict(bool ok) { return ok ? "met" : "NOT met"; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lb_bench: VIP programming, swarmnet's nftables (and IPVS) balancer vs the nft command"};
  std::vector<uint32_t> sizes{1000, 10000};
  uint32_t small = 10;
  uint32_t rounds = 1;
  bool want_ipvs = false, skip_nft_command = false;
  app.add_option("--services", sizes, "service counts (10 backends each), ascending");
  app.add_option("--small", small, "the small table the cost of adding a VIP is compared with");
  app.add_option("--rounds", rounds,
                 "measure every path this many times, in reversed order every other round; report medians");
  app.add_flag("--ipvs", want_ipvs, "measure the IPVS balancer too (an error if the kernel has no IPVS)");
  app.add_flag("--no-nft-command", skip_nft_command, "skip the nft command's figures");
  CLI11_PARSE(app, argc, argv);
  if (::geteuid() != 0) {
    std::cerr << "lb_bench: needs root (it makes network namespaces)\n";
    return 2;
  }
  if (sizes.empty() || small == 0 || rounds == 0 || std::find(sizes.begin(), sizes.end(), 0u) != sizes.end()) {
    std::cerr << "lb_bench: --services, --small and --rounds take counts above 0\n";
    return 2;
  }
  std::sort(sizes.begin(), sizes.end());
  try {
    const bool ipvs = lb::ipvs_available();
    if (want_ipvs && !ipvs) {
      std::cerr << "lb_bench: --ipvs: this kernel has no IPVS (bench/lb_bench_ipvs.sh runs lb_bench in a VM "
                   "that has it)\n";
      return 2;
    }
    const std::string load_before = load_average();
    std::printf("load average before: %s\n", load_before.c_str());
    const Row small_row = measure_size(small, rounds, false, false);
    std::printf("%u services x 10 backends%s\n", small, rounds > 1 ? " (medians of the rounds)" : "");
    std::printf("  VIP added   swarmnet upsert   %9.3f ms (median of 20; its local route alone %.3f ms)   "
                "ip address add %.3f ms (median of 5)\n",
                small_row.ours.add_ms, small_row.route_ms, small_row.address_ms);
    std::vector<Row> rows;
    for (uint32_t n : sizes) {
      Row row = measure_size(n, rounds, !skip_nft_command, ipvs);
      std::printf("%u services x 10 backends%s (load average now %s)\n", n,
                  rounds > 1 ? " (medians of the rounds)" : "", load_average().c_str());
      std::printf("  full load   swarmnet nftables %9.1f ms (VIP routes included)\n", row.ours.load_ms);
      if (!skip_nft_command) {
        std::printf("              nft -f            %9.1f ms   ratio nft/swarmnet %.1fx\n", row.nft.load_ms,
                    row.nft.load_ms / row.ours.load_ms);
      }
      if (ipvs) std::printf("              swarmnet ipvs     %9.1f ms\n", row.ipvs.load_ms);
      std::printf("  one change  swarmnet upsert   %9.3f ms (median of 20)\n", row.ours.change_ms);
      if (!skip_nft_command) {
        std::printf("              nft add element   %9.3f ms (median of 5)   ratio nft/swarmnet %.0fx\n",
                    row.nft.change_ms, row.nft.change_ms / row.ours.change_ms);
      }
      if (ipvs) std::printf("              ipvs upsert       %9.3f ms (median of 20)\n", row.ipvs.change_ms);
      std::printf("  VIP added   swarmnet upsert   %9.3f ms (median of 20; its local route alone %.3f ms)   "
                  "ip address add %.3f ms (median of 5)\n",
                  row.ours.add_ms, row.route_ms, row.address_ms);
      if (ipvs) std::printf("              ipvs upsert       %9.3f ms (median of 20)\n", row.ipvs.add_ms);
      if (!ipvs) std::printf("  ipvs: not available in this kernel (bench/lb_bench_ipvs.sh runs this in a VM)\n");
      std::fflush(stdout);
      rows.push_back(row);
    }

    // The goals, with the figures they are judged on.
    const Row& first = rows.front();
    const Row& last = rows.back();
    std::printf("goals (nftables balancer)\n");
    const double change_ratio = last.ours.change_ms / first.ours.change_ms;
    std::printf("  one change: %.3f ms at %u services, %.3f ms at %u: %.2fx (goal: < 1 ms at 10,000, <= 1.5x from "
                "1,000): %s\n",
                first.ours.change_ms, first.services, last.ours.change_ms, last.services, change_ratio,
                verdict(last.ours.change_ms < 1.0 && change_ratio <= 1.5));
    std::printf("  full load of %u services, VIP routes included: %.1f ms (goal: < 1,000 ms at 10,000): %s\n",
                last.services, last.ours.load_ms, verdict(last.ours.load_ms < 1000.0));
    const double add_ratio = last.ours.add_ms / small_row.ours.add_ms;
    std::printf("  one VIP added: %.3f ms at %u VIPs, %.3f ms at %u: %.2fx (goal: <= 1.5x): %s; its local route "
                "alone: %.3f and %.3f ms, %.2fx; an interface address instead: %.3f and %.3f ms, %.1fx\n",
                small_row.ours.add_ms, small, last.ours.add_ms, last.services, add_ratio, verdict(add_ratio <= 1.5),
                small_row.route_ms, last.route_ms, last.route_ms / small_row.route_ms, small_row.address_ms,
                last.address_ms, last.address_ms / small_row.address_ms);
    std::printf("load average after: %s (before: %s)\n", load_average().c_str(), load_before.c_str());
  } catch (const std::exception& e) {
    std::cerr << "lb_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
