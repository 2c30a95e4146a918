// cni_bench: ADD and DEL latency of the swarmnet CNI plugin next to the
// reference bridge + host-local plugins, in the same run, on this machine.
//
// Each iteration makes a fresh network namespace (not timed), runs ADD then
// DEL of one plugin into it (each timed from fork to exit, as a runtime sees
// it), and deletes the namespace; swarmnet and the reference alternate so
// that both see the same machine load. Prints p50/p99/mean and the ratios,
// the time of each plugin answering VERSION (exec and exit, no work: what
// starting the program costs) and the load average before and after.
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/load_average.hpp"
#include "common/api_client.hpp"
#include "common/error.hpp"
#include "kernel/netlink.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using swarmnet::bench::load_average;

struct PluginRun {
  int status = 0;
  std::string out;
  double ms = 0;
};

// Runs a CNI plugin like a runtime does: env + config on stdin, result on stdout.
PluginRun run_plugin(const std::string& path, const std::vector<std::string>& env,
                     const std::string& config) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) throw std::runtime_error("pipe failed");
  auto start = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    std::vector<char*> envp;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    execve(path.c_str(), argv, envp.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  (void)!write(in[1], config.data(), config.size());
  close(in[1]);
  PluginRun r;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) r.out.append(buf, static_cast<size_t>(n));
  close(out[0]);
  waitpid(pid, &r.status, 0);
  r.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

struct Series {
  std::vector<double> add, del;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ADD/DEL latency of the swarmnet CNI plugin against the reference bridge+host-local"};
  int iterations = 200;
  std::string bin_dir = fs::path(argv[0]).parent_path().string();
  std::string ref_dir = "/usr/lib/cni";
  app.add_option("-n,--iterations", iterations, "ADD+DEL cycles per plugin")->capture_default_str();
  app.add_option("--bin-dir", bin_dir, "Where swarmnetd and swarmnet are")->capture_default_str();
  app.add_option("--reference-dir", ref_dir, "Where the reference bridge and host-local are")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (geteuid() != 0) {
    std::cerr << "cni_bench: needs root (it creates network namespaces)\n";
    return 2;
  }
  // swarmnetd and the reference plugin make their bridges, and swarmnetd its
  // nftables tables, in the namespace they run in, and swarmnetd leaves its
  // in place when stopped (a restart keeps the data path): in the host's
  // namespace every run left them behind. In one of the bench's own they go
  // with it when the bench exits.
  if (::unshare(CLONE_NEWNET) != 0 || sh("ip link set lo up") != 0) {
    std::cerr << "cni_bench: cannot make a network namespace of its own\n";
    return 2;
  }
  for (const auto& p : {bin_dir + "/swarmnetd", bin_dir + "/swarmnet", ref_dir + "/bridge",
                        ref_dir + "/host-local"}) {
    if (!fs::exists(p)) {
      std::cerr << "cni_bench: " << p << " not found\n";
      return 2;
    }
  }

  const std::string tag = "swnb" + std::to_string(getpid());
  const fs::path tmp = fs::temp_directory_path() / tag;
  fs::create_directories(tmp);
  const std::string socket = (tmp / "swarmnetd.sock").string();
  const std::string ref_bridge = "swnbref" + std::to_string(getpid() % 100000);
  pid_t daemon = -1;
  std::vector<std::string> namespaces;

  auto cleanup = [&] {
    for (const auto& ns : namespaces) sh("ip netns del " + ns + " 2>/dev/null");
    if (daemon > 0) {
      kill(daemon, SIGTERM);
      waitpid(daemon, nullptr, 0);
    }
    sh("ip link del " + ref_bridge + " 2>/dev/null");
    std::error_code ec;
    fs::remove_all(tmp, ec);
  };

