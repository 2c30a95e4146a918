// swarmnetd: the per-host sidecar daemon. See README.md and docs/api.md.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <iostream>

#include "common/api.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "daemon/api_server.hpp"
#include "daemon/cluster.hpp"
#include "daemon/config_file.hpp"
#include "daemon/controller.hpp"
#include "daemon/daemon_metrics.hpp"
#include "daemon/metrics_http.hpp"
#include "daemon/dataplane.hpp"
#include "daemon/encryption.hpp"
#include "daemon/endpoint_reaper.hpp"
#include "daemon/events.hpp"
#include "daemon/health.hpp"
#include "daemon/host_ports.hpp"
#include "daemon/load_balancing.hpp"
#include "daemon/ingress/ingress.hpp"
#include "daemon/ingress/ingress_sandbox.hpp"
#include "daemon/firewall.hpp"
#include "daemon/leftovers.hpp"
#include "lb/ipvs_balancer.hpp"
#include "lb/nft_plan.hpp"
#include "daemon/ingress/routing_mesh.hpp"
#include "daemon/service_discovery.hpp"
#include "daemon/services.hpp"
#include "dns/name_table.hpp"
#include "dns/rate_limit.hpp"
#include "dns/server.hpp"
#include "kernel/xfrm.hpp"
#include "dns/upstream.hpp"
#include "daemon/store.hpp"

namespace {

// One daemon per state directory: a second one would hand out the same
// addresses. flock is released by the kernel when the process dies.
int lock_state_dir(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) swarmnet::throw_errno(swarmnet::Errc::internal, "opening " + path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    throw swarmnet::Error(swarmnet::Errc::conflict,
                          "another swarmnetd is using the state directory " + dir);
  }
  return fd;
}

