// change_cost: what one task change costs swarmnetd as the node's load grows.
//
// One swarmnetd, alone (no cluster), in a network namespace of its own that
// goes away with it. One network, S services (default 1,000) with a VIP
// each, then tasks added round-robin over the services as endpoints of this
// host (an API POST, as the CNI plugin's ADD makes them, without the veth)
// until each size of --tasks is reached. At each size, SAMPLES times: one
// more task added, then removed, each timed from the request to the reply:
// the daemon answers after the change is in its store and its listeners (the
// balancer, the DNS names, the routing mesh) have programmed it. Prints
// p50/p99 per size, the ratio between the largest and the smallest size
// (goal: under 5 ms p99, growing at most 1.5x from 1,000 to 10,000 tasks),
// the time to fill, and swarmnetd's resident memory per endpoint (goal: at
// most 1 kB). With --ingress, the daemon is the node of a cluster of one
// (`cluster init` on its loopback) and every service publishes a port in
// ingress mode, so the routing mesh programs each change too. Root.
// Env-free; see --help.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common/api_client.hpp"
#include "common/error.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// VmRSS of a process in kB (0 if unreadable).
long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Sample {
  size_t tasks = 0;
  std::vector<double> add, remove;
  double fill_s = 0;
  long rss_kb = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The cost of one task change in swarmnetd at growing numbers of tasks (root)"};
  std::string bin_dir = fs::path(argv[0]).parent_path().string();
  int services = 1000;
  std::vector<size_t> sizes = {1000, 10000};
  int samples = 50;
  double max_fill_s = 900;
  bool ingress = false;
  app.add_option("--bin-dir", bin_dir, "Where swarmnetd is")->capture_default_str();
  app.add_option("--services", services, "Services (a VIP each) the tasks spread over")->capture_default_str();
  app.add_option("--tasks", sizes, "Numbers of tasks to measure at, ascending (e.g. 1000,10000)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--samples", samples, "Task additions and removals timed at each size")->capture_default_str();
  app.add_option("--max-fill-s", max_fill_s, "Give up filling to the next size after this long")
      ->capture_default_str();
  app.add_flag("--ingress", ingress,
               "A cluster of one, every service publishing a port in ingress mode (the routing mesh programs each "
               "change)");
  CLI11_PARSE(app, argc, argv);
  if (geteuid() != 0) {
    std::cerr << "change_cost: needs root (swarmnetd runs in a network namespace of its own)\n";
    return 2;
  }
  if (!fs::exists(bin_dir + "/swarmnetd")) {
    std::cerr << "change_cost: " << bin_dir << "/swarmnetd not found (--bin-dir)\n";
    return 2;
  }
  if (!std::is_sorted(sizes.begin(), sizes.end()) || sizes.empty() || services < 1) {
    std::cerr << "change_cost: --tasks must be ascending, --services at least 1\n";
    return 2;
  }

  const fs::path tmp = fs::temp_directory_path() / ("swncc" + std::to_string(getpid()));
  fs::create_directories(tmp);
  const std::string socket = (tmp / "swarmnetd.sock").string();
  pid_t daemon = fork();
  if (daemon == 0) {
    // A network namespace of its own: the bridge, the VIP addresses and the
    // nftables balancer go away with the process.
    if (unshare(CLONE_NEWNET) != 0) _exit(126);
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // it goes with the bench, also when that is interrupted
    // Its loopback up: a cluster's gossip listens there (--ingress).
    if (std::system("ip link set lo up") != 0) _exit(125);
    execl((bin_dir + "/swarmnetd").c_str(), "swarmnetd", "--state-dir", (tmp / "state").c_str(), "--api-socket",
          socket.c_str(), "--log-level", "warn", nullptr);
    _exit(127);
  }
  auto cleanup = [&] {
    if (daemon > 0) {
      kill(daemon, SIGTERM);
      waitpid(daemon, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(tmp, ec);
  };

  int rc = 0;
  try {
    swarmnet::ApiClient client(socket, std::chrono::seconds(120));
    for (int i = 0; i < 200 && !fs::exists(socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::printf("change_cost: swarmnetd pid %d, %d services%s, load average %s (%u CPUs)\n", daemon, services,
                ingress ? " publishing a port each in ingress mode" : "", load_average().c_str(),
                std::thread::hardware_concurrency());
    if (ingress) {
      json::value init = {{"advertise_addr", "127.0.0.1"}};
      client.call("POST", "/v1/cluster/init", &init);
    }
    json::value network = {{"name", "bench"}, {"subnet", "10.200.0.0/16"}};
    client.call("POST", "/v1/networks", &network);
    const long rss_empty = rss_kb(daemon);
    for (int s = 0; s < services; ++s) {
      json::value create = {{"name", "svc" + std::to_string(s)}, {"networks", json::array{"bench"}}};
      if (ingress) create.as_object()["ports"] = json::array{json::object{{"target", 80}, {"published", 0}}};
      client.call("POST", "/v1/services", &create);
    }
    const long rss_services = rss_kb(daemon);
    std::printf("  %d services made; swarmnetd RSS %ld kB empty, %ld kB with the services\n", services, rss_empty,
                rss_services);

    auto add_task = [&](const std::string& id, int service) {
      json::value e = {{"container_id", id},
                       {"ifname", "eth0"},
                       {"name", id},
                       {"service", "svc" + std::to_string(service)}};
      client.call("POST", "/v1/networks/bench/endpoints", &e);
    };
    auto remove_task = [&](const std::string& id) {
      client.call("DELETE", "/v1/networks/bench/endpoints/" + swarmnet::url_segment(id) + "/eth0");
    };

    std::vector<Sample> results;
    size_t tasks = 0;
    const long rss_before_tasks = rss_kb(daemon);
    for (size_t size : sizes) {
      const auto t0 = Clock::now();
      bool gave_up = false;
      while (tasks < size) {
        add_task("task" + std::to_string(tasks), static_cast<int>(tasks % static_cast<size_t>(services)));
        ++tasks;
        if (tasks % 1000 == 0) {
          std::printf("    %zu tasks (%.1f s)\n", tasks, ms_since(t0) / 1000);
          std::fflush(stdout);
        }
        if (ms_since(t0) / 1000 > max_fill_s) {
          gave_up = true;
          break;
        }
      }
      if (gave_up) {
        std::printf("  gave up filling to %zu tasks after %.0f s at %zu tasks (--max-fill-s): one change costs too "
                    "much to go on\n",
                    size, max_fill_s, tasks);
        break;
      }
      Sample s;
      s.tasks = tasks;
      s.fill_s = ms_since(t0) / 1000;
      s.rss_kb = rss_kb(daemon);
      for (int i = 0; i < samples; ++i) {
        const std::string id = "probe" + std::to_string(i);
        auto a = Clock::now();
        add_task(id, i % services);
        s.add.push_back(ms_since(a));
        auto r = Clock::now();
        remove_task(id);
        s.remove.push_back(ms_since(r));
      }
      std::printf("  %zu tasks: add p50 %.2f ms p99 %.2f ms, remove p50 %.2f ms p99 %.2f ms (filled in %.1f s; "
                  "load %s)\n",
                  tasks, percentile(s.add, 50), percentile(s.add, 99), percentile(s.remove, 50),
                  percentile(s.remove, 99), s.fill_s, load_average().c_str());
      std::fflush(stdout);
      results.push_back(std::move(s));
    }

    std::printf("\none task change in swarmnetd (%d services, VIP each, nftables balancer or none%s), %d samples\n",
                services, ingress ? ", routing mesh" : "", samples);
    std::printf("%10s %12s %12s %12s %12s %14s\n", "tasks", "add p50 ms", "add p99 ms", "rm p50 ms", "rm p99 ms",
                "RSS/endpoint");
    for (const auto& s : results) {
      const double per_endpoint =
          s.tasks ? static_cast<double>(s.rss_kb - rss_before_tasks) * 1024.0 / static_cast<double>(s.tasks) : 0;
      std::printf("%10zu %12.2f %12.2f %12.2f %12.2f %12.0f B\n", s.tasks, percentile(s.add, 50),
                  percentile(s.add, 99), percentile(s.remove, 50), percentile(s.remove, 99), per_endpoint);
    }
    if (results.size() >= 2) {
      const auto& a = results.front();
      const auto& b = results.back();
      std::printf("growth %zu -> %zu tasks: add p99 %.2fx, remove p99 %.2fx (goal: <= 1.5x, p99 < 5 ms)\n", a.tasks,
                  b.tasks, percentile(b.add, 99) / percentile(a.add, 99),
                  percentile(b.remove, 99) / percentile(a.remove, 99));
    }
    std::printf("swarmnetd RSS per endpoint: goal <= 1024 B; load average at end %s\n", load_average().c_str());
  } catch (const std::exception& e) {
    std::cerr << "change_cost: " << e.what() << "\n";
    rc = 1;
  }
  cleanup();
  return rc;
}
