#include "ctl/doctor.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "common/api.hpp"
#include "common/api_client.hpp"
#include "common/error.hpp"
#include "common/ipv4.hpp"
#include "kernel/netlink.hpp"
#include "kernel/nftables.hpp"

extern char** environ;

namespace swarmnet::doctor {
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// VXLAN adds 50 bytes to every frame (outer Ethernet, IPv4, UDP, VXLAN).
constexpr unsigned kVxlanOverhead = 50;
// Gossip refuses a packet sealed more than 60 s before or after its
// arrival (the keyring's replay window): at that skew a peer falls silent.
// Half of it leaves room for the clocks to drift while nobody looks.
constexpr int64_t kMaxClockSkewMs = 30'000;

struct ProgramResult {
  int exit_status = -1;  // -1: killed at the timeout or not run
  std::string output;    // its standard output
  std::string error;     // why it did not run
};

// Runs `path` with `env` added to ours and `input` on its standard input,
// for at most `timeout`; its standard error is discarded.
ProgramResult run_program(const std::string& path, const std::vector<std::string>& env, const std::string& input,
                          std::chrono::milliseconds timeout) {
  ProgramResult r;
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return {-1, "", std::strerror(errno)};
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return {-1, "", std::strerror(errno)};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> strings = env;
  for (char** e = environ; *e; ++e) strings.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& s : strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string program = path;
  char* argv[] = {program.data(), nullptr};
  pid_t pid = -1;
  const int spawn_error = ::posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  if (spawn_error != 0) {
    ::close(in[1]);
    ::close(out[0]);
    return {-1, "", std::strerror(spawn_error)};
  }
  // The request is far smaller than a pipe's buffer: it never blocks. A
  // plugin that exits without reading it must not kill us with SIGPIPE
  // (ignored only now: the child was spawned with the default).
  struct sigaction ignore {}, previous {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &previous);
  (void)!::write(in[1], input.data(), input.size());
  ::close(in[1]);
  ::sigaction(SIGPIPE, &previous, nullptr);
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t n = ::read(out[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    if (r.output.size() < (1 << 20)) r.output.append(buffer, static_cast<size_t>(n));
  }
  ::close(out[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    r.error = "no answer within " + std::to_string(timeout.count()) + " ms";
  } else if (WIFEXITED(status)) {
    r.exit_status = WEXITSTATUS(status);
  } else {
    r.error = "killed by signal " + std::to_string(WTERMSIG(status));
  }
  return r;
}

// 0, or the errno of a TCP connection to address:port that failed (or
// ETIMEDOUT after `timeout`).
int tcp_connect(Ipv4Address address, uint16_t port, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(address.value());
  int result = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    result = errno;
    if (result == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (ready == 0) {
        result = ETIMEDOUT;
      } else {
        socklen_t len = sizeof(result);
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &result, &len) != 0) result = errno;
      }
    }
  }
  ::close(fd);
  return result;
}

bool executable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

// The plugin types a CNI configuration (.conf or .conflist) names, the IPAM
// plugins included.
void collect_types(const json::value& v, std::vector<std::string>& types) {
  if (!v.is_object()) return;
  const auto& o = v.get_object();
  if (auto* t = o.if_contains("type"); t && t->is_string()) types.emplace_back(t->get_string());
  if (auto* ipam = o.if_contains("ipam")) collect_types(*ipam, types);
  if (auto* plugins = o.if_contains("plugins"); plugins && plugins->is_array()) {
    for (const auto& p : plugins->get_array()) collect_types(p, types);
  }
}

Check check_plugin(const Options& options, const std::string& name) {
  Check c{"cni", name + " plugin", Status::missing, "", ""};
  std::string dirs;
  for (const auto& d : options.cni_bin_dirs) dirs += (dirs.empty() ? "" : ", ") + d;
  std::optional<fs::path> found;
  for (const auto& d : options.cni_bin_dirs) {
    if (executable(fs::path(d) / name)) {
      found = fs::path(d) / name;
      break;
    }
  }
  if (!found) {
    c.detail = "no executable " + name + " in " + dirs;
    c.fix = "cmake --install build (installs it in /opt/cni/bin), or copy build/bin/" + name + " into one of them";
    return c;
  }
  // What a runtime does first with a plugin it has not used yet.
  ProgramResult r = run_program(found->string(), {"CNI_COMMAND=VERSION"}, R"({"cniVersion": "1.0.0"})",
                                options.timeout);
  json::error_code ec;
  json::value reply = json::parse(r.output, ec);
  const json::value* versions = !ec && reply.is_object() ? reply.get_object().if_contains("supportedVersions") : nullptr;
  if (r.exit_status != 0 || !versions || !versions->is_array()) {
    c.detail = found->string() + " does not answer CNI VERSION (" +
               (r.error.empty() ? "exit status " + std::to_string(r.exit_status) : r.error) + ")";
    c.fix = "reinstall it from this build (cmake --install build)";
    return c;
  }
  std::string list;
  for (const auto& v : versions->get_array()) {
    if (v.is_string()) list += (list.empty() ? "" : " ") + std::string(v.get_string());
  }
  c.status = Status::ok;
  c.detail = found->string() + " answers CNI VERSION (" + list + ")";
  return c;
}

