// change_cost: what one task change costs swarmnetd as the node's load grows.
//
// One swarmnetd, alone (no cluster), in a network namespace of its own that
// goes away with it. One network, S services (default 1,000) with a VIP
// each, then tasks added round-robin over the services as endpoints of this
// host (an API POST, as the CNI plugin's ADD makes them, without the veth)
// until each size of --tasks is reached. At each size, SAMPLES times: one
// more task added, then removed, each timed from the request to the reply:
// the daemon answers after the change is in its store and its listeners (the
// balancer, the DNS names, the routing mesh) have programmed it. Then one
// task's health flipped, HEALTH_SAMPLES times each way: the task belongs to
// one more service, with an HTTP health check every second that fails once
// for unhealthy; the bench answers the checker's probes itself, from the
// task's address in the daemon's namespace, alternately 500 and 200, and
// times each flip from just before its answer is written to the
// health_status event, which the daemon sends once the balancer, DNS and
// mesh have the change (its event feed is told last). The wait for the next
// probe (the check's interval) is not counted. Prints p50/p99 per size, the
// ratio between the largest and the smallest size (goal: under 5 ms p99,
// growing at most 1.5x from 1,000 to 10,000 tasks), the time to fill, and
// swarmnetd's resident memory per endpoint (goal: at most 1 kB). With
// --ingress, the daemon is the node of a cluster of one (`cluster init` on
// its loopback) and every service publishes a port in ingress mode, so the
// routing mesh programs each change too.
//
// With --sockets, the daemons of a cluster already running (made by
// bench/cluster_change.sh: real swarmnetd processes in network namespaces)
// instead of a daemon of its own: the services are made on the first, the
// tasks added round-robin over every node, and once every node lists them
// all, each sample is added and removed on the next node in turn and timed
// both to its node's reply and to the last node's event (its time stamp:
// the daemons share this machine's clock), i.e. until the last node has
// programmed it. No health flips there. Root. Env-free; see --help.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/load_average.hpp"
#include "common/api_client.hpp"
#include "common/error.hpp"
#include "common/event.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

using swarmnet::bench::load_average;

constexpr uint16_t kHealthPort = 8080;
constexpr const char* kHealthTask = "htask";

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The wall clock, as the daemons stamp their events.
int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
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

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// GET /v1/events on one daemon, read as it comes.
class EventStream {
 public:
  EventStream(const std::string& socket, const swarmnet::EventFilter& filter) : conn_(socket) {
    parser_.body_limit(boost::none);
    conn_.send_all("GET /v1/events?" + filter.query() + " HTTP/1.1\r\nHost: swarmnetd\r\nConnection: close\r\n\r\n");
    // The daemon subscribes right after sending the header: a change made
    // once it is here is seen.
    const auto deadline = Clock::now() + 10s;
    while (!parser_.is_header_done()) {
      if (!read_some(deadline)) throw std::runtime_error(conn_.where() + " did not answer GET /v1/events");
    }
  }

  // The next event, or nullopt when none came by the deadline.
  std::optional<swarmnet::Event> next(Clock::time_point deadline) {
    for (;;) {
      std::string& body = parser_.get().body();
      if (const size_t nl = body.find('\n'); nl != std::string::npos) {
        const std::string line = body.substr(0, nl);
        body.erase(0, nl + 1);
        if (line.empty()) continue;
        swarmnet::Event e = swarmnet::event_from_json(json::parse(line));
        if (e.type == "events") throw std::runtime_error(conn_.where() + " cut the event stream off: " + line);
        return e;
      }
      if (parser_.is_done()) throw std::runtime_error(conn_.where() + " ended the event stream");
      if (!read_some(deadline)) return std::nullopt;
    }
  }

