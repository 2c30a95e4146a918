// swarmnet-docker: Docker's remote NetworkDriver and IpamDriver for
// swarmnet, a resident server that dockerd calls on
// /run/docker/plugins/swarmnet.sock. Thin: each call becomes requests to
// the local swarmnetd, plus the veth pair and published-port rules on this
// host.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "common/api_client.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "kernel/vxlan.hpp"
#include "plugin/docker/container_names.hpp"
#include "common/files.hpp"
#include "kernel/nftables.hpp"
#include "plugin/docker/dns_redirect.hpp"
#include "plugin/docker/driver.hpp"
#include "plugin/docker/publisher.hpp"
#include "plugin/docker/server.hpp"

namespace swarmnet::docker {
namespace {

class SwarmnetdApi : public DaemonApi {
 public:
  explicit SwarmnetdApi(std::string socket) : client_(std::move(socket)) {}
  json::value call(const std::string& method, const std::string& target,
                   const json::value* body) override {
    return client_.call(method, target, body);
  }

 private:
  ApiClient client_;
};

class NetlinkHostLinks : public HostLinks {
 public:
  NetlinkHostLinks() : sock_(kernel::NetlinkSocket::open()), here_(kernel::Netns::current()) {}

  void create_pair(const std::string& host_end, const std::string& container_end, unsigned mtu,
                   const std::string& mac, const std::string& bridge) override {
    // Left over from an attempt that Docker gave up on.
    sock_.delete_link(host_end);
    sock_.delete_link(container_end);
    sock_.create_veth(host_end, container_end, here_, mtu, mac);
    try {
      sock_.set_master(host_end, bridge);
      kernel::set_port_hairpin(sock_, host_end, true);  // a task reaching its own service's VIP
      sock_.set_up(host_end);
    } catch (...) {
      sock_.delete_link(host_end);
      throw;
    }
  }
  bool remove(const std::string& name) override { return sock_.delete_link(name); }

 private:
  kernel::NetlinkSocket sock_;
  kernel::Netns here_;
};

int run(int argc, char** argv) {
  CLI::App app{"swarmnet-docker: swarmnet as Docker's remote network driver and IPAM driver"};
  std::string socket = kDefaultPluginSocket;
  std::string daemon_socket = api::kDefaultSocket;
  std::string state_dir = std::string(api::kDefaultStateDir) + "/docker";
  std::string docker_socket = kDefaultDockerSocket;
  std::string host_resolv_conf = "/etc/resolv.conf";
  std::string log_level = "info";
  std::string log_file;
  app.add_option("--socket", socket, "where dockerd finds the plugin")->capture_default_str();
  app.add_option("--daemon-socket", daemon_socket, "swarmnetd's API socket")->capture_default_str();
  app.add_option("--state-dir", state_dir,
                 "what the plugin remembers (Docker network and pool ids)")
      ->capture_default_str();
  app.add_option("--docker-socket", docker_socket,
                 "dockerd's API, where container names and labels are read (\"\" = never)")
      ->capture_default_str();
  app.add_option("--host-resolv-conf", host_resolv_conf,
                 "the resolv.conf dockerd reads: queries Docker's embedded DNS forwards to its "
                 "nameservers from a swarmnet network are answered by swarmnetd, so Docker containers "
                 "resolve swarmnet's names without --dns (\"\" = never; with swarmnetd --no-dns)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_option("--log-file", log_file, "also log to this file");
  app.set_version_flag("--version", std::string("swarmnet-docker ") + kVersion);
  CLI11_PARSE(app, argc, argv);

  init_logging("swarmnet-docker", log_level, log_file);
  // Signals are taken by one thread with sigwait; block them everywhere first.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  try {
    SwarmnetdApi daemon(daemon_socket);
    NetlinkHostLinks links;
    NftPortPublisher publisher;
    StateDir state(state_dir);
    std::unique_ptr<DockerEndpointNamer> namer;
    if (!docker_socket.empty()) namer = std::make_unique<DockerEndpointNamer>(docker_socket, daemon);
    Driver driver(daemon, links, publisher, state, namer.get());
    // Before the server starts and after it stops: libnftables is used from
    // one thread at a time.
    std::optional<kernel::NftContext> nft;
    if (!host_resolv_conf.empty()) {
      const auto text = read_file(host_resolv_conf);
      if (!text) throw Error(Errc::invalid_argument, "--host-resolv-conf " + host_resolv_conf + ": cannot read it");
      const auto upstreams = docker_upstreams(*text);
      nft.emplace();
      nft->run(dns_redirect_script(upstreams));
      std::string list;
      for (const auto& a : upstreams) list += " " + a.str();
      spdlog::info("Docker's embedded DNS forwarding to{} is answered by swarmnetd (table ip {})", list,
                   kDnsRedirectTable);
    }
    PluginServer server(driver, socket);
    spdlog::info("swarmnet-docker {} on {} (swarmnetd {}, state {})", kVersion, socket,
                 daemon_socket, state_dir);
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&signals, &sig);
      spdlog::info("signal {}: stopping", sig);
      server.stop();
    });
    server.run();
    waiter.join();
    if (nft) nft->run(dns_redirect_removal());
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    std::cerr << "swarmnet-docker: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace
}  // namespace swarmnet::docker

int main(int argc, char** argv) {
  return swarmnet::docker::run(argc, argv);
}
