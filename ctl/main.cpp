// swarmnetctl: the operator's CLI, a thin client of swarmnetd's API.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>

#include "common/api.hpp"
#include "common/api_client.hpp"
#include "common/error.hpp"
#include "common/port_spec.hpp"
#include "common/version.hpp"
#include "ctl/doctor.hpp"
#include "ctl/events.hpp"
#include "ctl/topology.hpp"

namespace json = boost::json;
using swarmnet::ApiClient;
using swarmnet::url_segment;
namespace api = swarmnet::api;

namespace {

api::ServicePort service_port(const swarmnet::PortSpec& p) {
  return api::ServicePort{p.target, p.protocol, p.published, p.published ? p.publish_mode : std::string()};
}

// Indented JSON for humans (inspect), since the API's output is compact.
void pretty(std::ostream& os, const json::value& v, int indent = 0) {
  const std::string pad(indent, ' ');
  switch (v.kind()) {
    case json::kind::object: {
      const auto& o = v.get_object();
      if (o.empty()) {
        os << "{}";
        return;
      }
      os << "{\n";
      size_t i = 0;
      for (const auto& [k, val] : o) {
        os << pad << "  " << json::serialize(json::value(k)) << ": ";
        pretty(os, val, indent + 2);
        os << (++i < o.size() ? ",\n" : "\n");
      }
      os << pad << "}";
      return;
    }
    case json::kind::array: {
      const auto& a = v.get_array();
      if (a.empty()) {
        os << "[]";
        return;
      }
      os << "[\n";
      for (size_t i = 0; i < a.size(); ++i) {
        os << pad << "  ";
        pretty(os, a[i], indent + 2);
        os << (i + 1 < a.size() ? ",\n" : "\n");
      }
      os << pad << "]";
      return;
    }
    default:
      os << json::serialize(v);
  }
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      std::cout << r[i];
      if (i + 1 < r.size()) std::cout << std::string(width[i] - r[i].size() + 3, ' ');
    }
    std::cout << "\n";
  }
}

// The join token holds the cluster key. On the command line it would be in
// the process list (ps, /proc/PID/cmdline) for every local user to read, so
// it comes from a file, standard input ("-") or the environment; --token
// still works, with a warning.
constexpr const char* kTokenEnv = "SWARMNET_JOIN_TOKEN";

std::string trim(std::string s) {
  const char* space = " \t\r\n";
  s.erase(s.find_last_not_of(space) + 1);
  s.erase(0, s.find_first_not_of(space));
  return s;
}

std::string read_token_file(const std::string& path) {
  std::FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "re");
  const std::string name = path == "-" ? "standard input" : path;
  if (!f) {
    throw swarmnet::Error(swarmnet::Errc::invalid_argument,
                          "cannot read the join token from " + name + ": " + std::strerror(errno));
  }
  // A token is about 80 bytes; more than this is not one (and /dev/zero
  // must not be read forever).
  std::string text(4096, '\0');
  const size_t n = std::fread(text.data(), 1, text.size(), f);
  const bool more = n == text.size() && std::fgetc(f) != EOF;
  const bool failed = std::ferror(f);
  if (f != stdin) std::fclose(f);
  if (failed) {
    throw swarmnet::Error(swarmnet::Errc::invalid_argument, "cannot read the join token from " + name);
  }
  if (more) {
    throw swarmnet::Error(swarmnet::Errc::invalid_argument,
                          name + " is larger than a join token (4 KiB at most)");
  }
  text.resize(n);
  text = trim(text);
  if (text.empty()) {
    throw swarmnet::Error(swarmnet::Errc::invalid_argument, name + " holds no join token");
  }
  return text;
}