struct Underlay {
  std::string link;
  unsigned mtu = 0;
  std::string how;  // how it was found
};

// The link holding `address`, or the default route's when there is none.
std::optional<Underlay> find_underlay(std::optional<Ipv4Address> address) {
  kernel::NetlinkSocket nl = kernel::NetlinkSocket::open();
  if (address) {
    for (const auto& link : nl.links()) {
      for (const auto& a : nl.addresses(link.name)) {
        if (a.address() == *address) return Underlay{link.name, link.mtu, "holds " + address->str()};
      }
    }
  }
  for (const auto& route : nl.routes()) {
    if (route.destination.length() != 0) continue;
    if (auto link = nl.find_link(route.oif_index)) return Underlay{link->name, link->mtu, "of the default route"};
  }
  return std::nullopt;
}

std::optional<std::pair<Ipv4Address, uint16_t>> parse_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  auto ip = Ipv4Address::try_parse(text.substr(0, colon));
  unsigned long port = 0;
  try {
    port = std::stoul(text.substr(colon + 1));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!ip || port == 0 || port > 65535) return std::nullopt;
  return std::make_pair(*ip, static_cast<uint16_t>(port));
}

std::string str(const json::value& v) {
  return v.is_string() ? std::string(v.get_string()) : json::serialize(v);
}

// The elements of swarmnetd's underlay filter set `members` (table inet
// swarmnet), and whether its underlay-input chain keeps containers off the
// gossip and VXLAN ports. nullopt: no such table (swarmnetd did not set it
// up, or runs with another filter).
struct UnderlayFilter {
  std::vector<Ipv4Address> members;
  bool closed_to_containers = false;
};

std::optional<UnderlayFilter> read_underlay_filter() {
  kernel::NftContext nft;
  UnderlayFilter f;
  try {
    const std::string set = nft.run("list set inet swarmnet members", kernel::NftContext::Output::json);
    json::value v = json::parse(set);
    for (const auto& item : v.at("nftables").as_array()) {
      const auto* s = item.as_object().if_contains("set");
      if (!s) continue;
      const auto* elems = s->as_object().if_contains("elem");
      if (!elems) continue;
      for (const auto& e : elems->as_array()) {
        if (e.is_string()) {
          if (auto ip = Ipv4Address::try_parse(std::string(e.get_string()))) f.members.push_back(*ip);
        }
      }
    }
    const std::string chain = nft.run("list chain inet swarmnet underlay-input", kernel::NftContext::Output::text);
    // The rules that matter name the container bridges and drop.
    std::istringstream lines(chain);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("\"swn-*\"") != std::string::npos && line.find("drop") != std::string::npos) {
        f.closed_to_containers = true;
      }
    }
  } catch (const Error& e) {
    if (e.code() == Errc::not_found) return std::nullopt;
    throw;
  }
  return f;
}

}  // namespace

std::vector<Check> check_cni(const Options& options) {
  std::vector<Check> out;
  Check conf{"cni", "configuration", Status::missing, "", ""};
  std::error_code ec;
  if (!fs::is_directory(options.cni_conf_dir, ec)) {
    conf.detail = "no directory " + options.cni_conf_dir;
    conf.fix = "mkdir -p " + options.cni_conf_dir + " and put a configuration naming swarmnet there "
               "(examples/cni/10-swarmnet.conflist)";
    out.push_back(conf);
  } else {
    std::vector<std::string> ours, broken;
    size_t files = 0;
    std::vector<fs::path> paths;
    for (const auto& entry : fs::directory_iterator(options.cni_conf_dir, ec)) paths.push_back(entry.path());
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
      const auto ext = p.extension();
      if (ext != ".conf" && ext != ".conflist" && ext != ".json") continue;
      ++files;
      std::ifstream in(p);
      std::stringstream text;
      text << in.rdbuf();
      json::error_code parse_error;
      json::value v = json::parse(text.str(), parse_error);
      if (parse_error) {
        broken.push_back(p.filename().string());
        continue;
      }
      std::vector<std::string> types;
      collect_types(v, types);
      if (std::any_of(types.begin(), types.end(), [](const std::string& t) { return t == "swarmnet" || t == "swarmnet-ipam"; })) {
        ours.push_back(p.filename().string());
      }
    }
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
      return s;
    };
    if (!broken.empty()) {
      conf.detail = options.cni_conf_dir + ": not JSON: " + join(broken) + " (a runtime fails on every container)";
      conf.fix = "correct or remove them";
    } else if (ours.empty()) {
      conf.detail = options.cni_conf_dir + " holds " + std::to_string(files) +
                    " configuration(s), none with the swarmnet or swarmnet-ipam plugin";
      conf.fix = "add one (examples/cni/10-swarmnet.conflist names a swarmnet network)";
    } else {
      conf.status = Status::ok;
      conf.detail = options.cni_conf_dir + ": " + join(ours) + " use swarmnet";
    }
    out.push_back(conf);
  }
  out.push_back(check_plugin(options, "swarmnet"));
  out.push_back(check_plugin(options, "swarmnet-ipam"));
  return out;
}