 private:
  // Reads what the daemon sent into the parser; false when nothing came by
  // the deadline.
  bool read_some(Clock::time_point deadline) {
    char chunk[16384];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{conn_.fd(), POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw std::runtime_error(errno_text("poll"));
      if (r == 0) return false;
      const ssize_t n = ::recv(conn_.fd(), chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::runtime_error(errno_text("reading from " + conn_.where()));
      if (n == 0) throw std::runtime_error(conn_.where() + " closed the event stream");
      buffer_.append(chunk, static_cast<size_t>(n));
      break;
    }
    boost::beast::error_code ec;
    while (!buffer_.empty() && !parser_.is_done()) {
      const size_t used = parser_.put(boost::asio::buffer(buffer_), ec);
      buffer_.erase(0, used);
      if (ec == http::error::need_more) break;
      if (ec) throw std::runtime_error("malformed event stream from " + conn_.where() + ": " + ec.message());
      if (used == 0) break;
    }
    if (parser_.is_header_done() && parser_.get().result_int() != 200) {
      throw std::runtime_error(conn_.where() + " answered GET /v1/events with HTTP " +
                               std::to_string(parser_.get().result_int()));
    }
    return true;
  }

  swarmnet::DaemonConnection conn_;
  http::response_parser<http::string_body> parser_;
  std::string buffer_;
};

swarmnet::EventFilter event_filter(std::initializer_list<const char*> specs) {
  swarmnet::EventFilter f;
  for (const char* s : specs) f.add(s);
  return f;
}

// Runs f() with this thread in the network namespace of process `pid`;
// what f makes there (a socket) stays there.
template <class F>
void in_netns_of(pid_t pid, F f) {
  const int self = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  const int target = ::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
  if (self < 0 || target < 0 || ::setns(target, CLONE_NEWNET) != 0) {
    const std::string why = errno_text("entering swarmnetd's network namespace");
    if (self >= 0) ::close(self);
    if (target >= 0) ::close(target);
    throw std::runtime_error(why);
  }
  ::close(target);
  struct Back {
    int fd;
    ~Back() {
      if (::setns(fd, CLONE_NEWNET) != 0) std::abort();  // never go on in the wrong namespace
      ::close(fd);
    }
  } back{self};
  f();
}

// Stands in for the health task's HTTP server: listens on the task's
// address in the daemon's namespace and answers each probe of the health
// checker with the status it is told.
class HealthServer {
 public:
  HealthServer(pid_t daemon, const std::string& ip) {
    in_netns_of(daemon, [&] {
      fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd_ < 0) throw std::runtime_error(errno_text("socket"));
      const int one = 1;
      ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(kHealthPort);
      ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd_, 16) != 0) {
        const std::string why = errno_text("listening on " + ip + ":" + std::to_string(kHealthPort));
        ::close(fd_);
        throw std::runtime_error(why);
      }
    });
  }
  ~HealthServer() { ::close(fd_); }
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // Answers the next probe with `status`; returns the wall clock just before
  // the answer was written, or 0 when no probe came by the deadline.
  int64_t answer(int status, Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      if (!readable(fd_, deadline)) return 0;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      // The request, whole: a probe that gave up meanwhile is no answer.
      std::string request;
      char buf[1024];
      const auto read_deadline = Clock::now() + 1s;
      while (request.find("\r\n\r\n") == std::string::npos && readable(c, read_deadline)) {
        const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      if (request.find("\r\n\r\n") == std::string::npos) {
        ::close(c);
        continue;
      }
      const std::string reply = "HTTP/1.0 " + std::to_string(status) +
                                (status == 200 ? " OK" : " Internal Server Error") +
                                "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      const int64_t t = wall_ns();
      const ssize_t sent = ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      ::close(c);
      if (sent == static_cast<ssize_t>(reply.size())) return t;
    }
    return 0;
  }

 private:
  static bool readable(int fd, Clock::time_point deadline) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      return r > 0;
    }
  }
  int fd_ = -1;
};

// Whether the health task is healthy, as its service says.
bool health_task_healthy(const swarmnet::ApiClient& client) {
  const json::value s = client.call("GET", "/v1/services/health");
  for (const auto& t : s.at("tasks").as_array()) {
    if (t.at("container_id").as_string() == kHealthTask) return t.at("healthy").as_bool();
  }
  throw std::runtime_error("the health task is not among its service's tasks");
}

struct Flips {
  std::vector<double> down, up;  // ms from the probe's answer to the health_status event
  int missed = 0;                // answers after which no event came
};

// `each` flips of the health task each way, alternately to unhealthy and
// back. The server listens for this round only: between rounds nothing
// answers, the probes are refused and the task stays unhealthy.
Flips time_health_flips(const swarmnet::ApiClient& client, pid_t daemon, const std::string& socket,
                        const std::string& ip, int each) {
  Flips out;
  if (each <= 0) return out;
  HealthServer server(daemon, ip);
  EventStream events(socket, event_filter({"type=endpoint", "action=health_status", "container=htask"}));
  bool healthy = health_task_healthy(client);
  while ((static_cast<int>(out.down.size()) < each || static_cast<int>(out.up.size()) < each) && out.missed < 5) {
    const bool want = !healthy;
    const int64_t t0 = server.answer(want ? 200 : 500, Clock::now() + 10s);
    if (t0 == 0) {
      ++out.missed;
      continue;
    }
    auto e = events.next(Clock::now() + 5s);
    if (!e) {
      ++out.missed;
      healthy = health_task_healthy(client);
      continue;
    }
    const bool now_healthy = e->attributes["health"] == "healthy";
    if (now_healthy == want) (want ? out.up : out.down).push_back(static_cast<double>(e->time_nano - t0) / 1e6);
    healthy = now_healthy;
  }
  return out;
}

