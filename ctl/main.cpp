// swarmnetctl: the operator's CLI, a thin client of swarmnetd's API.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include "common/api.hpp"
#include "common/api_client.hpp"
#include "common/error.hpp"
#include "common/version.hpp"

namespace json = boost::json;
using swarmnet::ApiClient;
using swarmnet::url_segment;
namespace api = swarmnet::api;

namespace {

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
  std::string subnet, gateway;
  unsigned mtu = 0;
  auto* net_create = network->add_subcommand("create", "Create a network");
  net_create->add_option("name", create.name, "Network name")->required();
  net_create->add_option("--subnet", subnet, "Subnet in CIDR form (default: next free /24 of 10.0.0.0/8)");
  net_create->add_option("--gateway", gateway, "Gateway address (default: first address of the subnet)");
  net_create->add_option("--mtu", mtu, "MTU (default: underlay MTU minus 50)");
  net_create->add_flag("--internal", create.internal, "No access to the outside");

  std::string format = "table";
  auto* net_ls = network->add_subcommand("ls", "List networks");
  net_ls->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));

  std::string name;
  auto* net_inspect = network->add_subcommand("inspect", "Show a network and its endpoints as JSON");
  net_inspect->add_option("name", name, "Network name or id")->required();
  auto* net_rm = network->add_subcommand("rm", "Remove a network (refused while it has endpoints)");
  net_rm->add_option("name", name, "Network name or id")->required();

  auto* endpoint = app.add_subcommand("endpoint", "Inspect endpoints");
  endpoint->require_subcommand(1);
  auto* ep_ls = endpoint->add_subcommand("ls", "List the endpoints of a network");
  ep_ls->add_option("network", name, "Network name or id")->required();
  ep_ls->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));

  auto* status = app.add_subcommand("status", "Show the daemon's status");

  auto* cluster = app.add_subcommand("cluster", "Create, join or leave a cluster");
  cluster->require_subcommand(1);
  std::string advertise, token;
  auto* cl_init = cluster->add_subcommand(
      "init", "Start a cluster with this node; prints the join token on its last line");
  cl_init->add_option("--advertise-addr", advertise, "This node's underlay address")->required();
  auto* cl_join = cluster->add_subcommand("join", "Join a cluster");
  cl_join->add_option("--token", token, "Token printed by `cluster init`")->required();
  cl_join->add_option("--advertise-addr", advertise, "This node's underlay address")->required();
  auto* cl_leave = cluster->add_subcommand("leave", "Leave the cluster (others see \"left\")");
  auto* cl_token = cluster->add_subcommand("token", "Print the join token");
  auto* cl_rotate = cluster->add_subcommand(
      "rotate-key", "Add a new primary cluster key and retire the old one, cluster-wide");
  auto* cl_status = cluster->add_subcommand("status", "Show this node's cluster status as JSON");

  auto* node = app.add_subcommand("node", "Cluster nodes");
  node->require_subcommand(1);
  auto* node_ls = node->add_subcommand("ls", "List the nodes and their state");
  node_ls->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));

  CLI11_PARSE(app, argc, argv);

  try {
    ApiClient client(socket);
    if (net_create->parsed()) {
      if (!subnet.empty()) create.subnet = swarmnet::Ipv4Prefix::parse(subnet);
      if (!gateway.empty()) create.gateway = swarmnet::Ipv4Address::parse(gateway);
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
                          n.internal ? "internal" : ""});
        }
        print_table(rows);
      }
    } else if (net_inspect->parsed()) {
      json::value n = client.call("GET", "/v1/networks/" + url_segment(name));
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
      json::value body = {{"advertise_addr", advertise}};
      json::value r = client.call("POST", "/v1/cluster/init", &body);
      std::cout << "Cluster initialised. To add a node, run on it:\n"
                << "  swarmnetctl cluster join --token <token below> --advertise-addr <its address>\n"
                << r.at("token").as_string().c_str() << "\n";
    } else if (cl_join->parsed()) {
      json::value body = {{"token", token}, {"advertise_addr", advertise}};
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
    } else if (cl_status->parsed()) {
      pretty(std::cout, client.call("GET", "/v1/cluster"));
      std::cout << "\n";
    } else if (node_ls->parsed()) {
      json::value v = client.call("GET", "/v1/nodes");
      if (format == "json") {
        std::cout << json::serialize(v) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{{"ID", "NAME", "ADDRESS", "STATUS", ""}};
        for (const auto& item : v.as_array()) {
          const auto& o = item.as_object();
          rows.push_back({std::string(o.at("id").as_string()).substr(0, 12),
                          std::string(o.at("name").as_string()), std::string(o.at("address").as_string()),
                          std::string(o.at("status").as_string()),
                          o.at("self").as_bool() ? "(this node)" : ""});
        }
        print_table(rows);
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