std::vector<Check> check_docker(const Options& options) {
  Check c{"docker", "plugin socket", Status::missing, "", ""};
  std::error_code ec;
  if (!fs::exists(options.docker_socket, ec)) {
    c.status = Status::skipped;
    c.detail = "no dockerd here (no " + options.docker_socket + "): the Docker driver is not needed";
    return {c};
  }
  const std::string fix = "start swarmnet-docker before dockerd (systemctl enable --now swarmnet-docker)";
  try {
    ApiClient plugin(options.docker_plugin_socket, options.timeout);
    ApiResponse r = plugin.request("POST", "/Plugin.Activate");
    std::vector<std::string> implements;
    if (r.body.is_object()) {
      if (const auto* list = r.body.get_object().if_contains("Implements"); list && list->is_array()) {
        for (const auto& i : list->get_array()) implements.push_back(str(i));
      }
    }
    auto has = [&](const char* what) { return std::find(implements.begin(), implements.end(), what) != implements.end(); };
    if (r.status != 200 || !has("NetworkDriver") || !has("IpamDriver")) {
      c.detail = options.docker_plugin_socket + " answers Plugin.Activate without NetworkDriver and IpamDriver (HTTP " +
                 std::to_string(r.status) + ")";
      c.fix = "that socket is not swarmnet-docker's; " + fix;
      return {c};
    }
    c.status = Status::ok;
    c.detail = options.docker_plugin_socket + " answers Plugin.Activate: NetworkDriver, IpamDriver";
  } catch (const Error& e) {
    c.detail = "dockerd runs, but swarmnet-docker does not answer on " + options.docker_plugin_socket + ": " + e.what();
    c.fix = fix;
  }
  return {c};
}