// Every gossip stream, API client and DNS/TCP client holds a descriptor
// while it lasts; the usual soft limit (1024) is low for a busy host, while
// the hard limit is what the administrator allows (LimitNOFILE in the
// systemd unit). The gossip and API accept loops cap and back off on their
// own when even that runs out.
void raise_descriptor_limit() {
  rlimit l{};
  if (::getrlimit(RLIMIT_NOFILE, &l) != 0) return;
  const rlim_t before = l.rlim_cur;
  if (l.rlim_cur < l.rlim_max) {
    l.rlim_cur = l.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &l) != 0) {
      spdlog::warn("descriptors: could not raise the soft limit {} to {}: {}", before, l.rlim_max,
                   std::strerror(errno));
      return;
    }
  }
  spdlog::info("descriptors: limit {} (soft limit was {})", l.rlim_cur, before);
}

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "swarmnetd: swarmnet's per-host daemon. Keeps the networks, endpoints and their\n"
      "addresses (journaled in --state-dir) and shares them with the other nodes by\n"
      "encrypted gossip; programs this host's bridges, VXLAN overlay and packet\n"
      "filter; serves the HTTP/JSON API that the CNI plugins and swarmnetctl call."};
  std::string state_dir = swarmnet::api::kDefaultStateDir;
  std::string socket = swarmnet::api::kDefaultSocket;
  std::string log_level = "info";
  std::string log_file;
  std::string node_name = hostname();
  uint16_t vxlan_port = 4789;
  swarmnet::daemon::ClusterOptions cluster_options;
  app.add_option("--state-dir", state_dir, "Directory for the journal and snapshot")
      ->capture_default_str();
  app.add_option("--api-socket", socket, "Unix socket of the API (mode 0600)")->capture_default_str();
  app.add_option("--node-name", node_name, "Name of this node")->capture_default_str();
  app.add_option("--gossip-port", cluster_options.gossip_port,
                 "TCP and UDP port of the cluster's gossip")
      ->capture_default_str();
  auto ms = [](double v) {
    return std::chrono::duration_cast<swarmnet::gossip::Duration>(std::chrono::duration<double, std::milli>(v));
  };
  double probe_ms = 1000, gossip_ms = 200, push_pull_s = 30;
  unsigned suspicion_mult = 4;
  int64_t tombstone_s = swarmnet::daemon::Store::kDefaultTombstoneSeconds;
  app.add_option("--probe-interval-ms", probe_ms, "Gossip: failure-detection probe interval")
      ->capture_default_str();
  app.add_option("--gossip-interval-ms", gossip_ms, "Gossip: dissemination interval")
      ->capture_default_str();
  app.add_option("--suspicion-mult", suspicion_mult,
                 "Gossip: a suspect is declared dead after mult x log10(nodes) x probe interval")
      ->capture_default_str();
  app.add_option("--push-pull-interval-s", push_pull_s, "Gossip: full state exchange interval")
      ->capture_default_str();
  int64_t reclaim_s = 24 * 3600;
  app.add_option("--reclaim-after-s", reclaim_s,
                 "A node gone this long loses its address blocks and endpoints to the cluster")
      ->capture_default_str();
  app.add_option("--tombstone-ttl-s", tombstone_s, "How long deletions are remembered")
      ->capture_default_str();
  int64_t key_rotation_s = 12 * 3600;
  app.add_option("--key-rotation-interval-s", key_rotation_s,
                 "Rotate the cluster key (gossip, and encrypted networks' IPsec keys derived from it) when it "
                 "is this old; done by one node (0: only `swarmnetctl cluster rotate-key`)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  int64_t key_rotation_wait_s = 15 * 60;
  app.add_option("--key-rotation-wait-s", key_rotation_wait_s,
                 "A key rotation takes each step once every node holds the keys of the one before, waiting at "
                 "most this long for a node that is down; one down longer must rejoin with a current token")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  int64_t reap_s = 300;
  app.add_option("--reap-after-s", reap_s,
                 "A CNI endpoint whose network namespace has been gone this long without a DEL is "
                 "released (0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--vxlan-port", vxlan_port, "UDP port of the overlay's VXLAN tunnels")
      ->capture_default_str();
  bool dns_enabled = true;
  uint16_t dns_port = 53;
  uint32_t dns_ttl = 2;
  unsigned dns_rate = 30000;
  app.add_flag("!--no-dns", dns_enabled,
               "Serve no DNS (containers then get no nameserver from swarmnet)");
  app.add_option("--dns-port", dns_port,
                 "Port of the DNS server at each network's gateway address (resolv.conf needs 53)")
      ->capture_default_str();
  app.add_option("--dns-ttl", dns_ttl, "TTL of swarmnet's DNS answers, seconds")->capture_default_str();
  std::vector<std::string> dns_upstreams;
  app.add_option("--dns-upstream", dns_upstreams,
                 "Nameserver for outside names, IP[:PORT] (repeat for several; default: those of "
                 "/etc/resolv.conf)");
  app.add_option("--dns-rate-limit", dns_rate,
                 "DNS queries per second answered for one container; up to a quarter as many more "
                 "are answered REFUSED (the client fails fast), and UDP past that is dropped by "
                 "the firewall (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 10'000'000u));
  std::string lb_backend = "auto";
  app.add_option("--lb-backend", lb_backend,
                 "Service VIP balancer: auto (IPVS where the kernel has it, else nftables), ipvs, "
                 "nftables, or none")
      ->capture_default_str();
  std::string gateway_bridge_subnet = swarmnet::daemon::kDefaultGatewayBridgeSubnet;
  app.add_option("--gateway-bridge-subnet", gateway_bridge_subnet,
                 "Subnet of the gateway bridge swn-gwbridge between this host and its ingress sandbox "
                 "(the host takes .1, the sandbox .2); local to the host")
      ->capture_default_str();
  std::string ingress_client_address = "keep";
  app.add_option("--ingress-client-address", ingress_client_address,
                 "What tasks see as the client of a request through the routing mesh: keep (the client's "
                 "own address) or masquerade (this node's ingress sandbox, as in swarm)")
      ->capture_default_str()
      ->check(CLI::IsMember({"keep", "masquerade"}));
  std::string metrics_addr;
  app.add_option("--metrics-addr", metrics_addr,
                 "Serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9476 or [::1]:9476 "
                 "(off unless given; containers never reach the port, whatever the address)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")->capture_default_str();
  app.add_option("--log-file", log_file, "Also log to this file");
  app.set_version_flag("--version", std::string("swarmnetd ") + swarmnet::kVersion);
  std::string config_path;
  app.add_option("--config", config_path,
                 "Read settings from this file: `key = value` lines, each key a long option above without "
                 "its dashes (`state-dir = /var/lib/swarmnet`, `no-dns = true`; repeat a key for options "
                 "taking several values); '#' starts a comment line. Options on the command line win")
      ->configurable(false);
  CLI11_PARSE(app, argc, argv);
  if (!config_path.empty()) {
    try {
      swarmnet::config_file::load(app, config_path);
    } catch (const swarmnet::Error& e) {
      std::cerr << "swarmnetd: " << e.what() << "\n";
      return 2;
    }
  }
  cluster_options.gossip.probe_interval = ms(probe_ms);
  cluster_options.gossip.probe_timeout = ms(probe_ms / 2);
  cluster_options.gossip.gossip_interval = ms(gossip_ms);
  cluster_options.gossip.suspicion_mult = suspicion_mult;
  cluster_options.gossip.push_pull_interval = ms(push_pull_s * 1000);
  cluster_options.reclaim_after = std::chrono::seconds(reclaim_s);
  cluster_options.key_rotation_interval = std::chrono::seconds(key_rotation_s);
  cluster_options.key_rotation_wait = std::chrono::seconds(key_rotation_wait_s);

  try {
    swarmnet::init_logging("swarmnetd", log_level, log_file);
    raise_descriptor_limit();
    int lock_fd = lock_state_dir(state_dir);
    (void)lock_fd;  // held until exit

    std::optional<boost::asio::ip::tcp::endpoint> metrics_endpoint;
    if (!metrics_addr.empty()) metrics_endpoint = swarmnet::daemon::parse_metrics_address(metrics_addr);
    swarmnet::daemon::Store store(state_dir, tombstone_s);
    // What changes from here on is an event (GET /v1/events).
    swarmnet::daemon::EventBus event_bus;
    swarmnet::daemon::StateEvents state_events(store, event_bus);
    // Before every part it watches: they keep references into its registry.
    swarmnet::daemon::DaemonMetrics metrics;
    metrics.watch_addresses(store);
    // The kernel drops only what the DNS server would not answer at all
    // (dns/rate_limit.hpp): the excess it refuses must reach it.
    const unsigned dns_ceiling = dns_enabled ? swarmnet::dns::SourceLimiter::ceiling(dns_rate) : 0;
    auto dataplane = swarmnet::daemon::make_linux_dataplane(vxlan_port, dns_ceiling, cluster_options.gossip_port,
                                                            metrics_endpoint ? metrics_endpoint->port() : 0);
    // Before the networks are programmed: a stale bridge holding the gateway
    // address of one of them would take its traffic.
    swarmnet::daemon::remove_stale_links(store);
    swarmnet::daemon::Controller controller(store, *dataplane, node_name);
    controller.set_dns_enabled(dns_enabled);
    // Encrypted networks need ESP; tried once, in a namespace of its own.
    std::optional<std::string> esp_missing = swarmnet::kernel::esp_missing();
    if (esp_missing) {
      spdlog::warn("encrypted networks unavailable on this node: {}", *esp_missing);
    } else {
      spdlog::info("encrypted networks available: the kernel has ESP with AES-GCM");
    }
    swarmnet::daemon::Encryption encryption(esp_missing ? nullptr : swarmnet::daemon::make_xfrm_kernel(),
                                            esp_missing, vxlan_port);
    controller.set_encryption(&encryption);
    controller.reconcile();

    // Service discovery: its own thread; the table follows the store.
    swarmnet::dns::NameTable names(dns_ttl);
    std::optional<swarmnet::dns::Server> dns_server;
    std::optional<swarmnet::daemon::ServiceDiscovery> discovery;
    std::optional<swarmnet::dns::Upstream> upstream;  // lives on the DNS thread's io_context
    // Declared after `upstream`, so destroyed before it, also when an
    // exception unwinds: the DNS thread stops before the forwarder goes.
    struct StopDnsFirst {
      std::optional<swarmnet::dns::Server>& server;
      ~StopDnsFirst() {
        if (server) server->stop();
      }
    } stop_dns_first{dns_server};
    if (dns_enabled) {
      dns_server.emplace(names, swarmnet::dns::ServerOptions{.port = dns_port, .queries_per_second = dns_rate});
      discovery.emplace(
          store, [&controller](const std::string& node) { return controller.is_alive(node); }, names, *dns_server);
      swarmnet::dns::Upstream::Options up;
      for (const std::string& spec : dns_upstreams) {
        const auto colon = spec.find(':');
        const auto ip = swarmnet::Ipv4Address::try_parse(spec.substr(0, colon));
        const auto port = colon == std::string::npos ? std::optional<uint16_t>(53)
                                                     : swarmnet::parse_port(spec.substr(colon + 1));
        if (!ip || !port) {
          throw swarmnet::Error(swarmnet::Errc::invalid_argument,
                                "--dns-upstream " + spec + ": expected IP or IP:PORT");
        }
        up.servers.emplace_back(*ip, *port);
      }
      up.exclude = dns_server->listeners();  // resolv.conf pointing at ourselves must not loop
      upstream.emplace(dns_server->io(), up);
      dns_server->set_forwarder(metrics.time_upstream([&u = *upstream](std::span<const uint8_t> q, bool tcp,
                                                                       swarmnet::dns::ForwardDone done) {
        u.forward(q, tcp, std::move(done));
      }));
      metrics.watch_dns(*dns_server);
      std::string servers;
      for (const auto& s : upstream->servers()) servers += (servers.empty() ? "" : ", ") + s;
      spdlog::info("DNS: outside names go to {}", servers.empty() ? "(no nameserver)" : servers);
      dns_server->start();
      spdlog::info("DNS: {} names, listening on {} gateway address(es) port {}", names.name_count(),
                   dns_server->listeners().size(), dns_port);
    }

    // Services: VIPs balanced by the kernel, health checks of local tasks,
    // host-mode published ports.
    swarmnet::daemon::Services services(store, controller);
    swarmnet::kernel::PublishedPorts published_ports(swarmnet::daemon::kHostPortOwner);
    swarmnet::daemon::HostPorts host_ports(store, published_ports);
    controller.set_endpoint_completer([&host_ports](swarmnet::daemon::EndpointRecord& e) { host_ports.complete(e); });
    host_ports.resync();
    metrics.watch_host_ports(store);
    std::unique_ptr<swarmnet::lb::Balancer> balancer;
    std::optional<swarmnet::daemon::LoadBalancing> load_balancing;
    if (lb_backend != "none") {
      balancer = swarmnet::daemon::choose_balancer(lb_backend);
      load_balancing.emplace(store, controller, *balancer);
      load_balancing->resync();
      metrics.watch_load_balancing(*load_balancing, store);
    } else {
      swarmnet::daemon::remove_stale_vips();
    }
    {
      // A balancer's table left by a run with another backend (or none)
      // would still DNAT its old VIPs.
      std::set<std::string> tables{std::string(swarmnet::daemon::firewall_script::kTable)};
      if (auto mesh = swarmnet::daemon::ingress_host_table(store)) tables.insert(*mesh);
      if (balancer) {
        tables.insert(std::string(balancer->name() == "ipvs" ? swarmnet::lb::kIpvsTable
                                                             : std::string_view(swarmnet::lb::nft::kTable)));
      }
      swarmnet::daemon::remove_stale_tables(tables);
    }
    // The routing mesh: every node answers on every ingress port.
    std::unique_ptr<swarmnet::daemon::MeshKernel> mesh_kernel;
    std::optional<swarmnet::daemon::RoutingMesh> routing_mesh;
    if (lb_backend != "none") {
      mesh_kernel = swarmnet::daemon::make_linux_mesh_kernel();
      routing_mesh.emplace(store, controller, *mesh_kernel,
                           swarmnet::Ipv4Prefix::parse_network(gateway_bridge_subnet), lb_backend,
                           ingress_client_address == "keep");
      routing_mesh->start();
      metrics.watch_routing_mesh(*routing_mesh);
    } else {
      spdlog::info("routing mesh: off (--lb-backend none)");
    }

    boost::asio::io_context io(1);
    swarmnet::daemon::HealthChecker health(io, store);
    health.start();
    swarmnet::daemon::EndpointReaper reaper(io, store, controller, std::chrono::seconds(reap_s));
    reaper.start();
    // A compaction's snapshot is written by a child process (store.hpp):
    // finished here when no change comes to finish it.
    boost::asio::steady_timer compaction_timer(io);
    std::function<void()> poll_compaction = [&] {
      compaction_timer.expires_after(std::chrono::milliseconds(200));
      compaction_timer.async_wait([&](const boost::system::error_code& ec) {
        if (ec) return;
        store.poll_compaction();
        poll_compaction();
      });
    };
    poll_compaction();
    swarmnet::daemon::Cluster cluster(io, store, controller, state_dir, node_name, cluster_options);
    state_events.set_node_names([&cluster](const std::string& id) { return cluster.name_of(id); });
    cluster.set_observer(swarmnet::daemon::Cluster::Observer{
        .keyring_changed = [&state_events](uint64_t version, size_t keys,
                                           const std::string& step) { state_events.keyring_changed(version, keys, step); }});
    cluster.set_encryption(&encryption);
    cluster.resume();
    metrics.watch_cluster(cluster);
    // Without a cluster to resume, VXLAN is refused from everyone (a set
    // left by an earlier run is emptied).
    controller.overlay().sync_underlay_peers();
    // Every route of the API, in one table (daemon/api_routes.hpp).
    swarmnet::daemon::Router router(&controller.ipam());
    swarmnet::daemon::add_all_routes(
        router, swarmnet::daemon::ApiParts{.controller = controller,
                                           .store = store,
                                           .services = services,
                                           .cluster = &cluster,
                                           .events = &event_bus,
                                           .load_balancing = load_balancing ? &*load_balancing : nullptr,
                                           .dns = dns_server ? &*dns_server : nullptr,
                                           .dns_rate_limit = dns_rate});
    swarmnet::daemon::ApiServer server(io, router, socket);
    metrics.watch_api(server);
    std::optional<swarmnet::daemon::MetricsServer> metrics_server;
    if (metrics_endpoint) metrics_server.emplace(io, *metrics_endpoint, metrics.registry());
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: shutting down", sig);
      server.close();
      if (metrics_server) metrics_server->close();
      io.stop();
    });
    spdlog::info("swarmnetd {} node {} ({}) state {}", swarmnet::kVersion, store.node_id(),
                 node_name, state_dir);
    io.run();
    store.compact();
    spdlog::info("stopped");
    return 0;
  } catch (const swarmnet::Error& e) {
    spdlog::critical("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::critical("unexpected: {}", e.what());
    return 1;
  }
}