  int rc = 0;
  try {
    daemon = fork();
    if (daemon == 0) {
      execl((bin_dir + "/swarmnetd").c_str(), "swarmnetd", "--state-dir", (tmp / "state").c_str(),
            "--api-socket", socket.c_str(), "--log-level", "warn", nullptr);
      _exit(127);
    }
    swarmnet::ApiClient client(socket, std::chrono::seconds(5));
    for (int i = 0; i < 100 && !fs::exists(socket); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    boost::json::value create = {{"name", "bench"}, {"subnet", "10.199.0.0/16"}};
    client.call("POST", "/v1/networks", &create);
    // A host runs more than one container: one endpoint stays for the whole
    // run, so the network's bridge exists throughout (as the reference
    // plugin's does) instead of being made and removed in every cycle.
    boost::json::value pin = {{"container_id", "bench-resident"}, {"ifname", "eth0"}};
    client.call("POST", "/v1/networks/bench/endpoints", &pin);

    const std::string swarmnet_conf =
        R"({"cniVersion":"1.0.0","name":"bench","type":"swarmnet","daemonSocket":")" + socket + R"("})";
    const std::string ref_conf = R"({"cniVersion":"1.0.0","name":"benchref","type":"bridge","bridge":")" +
                                 ref_bridge +
                                 R"(","isGateway":true,"ipMasq":false,"ipam":{"type":"host-local",)"
                                 R"("subnet":"10.198.0.0/16","dataDir":")" +
                                 (tmp / "host-local").string() + R"("}})";

    Series ours, ref;
    auto cycle = [&](const std::string& plugin, const std::string& conf, const std::string& dir,
                     int i, Series& s) {
      const std::string ns = tag + "-" + std::to_string(i);
      if (sh("ip netns add " + ns) != 0) throw std::runtime_error("ip netns add " + ns + " failed");
      namespaces.push_back(ns);
      std::vector<std::string> env = {"CNI_CONTAINERID=bench" + std::to_string(i),
                                      "CNI_NETNS=/var/run/netns/" + ns, "CNI_IFNAME=eth0",
                                      "CNI_PATH=" + dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
      env.push_back("CNI_COMMAND=ADD");
      auto add = run_plugin(plugin, env, conf);
      if (add.status != 0) throw std::runtime_error(plugin + " ADD failed: " + add.out);
      env.back() = "CNI_COMMAND=DEL";
      auto del = run_plugin(plugin, env, conf);
      if (del.status != 0) throw std::runtime_error(plugin + " DEL failed: " + del.out);
      s.add.push_back(add.ms);
      s.del.push_back(del.ms);
      sh("ip netns del " + ns);
      namespaces.pop_back();
    };

    const std::string load_before = load_average();
    // Warm-up (page cache, first bridge creation), not counted.
    Series warm;
    cycle(bin_dir + "/swarmnet", swarmnet_conf, bin_dir, -1, warm);
    cycle(ref_dir + "/bridge", ref_conf, ref_dir, -2, warm);
    for (int i = 0; i < iterations; ++i) {
      cycle(bin_dir + "/swarmnet", swarmnet_conf, bin_dir, 2 * i, ours);
      cycle(ref_dir + "/bridge", ref_conf, ref_dir, 2 * i + 1, ref);
    }

    // Starting the program alone: VERSION reads nothing and touches nothing.
    std::vector<double> start_ours, start_ref;
    const std::vector<std::string> version_env = {"CNI_COMMAND=VERSION", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    const std::vector<std::pair<std::string, std::vector<double>*>> starts = {
        {bin_dir + "/swarmnet", &start_ours}, {ref_dir + "/bridge", &start_ref}};
    for (int i = 0; i < iterations; ++i) {
      for (const auto& [plugin, into] : starts) {
        auto r = run_plugin(plugin, version_env, "");
        if (r.status != 0) throw std::runtime_error(plugin + " VERSION failed: " + r.out);
        into->push_back(r.ms);
      }
    }

    std::printf("CNI plugin latency, %d ADD+DEL cycles each, fresh netns per cycle\n", iterations);
    std::printf("%-28s %9s %9s %9s\n", "", "p50 ms", "p99 ms", "mean ms");
    auto row = [](const char* name, const std::vector<double>& v) {
      std::printf("%-28s %9.2f %9.2f %9.2f\n", name, percentile(v, 50), percentile(v, 99), mean(v));
    };
    row("swarmnet ADD", ours.add);
    row("bridge+host-local ADD", ref.add);
    row("swarmnet DEL", ours.del);
    row("bridge+host-local DEL", ref.del);
    row("swarmnet VERSION (start)", start_ours);
    row("bridge VERSION (start)", start_ref);
    auto ratio = [](const std::vector<double>& a, const std::vector<double>& b, double p) {
      return percentile(a, p) / percentile(b, p);
    };
    std::printf("ratio swarmnet/reference: ADD p50 %.2f p99 %.2f, DEL p50 %.2f p99 %.2f "
                "(goal: ADD <= 0.30, DEL <= 1.00)\n",
                ratio(ours.add, ref.add, 50), ratio(ours.add, ref.add, 99), ratio(ours.del, ref.del, 50),
                ratio(ours.del, ref.del, 99));
    std::printf("load average: %s before, %s after (%ld CPUs)\n", load_before.c_str(), load_average().c_str(),
                sysconf(_SC_NPROCESSORS_ONLN));
  } catch (const std::exception& e) {
    std::cerr << "cni_bench: " << e.what() << "\n";
    rc = 1;
  }
  cleanup();
  return rc;
}