std::vector<Check> check_daemon(const Options& options) {
  std::vector<Check> out;
  ApiClient client(options.daemon_socket, options.timeout);
  json::value status;
  try {
    status = client.call("GET", "/v1/status");
  } catch (const Error& e) {
    out.push_back({"daemon", "swarmnetd", Status::skipped,
                   "swarmnetd is down (" + std::string(e.what()) +
                       "): only this host is checked; peers, networks' MTU and clocks are not",
                   ""});
  }
  const bool up = status.is_object();
  if (up) {
    const auto& s = status.get_object();
    out.push_back({"daemon", "swarmnetd", Status::ok,
                   "up on " + options.daemon_socket + " (" + str(s.at("version")) + ", node " + str(s.at("node_name")) +
                       ", " + str(s.at("networks")) + " network(s))",
                   ""});
  }

  std::optional<Ipv4Address> advertise;
  json::value cluster, nodes;
  if (up) {
    try {
      cluster = client.call("GET", "/v1/cluster");
      if (cluster.at("active").as_bool()) {
        if (auto hp = parse_host_port(str(cluster.at("advertise")))) advertise = hp->first;
        nodes = client.call("GET", "/v1/nodes");
      }
    } catch (const std::exception& e) {
      out.push_back({"daemon", "cluster", Status::missing, std::string("cannot read the cluster's state: ") + e.what(),
                     "see swarmnetd's log"});
    }
  }

  // The underlay's MTU against the overlays': a frame of an overlay's MTU
  // plus VXLAN's 50 bytes must fit, or large packets are lost.
  try {
    auto underlay = find_underlay(advertise);
    if (!underlay) {
      out.push_back({"mtu", "underlay", Status::missing, "no default route and no advertise address: no underlay",
                     "configure the host's network"});
    } else {
      const std::string where = underlay->link + " (" + underlay->how + ")";
      out.push_back({"mtu", "underlay", Status::ok,
                     where + ": MTU " + std::to_string(underlay->mtu) + ", room for overlays of " +
                         std::to_string(underlay->mtu - std::min(underlay->mtu, kVxlanOverhead)),
                     ""});
      if (up) {
        const json::value networks = client.call("GET", "/v1/networks");
        for (const auto& item : networks.as_array()) {
          auto n = json::value_to<api::Network>(item);
          if (n.mtu + kVxlanOverhead <= underlay->mtu) continue;
          out.push_back({"mtu", "network " + n.name, Status::missing,
                         "MTU " + std::to_string(n.mtu) + " + 50 (VXLAN) exceeds " + where + "'s " +
                             std::to_string(underlay->mtu) + ": large packets between hosts are lost",
                         "recreate it with --mtu " + std::to_string(underlay->mtu - kVxlanOverhead) +
                             " or raise the underlay's MTU"});
        }
      }
    }
  } catch (const std::exception& e) {
    out.push_back({"mtu", "underlay", Status::missing, std::string("cannot read the links: ") + e.what(),
                   "run swarmnetctl doctor as root"});
  }

  if (!up) return out;
  if (!cluster.is_object() || !cluster.at("active").as_bool() || !nodes.is_array()) {
    out.push_back({"peer", "-", Status::skipped, "this node is in no cluster: no peers to check", ""});
    return out;
  }

  std::optional<UnderlayFilter> filter;
  std::string filter_error;
  try {
    filter = read_underlay_filter();
  } catch (const std::exception& e) {
    filter_error = e.what();
  }
  if (!filter) {
    out.push_back({"ports", "closed to containers", Status::missing,
                   "swarmnetd's underlay filter (table inet swarmnet) is not there" +
                       (filter_error.empty() ? std::string() : ": " + filter_error) +
                       ": containers can reach the gossip and VXLAN ports, and any host can send VXLAN",
                   "restart swarmnetd and read its log"});
  } else if (!filter->closed_to_containers) {
    out.push_back({"ports", "closed to containers", Status::missing,
                   "chain underlay-input of table inet swarmnet does not drop the container bridges' (swn-*) "
                   "gossip and VXLAN",
                   "restart swarmnetd (it writes the chain at start)"});
  } else {
    out.push_back({"ports", "closed to containers", Status::ok,
                   "the underlay filter drops gossip and VXLAN from the container bridges (swn-*)", ""});
  }

  for (const auto& item : nodes.as_array()) {
    const auto& n = item.as_object();
    if (n.at("self").as_bool()) continue;
    const std::string name = str(n.at("name")), state = str(n.at("status"));
    auto hp = parse_host_port(str(n.at("address")));
    if (state == "left" || !hp) {
      out.push_back({"peer", name, Status::skipped, "left the cluster", ""});
      continue;
    }
    const std::string who = name + " (" + str(n.at("address")) + ")";
    const std::string gossip_fix = "open UDP and TCP " + std::to_string(hp->second) +
                                   " between the members' addresses, both ways, and keep their clocks within 60 s "
                                   "(gossip refuses older packets)";
    if (state != "alive") {
      out.push_back({"peer", name, Status::missing, who + " is " + state + " to this node: its gossip does not reach us",
                     gossip_fix});
    } else if (int err = tcp_connect(hp->first, hp->second, options.timeout)) {
      out.push_back({"peer", name, Status::missing,
                     who + " is alive, but its gossip TCP port does not answer: " + std::strerror(err) +
                         " (state exchanges fail)",
                     gossip_fix});
    } else {
      out.push_back({"peer", name, Status::ok, who + " is alive and its gossip TCP port answers", ""});
    }
    if (const auto* offset = n.if_contains("clock_offset_ms"); offset && state == "alive") {
      const int64_t ms = offset->to_number<int64_t>();
      const std::string text = name + "'s clock is " + std::to_string(ms < 0 ? -ms : ms) + " ms " +
                               (ms < 0 ? "behind" : "ahead of") + " this node's (as its last gossip packet showed)";
      if (ms >= kMaxClockSkewMs || ms <= -kMaxClockSkewMs) {
        out.push_back({"clock", name, Status::missing, text + ": gossip refuses packets 60 s off",
                       "synchronise both clocks (systemd-timesyncd, chrony)"});
      } else {
        out.push_back({"clock", name, Status::ok, text, ""});
      }
    } else if (state == "alive") {
      out.push_back({"clock", name, Status::skipped, "no packet from " + name + " seen yet (or an older swarmnetd)", ""});
    }
    if (filter) {
      const bool member = std::find(filter->members.begin(), filter->members.end(), hp->first) != filter->members.end();
      if (member) {
        out.push_back({"vxlan", name, Status::ok, "VXLAN from " + hp->first.str() + " is accepted by the underlay filter", ""});
      } else if (state == "alive") {
        out.push_back({"vxlan", name, Status::missing,
                       hp->first.str() + " is not in the underlay filter's members: VXLAN from it is dropped",
                       "restart swarmnetd (it writes the members from the membership)"});
      }
    }
  }
  return out;
}

std::vector<Check> run(const Options& options) {
  std::vector<Check> all = check_kernel();
  for (auto part : {check_cni(options), check_docker(options), check_daemon(options)}) {
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

}  // namespace swarmnet::doctor