// From --token-file, --token or $SWARMNET_JOIN_TOKEN, in that order of
// preference; one of the two options at most.
std::string join_token(const std::string& file, const std::string& arg) {
  if (!file.empty() && !arg.empty()) {
    throw swarmnet::Error(swarmnet::Errc::invalid_argument,
                          "give the join token once: --token-file or --token, not both");
  }
  if (!file.empty()) return read_token_file(file);
  if (!arg.empty()) {
    std::cerr << "swarmnetctl: warning: --token shows the cluster key to every local user in the "
                 "process list; use --token-file FILE, --token-file - (standard input) or "
              << kTokenEnv << "\n";
    return arg;
  }
  const char* env = std::getenv(kTokenEnv);
  if (env && *env) return trim(env);
  throw swarmnet::Error(swarmnet::Errc::invalid_argument,
                        std::string("a join token is needed: --token-file FILE, --token-file - "
                                    "(standard input) or the environment variable ") +
                            kTokenEnv);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"swarmnetctl: manage swarmnet networks through the local swarmnetd."};
  app.require_subcommand(1);
  const char* env_socket = std::getenv("SWARMNET_SOCKET");
  std::string socket = env_socket && *env_socket ? env_socket : api::kDefaultSocket;
  app.add_option("--socket", socket, "swarmnetd API socket (env SWARMNET_SOCKET)")
      ->capture_default_str();
  app.set_version_flag("--version", std::string("swarmnetctl ") + swarmnet::kVersion);

  auto* network = app.add_subcommand("network", "Manage networks");
  network->require_subcommand(1);

  api::NetworkCreate create;
  std::string subnet, gateway, ip_range;
  unsigned mtu = 0;
  auto* net_create = network->add_subcommand("create", "Create a network");
  net_create->add_option("name", create.name, "Network name")->required();
  net_create->add_option("--subnet", subnet, "Subnet in CIDR form (default: next free /24 of 10.0.0.0/8)");
  net_create->add_option("--gateway", gateway, "Gateway address (default: first address of the subnet)");
  net_create->add_option("--ip-range", ip_range,
                         "Where addresses without a static one come from (CIDR inside --subnet, as Docker's "
                         "--ip-range); address blocks are cut so that it holds four");
  net_create->add_option("--mtu", mtu, "MTU (default: underlay MTU minus 50, minus 90 with --encrypted)");
  net_create->add_flag("--internal", create.internal, "No access to the outside");
  net_create->add_flag("--encrypted", create.encrypted,
                       "VXLAN between hosts in IPsec ESP (AES-GCM, keys from the cluster key); needs esp4 in "
                       "every host's kernel");

  std::string format = "table";
  auto* net_ls = network->add_subcommand("ls", "List networks");
  net_ls->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));

  std::string name;
  auto* net_inspect = network->add_subcommand("inspect", "Show a network and its endpoints as JSON");
  net_inspect->add_option("name", name, "Network name or id")->required();
  bool verbose = false;
  net_inspect->add_flag("--verbose,-v", verbose,
                        "Also the network's services with their VIP and tasks on every node (address, node, "
                        "health), and its peers: the nodes that carry it, with their underlay addresses");
  auto* net_rm = network->add_subcommand("rm", "Remove a network (refused while it has endpoints)");
  net_rm->add_option("name", name, "Network name or id")->required();

  auto* endpoint = app.add_subcommand("endpoint", "Inspect endpoints");
  endpoint->require_subcommand(1);
  auto* ep_ls = endpoint->add_subcommand("ls", "List the endpoints of a network");
  ep_ls->add_option("network", name, "Network name or id")->required();
  ep_ls->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));

  auto* status = app.add_subcommand("status", "Show the daemon's status");

  std::vector<std::string> event_filters;
  auto* events = app.add_subcommand(
      "events",
      "Stream what changes in the cluster as this node learns it, one line per event, until interrupted: nodes "
      "(join, suspect, alive, die, leave), networks, endpoints and services (create, update, remove), task "
      "health (health_status) and key rotations (cluster key_rotate). Exit 1 when the daemon cut this client off "
      "for reading too slowly (the last line says so)");
  events->add_option("--format", format, "text (as docker events) or json (one object a line)")
      ->check(CLI::IsMember({"text", "json"}));
  events->add_option("--filter,-f", event_filters,
                     "KEY=VALUE, repeatable (one key's values are alternatives, all keys must match): type "
                     "(node, network, endpoint, service, cluster), action (or event), id (or a prefix), name, "
                     "node, network, service, container");

  auto* cluster = app.add_subcommand("cluster", "Create, join or leave a cluster");
  cluster->require_subcommand(1);
  std::string advertise, token, token_file;
  auto* cl_init = cluster->add_subcommand(
      "init", "Start a cluster with this node; prints the join token on its last line");
  cl_init->add_option("--advertise-addr", advertise, "This node's underlay address")->required();
  std::string ingress_subnet;
  cl_init->add_option("--ingress-subnet", ingress_subnet,
                      "Subnet of the routing mesh's network `ingress` (its nodes' sandboxes and services' ingress "
                      "VIPs); default: from the default address pools when given, else 10.255.0.0/16");
  std::vector<std::string> addr_pools;
  unsigned addr_pool_mask = 24;
  cl_init->add_option("--default-addr-pool", addr_pools,
                      "Where networks created without --subnet come from, cluster-wide (CIDR; repeat for "
                      "several, used in order); default 10.0.0.0/8");
  cl_init->add_option("--default-addr-pool-mask-length", addr_pool_mask,
                      "Length of the subnets cut from the default address pools (at least each pool's, at most 30)")
      ->capture_default_str();
  auto* cl_join = cluster->add_subcommand("join", "Join a cluster");
  cl_join->add_option("--token-file", token_file,
                      "File holding the token printed by `cluster init` (- for standard input); "
                      "or set SWARMNET_JOIN_TOKEN");
  cl_join->add_option("--token", token,
                      "The token itself (visible to local users in the process list: prefer "
                      "--token-file)");
  cl_join->add_option("--advertise-addr", advertise, "This node's underlay address")->required();
  auto* cl_leave = cluster->add_subcommand("leave", "Leave the cluster (others see \"left\")");
  auto* cl_token = cluster->add_subcommand("token", "Print the join token");
  auto* cl_rotate = cluster->add_subcommand(
      "rotate-key", "Add a new primary cluster key and retire the old one, cluster-wide");
  auto* cl_status = cluster->add_subcommand("status", "Show this node's cluster status as JSON");
  auto* cl_force = cluster->add_subcommand(
      "force-new-cluster",
      "Recover a cluster that lost its majority for good: the members out of sight stop counting, so this "
      "node hands out addresses again. Only when they are really gone: a live minority elsewhere would "
      "hand out the same addresses");

  auto* node = app.add_subcommand("node", "Cluster nodes");
  node->require_subcommand(1);
  auto* node_ls = node->add_subcommand("ls", "List the nodes and their state");
  node_ls->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));
  auto* node_rm = node->add_subcommand(
      "rm", "Remove a node that is down for good: free the addresses its containers held (refused while it is "
            "alive; run it where a majority is in sight)");
  node_rm->add_option("node", name, "Name or id (4+ characters of it) of the node")->required();

  auto* service = app.add_subcommand("service", "Manage services (a VIP or DNS round robin over tasks)");
  service->require_subcommand(1);
  std::vector<std::string> svc_networks, svc_ports, svc_publish, svc_publish_rm;
  std::string endpoint_mode = "vip", health_spec;
  unsigned health_interval = 5, health_retries = 3;
  auto* svc_create = service->add_subcommand("create", "Create a service");
  svc_create->add_option("name", name, "Service name (a DNS label)")->required();
  svc_create->add_option("--network", svc_networks, "Network of the service (repeat for several)")->required();
  svc_create->add_option("--endpoint-mode", endpoint_mode, "vip (one balanced address) or dnsrr")
      ->check(CLI::IsMember({"vip", "dnsrr"}))
      ->capture_default_str();
  svc_create->add_option("--port", svc_ports, "A port the tasks serve, PORT[/tcp|/udp] (for SRV records)");
  const char* publish_help =
      "Publish a port outside the cluster, as docker service create takes it: "
      "[mode=host|ingress,][[PUBLISHED]:]TARGET[/tcp|/udp] or "
      "published=PUBLISHED,target=TARGET[,protocol=tcp|udp][,mode=host|ingress]; PUBLISHED and TARGET "
      "may be ranges of equal length (8000-8010:80-90 maps one to one; at most 1000 ports). "
      "host: on the nodes running a task, straight to it; no PUBLISHED: a port is chosen per task, "
      "see service inspect";
  svc_create->add_option("--publish", svc_publish, publish_help);
  svc_create->add_option("--health", health_spec, "Health check: tcp:PORT or http:PORT/PATH");
  svc_create->add_option("--health-interval", health_interval, "Seconds between checks")->capture_default_str();
  svc_create->add_option("--health-retries", health_retries, "Failures in a row before a task is unhealthy")
      ->capture_default_str();
  auto* svc_update = service->add_subcommand("update", "Change a service's published ports");
  svc_update->add_option("name", name, "Service name")->required();
  svc_update->add_option("--publish-add", svc_publish, publish_help);
  svc_update->add_option("--publish-rm", svc_publish_rm, "Stop publishing a target port, TARGET[/tcp|/udp]");
  auto* svc_ls = service->add_subcommand("ls", "List services");
  svc_ls->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));
  auto* svc_inspect = service->add_subcommand("inspect", "Show a service, its VIPs and tasks as JSON");
  svc_inspect->add_option("name", name, "Service name")->required();
  auto* svc_rm = service->add_subcommand("rm", "Remove a service (its containers stay)");
  svc_rm->add_option("name", name, "Service name")->required();
  std::string attach_network, attach_container, attach_ifname = "eth0";
  auto* svc_attach = service->add_subcommand("attach", "Make a container of this host a task of a service");
  svc_attach->add_option("name", name, "Service name")->required();
  auto* svc_detach = service->add_subcommand("detach", "Make a container of this host a task of no service");
  for (auto* c : {svc_attach, svc_detach}) {
    c->add_option("--network", attach_network, "The container's network")->required();
    c->add_option("--container", attach_container, "Container id (as the engine passed it)")->required();
    c->add_option("--ifname", attach_ifname, "Its interface")->capture_default_str();
  }

  auto* lb = app.add_subcommand("lb", "The kernel load balancer of this host");
  lb->require_subcommand(1);
  auto* lb_check = lb->add_subcommand("check", "Compare the kernel's VIPs and backends with what they should be");

  std::string topology_format = "svg", topology_output;
  auto* topology = app.add_subcommand(
      "topology",
      "Draw the cluster: nodes with the containers they run, services (VIPs, published ports) and their tasks, "
      "networks and the nodes they span. SVG through Graphviz's dot (apt-get install graphviz)");
  topology->add_option("--format", topology_format, "svg, png, or dot (the Graphviz text, no dot needed)")
      ->check(CLI::IsMember({"svg", "png", "dot"}))
      ->capture_default_str();
  topology->add_option("-o,--output", topology_output, "Write to this file (default: standard output)");

  swarmnet::doctor::Options doctor_options;
  doctor_options.cni_bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  doctor_options.cni_conf_dir = "/etc/cni/net.d";
  doctor_options.docker_socket = "/var/run/docker.sock";
  doctor_options.docker_plugin_socket = "/run/docker/plugins/swarmnet.sock";
  auto* doctor = app.add_subcommand(
      "doctor",
      "Check this host for what swarmnet needs (kernel features tried in a throwaway network namespace, CNI, "
      "Docker, the daemon, peers, MTU) and say what is missing, with the fix. Exit 0: all there; 1: something "
      "required is missing; 2: only optional features (IPVS, ESP) are missing. Run as root");
  doctor->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));
  doctor->add_option("--cni-bin-dir", doctor_options.cni_bin_dirs, "Where runtimes look for CNI plugins, in order (repeat)")
      ->capture_default_str();
  doctor->add_option("--cni-conf-dir", doctor_options.cni_conf_dir, "CNI configuration directory")->capture_default_str();
  doctor->add_option("--docker-socket", doctor_options.docker_socket,
                     "dockerd's socket (absent: no Docker check)")->capture_default_str();
  doctor->add_option("--docker-plugin-socket", doctor_options.docker_plugin_socket, "swarmnet-docker's socket")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);

  if (doctor->parsed()) {
    doctor_options.daemon_socket = socket;
    const auto checks = swarmnet::doctor::run(doctor_options);
    if (format == "json") {
      std::cout << json::serialize(swarmnet::doctor::to_json(checks)) << "\n";
    } else {
      std::cout << swarmnet::doctor::to_text(checks);
    }
    return swarmnet::doctor::exit_code(checks);
  }

  try {
    if (events->parsed()) {
      swarmnet::EventFilter filter;
      for (const auto& f : event_filters) filter.add(f);
      return swarmnet::ctl::print_events(socket, filter, format == "json" ? "json" : "text");
    }
    ApiClient client(socket);
    if (net_create->parsed()) {
      if (!subnet.empty()) {
        create.subnet = swarmnet::Ipv4Prefix::parse(subnet);
        if (auto why = api::subnet_refusal(*create.subnet)) {
          throw swarmnet::Error(swarmnet::Errc::invalid_argument, *why);
        }
      }
      if (!gateway.empty()) create.gateway = swarmnet::Ipv4Address::parse(gateway);
      if (!ip_range.empty()) create.ip_range = swarmnet::Ipv4Prefix::parse_network(ip_range);
      if (mtu) create.mtu = mtu;
      json::value body = json::value_from(create);
      auto n = json::value_to<api::Network>(client.call("POST", "/v1/networks", &body));
      std::cout << n.name << " " << n.id << " " << n.subnet.str() << "\n";
    } else if (net_ls->parsed()) {
      json::value v = client.call("GET", "/v1/networks");
      if (format == "json") {
        std::cout << json::serialize(v) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{
            {"NAME", "ID", "SUBNET", "GATEWAY", "MTU", "VNI", "ENDPOINTS", "OPTIONS"}};
        for (const auto& item : v.as_array()) {
          auto n = json::value_to<api::Network>(item);
          rows.push_back({n.name, n.id.substr(0, 12), n.subnet.str(), n.gateway.str(),
                          std::to_string(n.mtu), std::to_string(n.vni), std::to_string(n.endpoints),
                          std::string(n.internal ? "internal" : "") +
                              (n.internal && n.encrypted ? "," : "") + (n.encrypted ? "encrypted" : "")});
        }
        print_table(rows);
      }
    } else if (net_inspect->parsed()) {
      json::value n = client.call("GET", "/v1/networks/" + url_segment(name) + (verbose ? "/verbose" : ""));
      json::value eps = client.call("GET", "/v1/networks/" + url_segment(name) + "/endpoints");
      n.as_object()["endpoint_list"] = eps;
      pretty(std::cout, n);
      std::cout << "\n";
    } else if (net_rm->parsed()) {
      client.call("DELETE", "/v1/networks/" + url_segment(name));
      std::cout << name << "\n";
    } else if (ep_ls->parsed()) {
      json::value v = client.call("GET", "/v1/networks/" + url_segment(name) + "/endpoints");
      if (format == "json") {
        std::cout << json::serialize(v) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{
            {"CONTAINER", "IFNAME", "ADDRESS", "MAC", "NODE", "SERVICE"}};
        for (const auto& item : v.as_array()) {
          auto e = json::value_to<api::Endpoint>(item);
          rows.push_back({e.container_id.substr(0, 24), e.ifname, e.address.str(), e.mac,
                          e.node.substr(0, 12), e.service});
        }
        print_table(rows);
      }
    } else if (cl_init->parsed()) {
      json::object body{{"advertise_addr", advertise}};
      if (!ingress_subnet.empty()) body["ingress_subnet"] = ingress_subnet;
      if (!addr_pools.empty()) body["default_addr_pool"] = json::value_from(addr_pools);
      if (cl_init->count("--default-addr-pool-mask-length")) body["default_addr_pool_mask_length"] = addr_pool_mask;
      json::value request = std::move(body);
      json::value r = client.call("POST", "/v1/cluster/init", &request);
      if (const auto* warnings = r.as_object().if_contains("warnings"); warnings && warnings->is_array()) {
        for (const auto& w : warnings->as_array()) {
          if (w.is_string()) std::cerr << "swarmnetctl: warning: " << w.as_string().c_str() << "\n";
        }
      }
      std::cout << "Cluster initialised. To add a node, run on it:\n"
                << "  swarmnetctl cluster join --token-file - --advertise-addr <its address>\n"
                << "with the token below on its standard input (or in a file, or in "
                << kTokenEnv << "):\n"
                << r.at("token").as_string().c_str() << "\n";
    } else if (cl_join->parsed()) {
      json::value body = {{"token", join_token(token_file, token)}, {"advertise_addr", advertise}};
      client.call("POST", "/v1/cluster/join", &body);
      std::cout << "joined\n";
    } else if (cl_leave->parsed()) {
      client.call("POST", "/v1/cluster/leave");
      std::cout << "left\n";
    } else if (cl_token->parsed()) {
      std::cout << client.call("GET", "/v1/cluster/token").at("token").as_string().c_str() << "\n";
    } else if (cl_rotate->parsed()) {
      client.call("POST", "/v1/cluster/rotate-key");
      std::cout << "key rotation started: the new key is distributed, made primary, then the old one "
                   "retired\n";
    } else if (cl_force->parsed()) {
      json::value r = client.call("POST", "/v1/cluster/force-new-cluster");
      std::cout << "forced a new cluster: " << r.at("dropped").to_number<int64_t>()
                << " member(s) out of sight no longer count; this node hands out addresses again\n";
    } else if (cl_status->parsed()) {
      pretty(std::cout, client.call("GET", "/v1/cluster"));
      std::cout << "\n";
    } else if (node_ls->parsed()) {
      json::value v = client.call("GET", "/v1/nodes");
      if (format == "json") {
        std::cout << json::serialize(v) << "\n";
      } else {
        // ESP: whether the node can carry encrypted networks (its reason when not).
        std::vector<std::vector<std::string>> rows{{"ID", "NAME", "ADDRESS", "STATUS", "ESP", ""}};
        for (const auto& item : v.as_array()) {
          const auto& o = item.as_object();
          std::string esp = "-";
          if (const auto* e = o.if_contains("encryption"); e && e->is_string()) esp = std::string(e->as_string());
          if (const auto* why = o.if_contains("encryption_missing"); why && why->is_string()) {
            esp += " (" + std::string(why->as_string()) + ")";
          }
          rows.push_back({std::string(o.at("id").as_string()).substr(0, 12),
                          std::string(o.at("name").as_string()), std::string(o.at("address").as_string()),
                          std::string(o.at("status").as_string()), esp,
                          o.at("self").as_bool() ? "(this node)" : ""});
        }
        print_table(rows);
      }
    } else if (node_rm->parsed()) {
      json::value r = client.call("DELETE", "/v1/nodes/" + name);
      std::cout << "removed node " << r.at("name").as_string().c_str() << ": "
                << r.at("released").to_number<int64_t>() << " endpoint(s) released\n";
    } else if (svc_create->parsed()) {
      api::ServiceCreate create{name, svc_networks, endpoint_mode, {}, {}};
      for (const auto& spec : svc_ports) create.ports.push_back(service_port(swarmnet::parse_port_spec(spec)));
      for (const auto& spec : svc_publish) {
        for (const auto& p : swarmnet::parse_publish_spec(spec)) create.ports.push_back(service_port(p));
      }
      if (!health_spec.empty()) {
        auto colon = health_spec.find(':');
        const std::string kind = health_spec.substr(0, colon);
        std::string rest = colon == std::string::npos ? "" : health_spec.substr(colon + 1);
        std::string path;
        if (auto slash = rest.find('/'); slash != std::string::npos) {
          path = rest.substr(slash);
          rest = rest.substr(0, slash);
        }
        const auto port = swarmnet::parse_port(rest);
        if ((kind != "tcp" && kind != "http") || !port) {
          throw swarmnet::Error(swarmnet::Errc::invalid_argument,
                                "--health " + health_spec + ": expected tcp:PORT or http:PORT/PATH");
        }
        create.health = api::HealthCheck{kind, *port, path, health_interval, health_retries};
      }
      json::value b = json::value_from(create);
      const auto r = json::value_to<api::Service>(client.call("POST", "/v1/services", &b));
      std::cout << r.name << " " << r.id;
      for (const auto& vip : r.vips) std::cout << " " << vip.network << "=" << vip.address;
      std::cout << "\n";
    } else if (svc_update->parsed()) {
      // The daemon takes the whole new list: the current one, less the
      // removed publications, plus the added ones.
      const auto current = json::value_to<api::Service>(client.call("GET", "/v1/services/" + url_segment(name)));
      api::ServiceUpdate update;
      for (const auto& p : current.ports) {
        bool removed = false;
        for (const auto& spec : svc_publish_rm) {
          const swarmnet::PortSpec rm = swarmnet::parse_port_spec(spec);
          removed = removed || (!p.publish_mode.empty() && p.target == rm.target && p.protocol == rm.protocol);
        }
        if (!removed) update.ports.push_back(p);
      }
      for (const auto& spec : svc_publish) {
        for (const auto& p : swarmnet::parse_publish_spec(spec)) update.ports.push_back(service_port(p));
      }
      json::value b = json::value_from(update);
      const auto r = json::value_to<api::Service>(client.call("PATCH", "/v1/services/" + url_segment(name), &b));
      pretty(std::cout, json::value_from(r.ports));
      std::cout << "\n";
    } else if (svc_ls->parsed()) {
      json::value v = client.call("GET", "/v1/services");
      if (format == "json") {
        std::cout << json::serialize(v) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{{"NAME", "ID", "MODE", "VIPS", "TASKS", "HEALTHY", "PUBLISHED"}};
        for (const auto& item : v.as_array()) {
          const auto service = json::value_to<api::Service>(item);
          std::string vips;
          for (const auto& vip : service.vips) vips += (vips.empty() ? "" : ",") + vip.network + "=" + vip.address;
          // As docker service ls: "*:8080->80/tcp" (ingress: every node), "host:9080->80/tcp".
          std::string published;
          for (const auto& p : service.ports) {
            if (p.publish_mode.empty()) continue;
            const unsigned number = p.published.value_or(0);
            published += (published.empty() ? "" : ",") + std::string(p.publish_mode == "host" ? "host:" : "*:") +
                         (number == 0 ? std::string("(per task)") : std::to_string(number)) + "->" +
                         std::to_string(p.target) + "/" + p.protocol;
          }
          rows.push_back({service.name, service.id.substr(0, 12), service.endpoint_mode, vips.empty() ? "-" : vips,
                          std::to_string(service.task_count), std::to_string(service.healthy_count),
                          published.empty() ? "-" : published});
        }
        print_table(rows);
      }
    } else if (svc_inspect->parsed()) {
      pretty(std::cout, client.call("GET", "/v1/services/" + url_segment(name)));
      std::cout << "\n";
    } else if (svc_rm->parsed()) {
      client.call("DELETE", "/v1/services/" + url_segment(name));
      std::cout << name << "\n";
    } else if (svc_attach->parsed() || svc_detach->parsed()) {
      json::value body = json::value_from(api::ServiceAttach{attach_network, attach_container, attach_ifname});
      const std::string target = svc_attach->parsed() ? url_segment(name) : std::string("-");
      client.call("POST", "/v1/services/" + target + "/attach", &body);
      std::cout << attach_container << (svc_attach->parsed() ? " attached to " + name : std::string(" detached")) << "\n";
    } else if (lb_check->parsed()) {
      json::value r = client.call("GET", "/v1/lb/check");
      const auto& diffs = r.at("differences").as_array();
      if (diffs.empty()) {
        std::cout << "lb check: " << r.at("backend").as_string().c_str() << " holds the " << json::serialize(r.at("vips"))
                  << " intended VIP(s), no difference\n";
        return 0;
      }
      for (const auto& d : diffs) std::cout << d.as_string().c_str() << "\n";
      return 4;  // differences: scripts can tell
    } else if (topology->parsed()) {
      json::value nodes = client.call("GET", "/v1/nodes");
      // Outside a cluster the member list is empty: this node alone.
      if (nodes.as_array().empty()) {
        const auto st = json::value_to<api::Status>(client.call("GET", "/v1/status"));
        nodes.as_array().push_back(json::object{
            {"id", st.node_id}, {"name", st.node_name}, {"address", ""}, {"status", "standalone"}, {"self", true}});
      }
      json::value networks = client.call("GET", "/v1/networks");
      json::array endpoints;
      for (const auto& n : networks.as_array()) {
        const std::string net(n.at("name").as_string());
        json::value list = client.call("GET", "/v1/networks/" + url_segment(net) + "/endpoints");
        for (auto& e : list.as_array()) endpoints.push_back(std::move(e));
      }
      json::array services;
      const json::value service_list = client.call("GET", "/v1/services");
      for (const auto& sv : service_list.as_array()) {
        const std::string svc(sv.at("name").as_string());
        services.push_back(client.call("GET", "/v1/services/" + url_segment(svc)));
      }
      const std::string dot = swarmnet::topology::to_dot(
          swarmnet::topology::from_api(nodes, networks, json::value(std::move(endpoints)), json::value(std::move(services))));
      const std::string picture = topology_format == "dot" ? dot : swarmnet::topology::render(dot, topology_format);
      if (topology_output.empty()) {
        std::cout << picture;
      } else {
        std::FILE* f = std::fopen(topology_output.c_str(), "we");
        const bool ok = f && std::fwrite(picture.data(), 1, picture.size(), f) == picture.size();
        if (f && std::fclose(f) != 0) f = nullptr;
        if (!ok || !f) {
          throw swarmnet::Error(swarmnet::Errc::invalid_argument,
                                "cannot write " + topology_output + ": " + std::strerror(errno));
        }
      }
    } else if (status->parsed()) {
      pretty(std::cout, client.call("GET", "/v1/status"));
      std::cout << "\n";
    }
    return 0;
  } catch (const swarmnet::Error& e) {
    std::cerr << "swarmnetctl: " << e.what() << "\n";
    return e.code() == swarmnet::Errc::unavailable ? 3 : 1;
  }
}
