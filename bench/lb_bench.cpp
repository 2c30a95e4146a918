// lb_bench: programming service VIPs into the kernel, swarmnet's nftables
// balancer (and its IPVS balancer, where the kernel has IPVS) next to the
// `nft` command doing the same load, in the same run.
//
// For N services (1,000 and 10,000 by default) of 10 backends each:
//   - ours: Balancer::sync() of all N from scratch (one netlink batch, plus
//     the N VIP addresses on the bridge), then one backend change (upsert of
//     one VIP with a backend less; median of 20);
//   - the N VIP addresses are added (and timed) first, so sync() finds them
//     in place and its own time is the nftables part: the kernel's cost per
//     address grows with the number of addresses on the link, and would
//     otherwise hide what the nftables work costs;
//   - nft: `nft -f` of the same ruleset (same table, chains, maps and
//     elements) written as text, then one `nft add element` (median of 5),
//     which is what a tool driving the nft command would run per change;
//   - ipvs (with --ipvs, or whenever the kernel has IPVS): the IPVS
//     balancer's sync() and upsert() on the same VIPs, addresses timed
//     apart the same way. This machine's kernel has no IPVS:
//     bench/lb_bench_ipvs.sh runs this program inside a VM that has it.
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
#include <sstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "lb/balancer.hpp"
#include "lb/nft_plan.hpp"
#include "lb/vip_addresses.hpp"

using namespace swarmnet;
using Clock = std::chrono::steady_clock;

namespace {

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
};

// Any Balancer: full load by sync(), then one backend less on 20 VIPs.
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
  balancer.clear();
  return f;
}

double addresses_alone(const std::vector<lb::VirtualIp>& all) {
  auto nl = kernel::NetlinkSocket::open();
  auto start = Clock::now();
  for (const auto& v : all) lb::ensure_vip_address(nl, v.bridge, v.vip);
  return ms_since(start);
}

// nft types the map by expression (typeof): its key is an integer there,
// the same 32 host-order bits our balancer stores as a mark.
std::string hex_bucket(uint32_t bucket) { return std::to_string(bucket); }

// The same table as the nftables balancer's, as nft text.
std::string ruleset(const std::vector<lb::VirtualIp>& all) {
  std::ostringstream out;
  out << "table ip swarmnet-lb {\n"
         "  map vips { type ipv4_addr : verdict; }\n"
         "  set vip-addresses { type ipv4_addr; }\n"
         "  map backends { typeof ip daddr . numgen inc mod 2 : ip daddr; }\n"
         "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n"
         "    meta l4proto tcp ip daddr vmap @vips\n"
         "    meta l4proto udp ip daddr vmap @vips\n  }\n"
         "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
         "  chain input { type filter hook input priority filter; policy accept;\n"
         "    meta l4proto tcp ip daddr @vip-addresses reject with tcp reset\n"
         "    meta l4proto udp ip daddr @vip-addresses reject\n  }\n";
  for (uint32_t n = 1; n <= 16; ++n) {
    out << "  chain mod-" << n << " { dnat to ip daddr . jhash ip saddr . th sport . ip daddr . th dport mod "
        << n << " seed 0x5357524d map @backends; }\n";
  }
  out << "}\n";
  for (const auto& v : all) {
    out << "add element ip swarmnet-lb vips { " << v.vip.str() << " comment \"key " << v.key << " bridge "
        << v.bridge << "\" : goto mod-" << v.backends.size() << " }\n";
    out << "add element ip swarmnet-lb vip-addresses { " << v.vip.str() << " }\n";
    out << "add element ip swarmnet-lb backends { ";
    for (uint32_t i = 0; i < v.backends.size(); ++i) {
      out << (i ? ", " : "") << v.vip.str() << " . " << hex_bucket(i) << " : " << v.backends[i].str();
    }
    out << " }\n";
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lb_bench: VIP programming, swarmnet's nftables (and IPVS) balancer vs the nft command"};
  std::vector<uint32_t> sizes{1000, 10000};
  bool want_ipvs = false, skip_nft_command = false;
  app.add_option("--services", sizes, "service counts (10 backends each)");
  app.add_flag("--ipvs", want_ipvs, "measure the IPVS balancer too (an error if the kernel has no IPVS)");
  app.add_flag("--no-nft-command", skip_nft_command, "skip the nft command's figures");
  CLI11_PARSE(app, argc, argv);
  if (::geteuid() != 0) {
    std::cerr << "lb_bench: needs root (it makes network namespaces)\n";
    return 2;
  }
  try {
    const bool ipvs = lb::ipvs_available();
    if (want_ipvs && !ipvs) {
      std::cerr << "lb_bench: --ipvs: this kernel has no IPVS (bench/lb_bench_ipvs.sh runs lb_bench in a VM "
                   "that has it)\n";
      return 2;
    }
    for (uint32_t n : sizes) {
      auto all = services(n);
      Figures ours, nft;
      double addresses = 0;
      {
        // The addresses first, timed apart: sync() then finds them in
        // place and its time is the nftables part (and one address dump).
        Throwaway ns;
        addresses = addresses_alone(all);
        auto balancer = lb::make_nftables_balancer();
        ours = measure(*balancer, all);
      }
      if (!skip_nft_command) {
        Throwaway ns;
        nft = measure_nft_command(all, ns.name());
      }
      Figures ipvs_figures;
      double ipvs_addresses = 0;
      if (ipvs) {
        Throwaway ns;
        ipvs_addresses = addresses_alone(all);
        auto balancer = lb::make_ipvs_balancer();
        ipvs_figures = measure(*balancer, all);
      }
      double ours_nft_only = ours.load_ms;
      ours.load_ms += addresses;
      std::printf("%u services x 10 backends\n", n);
      std::printf("  full load   swarmnet nftables %9.1f ms (of which %u VIP addresses %.1f ms, nftables %.1f ms)\n",
                  ours.load_ms, n, addresses, ours_nft_only);
      if (!skip_nft_command) {
        std::printf("              nft -f            %9.1f ms   ratio nft/swarmnet %.1fx (nftables part alone %.1fx)\n",
                    nft.load_ms, nft.load_ms / ours.load_ms, nft.load_ms / std::max(ours_nft_only, 0.001));
      }
      if (ipvs) {
        std::printf("              swarmnet ipvs     %9.1f ms (of which %u VIP addresses %.1f ms, IPVS+marks %.1f ms)\n",
                    ipvs_figures.load_ms + ipvs_addresses, n, ipvs_addresses, ipvs_figures.load_ms);
      }
      std::printf("  one change  swarmnet upsert   %9.3f ms (median of 20)\n", ours.change_ms);
      if (!skip_nft_command) {
        std::printf("              nft add element   %9.3f ms (median of 5)   ratio %.0fx\n", nft.change_ms,
                    nft.change_ms / ours.change_ms);
      }
      if (ipvs) {
        std::printf("              ipvs upsert       %9.3f ms (median of 20)\n", ipvs_figures.change_ms);
      } else {
        std::printf("  ipvs: not available in this kernel (bench/lb_bench_ipvs.sh runs this in a VM)\n");
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::cerr << "lb_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