struct Sample {
  size_t tasks = 0;
  std::vector<double> add, remove;
  Flips health;
  std::vector<double> add_last, remove_last;  // cluster: until the last node's event
  int unseen = 0;                             // cluster: samples some node never told of
  double fill_s = 0, converge_s = 0;
  long rss_kb = 0;
};

// Polls until done() or the time is up; false when it is up.
template <class F>
bool wait_until(double seconds, F done) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(200ms);
  }
  return true;
}

// The endpoints of network bench that node lists whose container's name
// starts with `prefix` (every node's, as gossip brought them).
size_t count_endpoints(const swarmnet::ApiClient& node, const std::string& prefix) {
  size_t n = 0;
  const json::value all = node.call("GET", "/v1/networks/bench/endpoints");
  for (const auto& e : all.as_array()) {
    if (e.at("container_id").as_string().starts_with(prefix)) ++n;
  }
  return n;
}

// Waits on every node's stream for the event `action` of container `id`;
// returns the latest of their time stamps, or 0 when a node told nothing by
// the deadline.
int64_t last_event(std::vector<std::unique_ptr<EventStream>>& streams, const std::string& action,
                   const std::string& id, Clock::time_point deadline) {
  int64_t last = 0;
  for (auto& s : streams) {
    for (;;) {
      auto e = s->next(deadline);
      if (!e) return 0;
      if (e->action == action && e->attributes[std::string("container")] == id) {
        last = std::max(last, e->time_nano);
        break;
      }
    }
  }
  return last;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The cost of one task change in swarmnetd at growing numbers of tasks (root)"};
  std::string bin_dir = fs::path(argv[0]).parent_path().string();
  int services = 1000;
  std::vector<size_t> sizes = {1000, 10000};
  int samples = 50;
  int health_samples = 20;
  double max_fill_s = 900;
  bool ingress = false;
  std::vector<std::string> sockets;
  double gossip_interval_ms = 0;
  app.add_option("--bin-dir", bin_dir, "Where swarmnetd is")->capture_default_str();
  app.add_option("--services", services, "Services (a VIP each) the tasks spread over")->capture_default_str();
  app.add_option("--tasks", sizes, "Numbers of tasks to measure at, ascending (e.g. 1000,10000)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--samples", samples, "Task additions and removals timed at each size")->capture_default_str();
  app.add_option("--health-samples", health_samples,
                 "Health flips timed each way (to unhealthy, back to healthy) at each size; about 1 s each, the "
                 "check's interval; 0: none")
      ->capture_default_str();
  app.add_option("--max-fill-s", max_fill_s, "Give up filling to the next size (or waiting for the nodes to agree) "
                                             "after this long")
      ->capture_default_str();
  app.add_flag("--ingress", ingress,
               "A cluster of one, every service publishing a port in ingress mode (the routing mesh programs each "
               "change)");
  app.add_option("--sockets", sockets,
                 "The API sockets of a running cluster's daemons (bench/cluster_change.sh), instead of a daemon of "
                 "its own: tasks spread over them, each change timed until the last node has it (no health flips)")
      ->delimiter(',');
  app.add_option("--gossip-interval-ms", gossip_interval_ms,
                 "With --sockets: the daemons' gossip interval, printed beside the figures");
  CLI11_PARSE(app, argc, argv);
  const bool cluster = !sockets.empty();
  if (geteuid() != 0) {
    std::cerr << "change_cost: needs root (swarmnetd runs in a network namespace of its own)\n";
    return 2;
  }
  if (!cluster && !fs::exists(bin_dir + "/swarmnetd")) {
    std::cerr << "change_cost: " << bin_dir << "/swarmnetd not found (--bin-dir)\n";
    return 2;
  }
  if (!std::is_sorted(sizes.begin(), sizes.end()) || sizes.empty() || services < 1) {
    std::cerr << "change_cost: --tasks must be ascending, --services at least 1\n";
    return 2;
  }
  if (cluster) health_samples = 0;

  const fs::path tmp = fs::temp_directory_path() / ("swncc" + std::to_string(getpid()));
  pid_t daemon = 0;
  if (!cluster) {
    fs::create_directories(tmp);
    sockets = {(tmp / "swarmnetd.sock").string()};
    daemon = fork();
    if (daemon == 0) {
      // A network namespace of its own: the bridge, the VIP addresses and the
      // nftables balancer go away with the process.
      if (unshare(CLONE_NEWNET) != 0) _exit(126);
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // it goes with the bench, also when that is interrupted
      // Its loopback up: a cluster's gossip listens there (--ingress), and
      // the health task's address is put there.
      if (std::system("ip link set lo up") != 0) _exit(125);
      execl((bin_dir + "/swarmnetd").c_str(), "swarmnetd", "--state-dir", (tmp / "state").c_str(),
            "--api-socket", sockets[0].c_str(), "--log-level", "warn", nullptr);
      _exit(127);
    }
  }
  auto cleanup = [&] {
    if (daemon > 0) {
      kill(daemon, SIGTERM);
      waitpid(daemon, nullptr, 0);
    }
    std::error_code ec;
    if (!cluster) fs::remove_all(tmp, ec);
  };

  int rc = 0;
  try {
    std::vector<swarmnet::ApiClient> nodes;
    for (const auto& s : sockets) nodes.emplace_back(s, std::chrono::seconds(120));
    const swarmnet::ApiClient& client = nodes.front();
    for (int i = 0; i < 200 && !fs::exists(sockets[0]); ++i) std::this_thread::sleep_for(50ms);
    if (cluster) {
      std::printf("change_cost: a cluster of %zu nodes (gossip interval %.0f ms), %d services%s, load average %s (%u "
                  "CPUs)\n",
                  nodes.size(), gossip_interval_ms, services, ingress ? " publishing a port each in ingress mode" : "",
                  load_average().c_str(), std::thread::hardware_concurrency());
    } else {
      std::printf("change_cost: swarmnetd pid %d, %d services%s, load average %s (%u CPUs)\n", daemon, services,
                  ingress ? " publishing a port each in ingress mode" : "", load_average().c_str(),
                  std::thread::hardware_concurrency());
    }
    if (ingress && !cluster) {
      json::value init = {{"advertise_addr", "127.0.0.1"}};
      client.call("POST", "/v1/cluster/init", &init);
    }
    json::value network = {{"name", "bench"}, {"subnet", "10.200.0.0/16"}};
    client.call("POST", "/v1/networks", &network);
    const long rss_empty = daemon ? rss_kb(daemon) : 0;
    auto make_service = [&](const std::string& name, bool health) {
      json::value create = {{"name", name}, {"networks", json::array{"bench"}}};
      if (ingress) create.as_object()["ports"] = json::array{json::object{{"target", 80}, {"published", 0}}};
      if (health) {
        create.as_object()["health"] = json::object{
            {"kind", "http"}, {"port", kHealthPort}, {"path", "/"}, {"interval_s", 1}, {"retries", 1}};
      }
      client.call("POST", "/v1/services", &create);
    };
    for (int s = 0; s < services; ++s) make_service("svc" + std::to_string(s), false);
    if (cluster) {
      const auto t0 = Clock::now();
      for (const auto& node : nodes) {
        if (!wait_until(max_fill_s, [&] { return node.call("GET", "/v1/services").as_array().size() >=
                                                 static_cast<size_t>(services); })) {
          throw std::runtime_error(node.socket_path() + " did not learn every service in time");
        }
      }
      std::printf("  %d services made on node 1, known to all %zu nodes after %.1f s more\n", services, nodes.size(),
                  ms_since(t0) / 1000);
    } else {
      const long rss_services = rss_kb(daemon);
      std::printf("  %d services made; swarmnetd RSS %ld kB empty, %ld kB with the services\n", services, rss_empty,
                  rss_services);
    }

    auto add_task = [&](const swarmnet::ApiClient& node, const std::string& id, const std::string& service) {
      json::value e = {{"container_id", id}, {"ifname", "eth0"}, {"name", id}, {"service", service}};
      return node.call("POST", "/v1/networks/bench/endpoints", &e);
    };
    auto remove_task = [&](const swarmnet::ApiClient& node, const std::string& id) {
      node.call("DELETE", "/v1/networks/bench/endpoints/" + swarmnet::url_segment(id) + "/eth0");
    };

    // The task whose health flips: of a service of its own with the check,
    // its address on the daemon's loopback, where the bench answers for it.
    std::string health_ip;
    if (health_samples > 0) {
      make_service("health", true);
      const json::value e = add_task(client, kHealthTask, "health");
      const std::string address(e.at("address").as_string());
      health_ip = address.substr(0, address.find('/'));
      in_netns_of(daemon, [&] {
        if (std::system(("ip addr add " + health_ip + "/32 dev lo").c_str()) != 0) {
          throw std::runtime_error("could not put the health task's address " + health_ip + " on lo");
        }
      });
      std::printf("  one more service, health (an HTTP check every 1 s, unhealthy after 1 failure), its task %s at "
                  "%s\n",
                  kHealthTask, health_ip.c_str());
    }

    std::vector<Sample> results;
    size_t tasks = 0;
    const long rss_before_tasks = daemon ? rss_kb(daemon) : 0;
    for (size_t size : sizes) {
      const auto t0 = Clock::now();
      bool gave_up = false;
      while (tasks < size) {
        add_task(nodes[tasks % nodes.size()], "task" + std::to_string(tasks),
                 "svc" + std::to_string(tasks % static_cast<size_t>(services)));
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
      s.rss_kb = daemon ? rss_kb(daemon) : 0;
      std::vector<std::unique_ptr<EventStream>> streams;
      if (cluster) {
        // Every node holds every task before a sample is timed (a backlog of
        // gossip would be timed with it otherwise).
        const auto c0 = Clock::now();
        for (const auto& node : nodes) {
          if (!wait_until(max_fill_s, [&] { return count_endpoints(node, "task") >= tasks; })) {
            throw std::runtime_error(node.socket_path() + " lists " + std::to_string(count_endpoints(node, "task")) +
                                     " of " + std::to_string(tasks) + " tasks after " +
                                     std::to_string(static_cast<int>(max_fill_s)) + " s");
          }
        }
        s.converge_s = ms_since(c0) / 1000;
        for (const auto& socket : sockets) {
          streams.push_back(std::make_unique<EventStream>(socket, event_filter({"type=endpoint"})));
        }
      }
      for (int i = 0; i < samples; ++i) {
        const std::string id = "probe" + std::to_string(i);
        const swarmnet::ApiClient& node = nodes[static_cast<size_t>(i) % nodes.size()];
        const std::string service = "svc" + std::to_string(i % services);
        const int64_t wall_add = wall_ns();
        auto a = Clock::now();
        add_task(node, id, service);
        s.add.push_back(ms_since(a));
        if (cluster) {
          const int64_t last = last_event(streams, "create", id, Clock::now() + 30s);
          if (last) s.add_last.push_back(static_cast<double>(last - wall_add) / 1e6);
          else ++s.unseen;
        }
        const int64_t wall_remove = wall_ns();
        auto r = Clock::now();
        remove_task(node, id);
        s.remove.push_back(ms_since(r));
        if (cluster) {
          const int64_t last = last_event(streams, "remove", id, Clock::now() + 30s);
          if (last) s.remove_last.push_back(static_cast<double>(last - wall_remove) / 1e6);
          else ++s.unseen;
        }
        if (cluster && s.unseen) break;  // the streams are out of step now
      }
      // The max too: a stall of one change in thousands (a snapshot written
      // on the change's path) hides beyond the p99.
      std::printf("  %zu tasks: add p50 %.2f ms p99 %.2f ms max %.2f ms, remove p50 %.2f ms p99 %.2f ms max %.2f ms "
                  "(filled in %.1f s; load %s)\n",
                  tasks, percentile(s.add, 50), percentile(s.add, 99), percentile(s.add, 100), percentile(s.remove, 50),
                  percentile(s.remove, 99), percentile(s.remove, 100), s.fill_s, load_average().c_str());
      if (cluster) {
        std::printf("    until the last of %zu nodes has it (gossip interval %.0f ms; every node agreed %.1f s after "
                    "the fill): add p50 %.1f ms p99 %.1f ms max %.1f ms, remove p50 %.1f ms p99 %.1f ms max %.1f "
                    "ms%s\n",
                    nodes.size(), gossip_interval_ms, s.converge_s, percentile(s.add_last, 50),
                    percentile(s.add_last, 99), percentile(s.add_last, 100), percentile(s.remove_last, 50),
                    percentile(s.remove_last, 99), percentile(s.remove_last, 100),
                    s.unseen ? " (a node never told of a sample: stopped)" : "");
      }
      std::fflush(stdout);
      if (health_samples > 0) {
        s.health = time_health_flips(client, daemon, sockets[0], health_ip, health_samples);
        std::printf("    health flips: to unhealthy p50 %.2f ms p99 %.2f ms (%zu), back p50 %.2f ms p99 %.2f ms "
                    "(%zu)%s (load %s)\n",
                    percentile(s.health.down, 50), percentile(s.health.down, 99), s.health.down.size(),
                    percentile(s.health.up, 50), percentile(s.health.up, 99), s.health.up.size(),
                    s.health.missed ? (", " + std::to_string(s.health.missed) + " answers without an event").c_str()
                                    : "",
                    load_average().c_str());
        std::fflush(stdout);
      }
      results.push_back(std::move(s));
    }

    std::printf("\none task change in swarmnetd (%d services, VIP each, nftables balancer or none%s), %d samples",
                services, ingress ? ", routing mesh" : "", samples);
    if (health_samples > 0) std::printf(", %d health flips each way", health_samples);
    if (cluster) std::printf(", %zu nodes, gossip interval %.0f ms", nodes.size(), gossip_interval_ms);
    std::printf("\n");
    if (cluster) {
      std::printf("%10s %12s %12s %12s %12s %14s %14s %14s %14s\n", "tasks", "add p50 ms", "add p99 ms", "rm p50 ms",
                  "rm p99 ms", "add last p50", "add last p99", "rm last p50", "rm last p99");
      for (const auto& s : results) {
        std::printf("%10zu %12.2f %12.2f %12.2f %12.2f %14.1f %14.1f %14.1f %14.1f\n", s.tasks, percentile(s.add, 50),
                    percentile(s.add, 99), percentile(s.remove, 50), percentile(s.remove, 99),
                    percentile(s.add_last, 50), percentile(s.add_last, 99), percentile(s.remove_last, 50),
                    percentile(s.remove_last, 99));
      }
    } else {
      std::printf("%10s %12s %12s %12s %12s %12s %12s %12s %12s %14s\n", "tasks", "add p50 ms", "add p99 ms",
                  "rm p50 ms", "rm p99 ms", "down p50 ms", "down p99 ms", "up p50 ms", "up p99 ms", "RSS/endpoint");
      for (const auto& s : results) {
        const double per_endpoint =
            s.tasks ? static_cast<double>(s.rss_kb - rss_before_tasks) * 1024.0 / static_cast<double>(s.tasks) : 0;
        std::printf("%10zu %12.2f %12.2f %12.2f %12.2f %12.2f %12.2f %12.2f %12.2f %12.0f B\n", s.tasks,
                    percentile(s.add, 50), percentile(s.add, 99), percentile(s.remove, 50), percentile(s.remove, 99),
                    percentile(s.health.down, 50), percentile(s.health.down, 99), percentile(s.health.up, 50),
                    percentile(s.health.up, 99), per_endpoint);
      }
    }
    if (results.size() >= 2) {
      const auto& a = results.front();
      const auto& b = results.back();
      auto ratio = [](const std::vector<double>& x, const std::vector<double>& y) {
        const double base = percentile(x, 99);
        return base > 0 ? percentile(y, 99) / base : 0.0;
      };
      std::printf("growth %zu -> %zu tasks: add p99 %.2fx, remove p99 %.2fx", a.tasks, b.tasks, ratio(a.add, b.add),
                  ratio(a.remove, b.remove));
      if (health_samples > 0) {
        std::printf(", to unhealthy p99 %.2fx, back p99 %.2fx", ratio(a.health.down, b.health.down),
                    ratio(a.health.up, b.health.up));
      }
      if (cluster) {
        std::printf(", last node add p99 %.2fx, remove p99 %.2fx", ratio(a.add_last, b.add_last),
                    ratio(a.remove_last, b.remove_last));
      }
      std::printf(" (goal: <= 1.5x, p99 < 5 ms on the task's node)\n");
    }
    if (!cluster) std::printf("swarmnetd RSS per endpoint: goal <= 1024 B; ");
    std::printf("load average at end %s\n", load_average().c_str());
  } catch (const std::exception& e) {
    std::cerr << "change_cost: " << e.what() << "\n";
    rc = 1;
  }
  cleanup();
  return rc;
}
