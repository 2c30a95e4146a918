#include "daemon/ingress/ingress.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "daemon/controller.hpp"
#include "daemon/ingress/ingress_sandbox.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

namespace {

std::string port_key(const std::string& protocol, unsigned port) { return protocol + "/" + std::to_string(port); }

bool is_ingress(const ServicePortRecord& p) { return p.publish_mode == "ingress"; }

}  // namespace

bool is_ingress_network(const NetworkRecord& network) { return network.ingress; }

const NetworkRecord* find_ingress_network(const Store& store) {
  for (const auto& [id, e] : store.networks()) {
    if (!e.deleted && is_ingress_network(e.value)) return &e.value;
  }
  return nullptr;
}

const NetworkRecord& ingress_network(const Store& store) {
  if (const NetworkRecord* n = find_ingress_network(store)) return *n;
  throw Error(Errc::unavailable,
              "ingress publishing needs the cluster's ingress network, which `swarmnetctl cluster init` makes "
              "(a node outside a cluster has no routing mesh; publish with mode=host there)");
}

void create_ingress_network(Controller& controller, const Store& store, std::optional<Ipv4Prefix> subnet,
                            bool pools_given) {
  if (find_ingress_network(store)) return;
  api::NetworkCreate ingress;
  ingress.name = kIngressNetworkName;
  // As swarm, whose ingress network comes from its default pool; without
  // pools, the subnet swarmnet has always used.
  ingress.subnet = subnet;
  if (!ingress.subnet && !pools_given) ingress.subnet = Ipv4Prefix::parse(kDefaultIngressSubnet);
  ingress.ingress = true;
  try {
    controller.create_network(ingress);
  } catch (const Error& e) {
    throw Error(e.code(), std::string("the routing mesh's network \"ingress\": ") + e.what() +
                              " (choose another --ingress-subnet, or rename the network that holds the name)");
  }
}

std::optional<std::string> ingress_join_refusal(const NetworkRecord& network, const api::EndpointCreate& req) {
  if (!is_ingress_network(network)) return std::nullopt;
  const bool sandbox = req.owner == api::kOwnerSandbox && req.container_id == kSandboxContainerId;
  const bool vip_reservation = req.owner == api::kOwnerServiceVip && !req.attach;
  if (sandbox || vip_reservation) return std::nullopt;
  return "network \"" + network.name +
         "\" is the routing mesh's: no container joins it (publish a service's port in ingress mode instead)";
}

bool has_ingress_ports(const ServiceRecord& s) { return std::any_of(s.ports.begin(), s.ports.end(), is_ingress); }

std::optional<std::string> ingress_vip_network(const Store& store, const ServiceRecord& s) {
  if (!has_ingress_ports(s)) return std::nullopt;
  return ingress_network(store).id;
}

std::optional<std::string> ingress_vip_reservation(const Store& store, const std::string& service_name) {
  const NetworkRecord* ingress = find_ingress_network(store);
  if (!ingress) return std::nullopt;
  for (const std::string& key : store.index().vip_reservations_of(service_name)) {
    const EndpointRecord* e = store.find_endpoint(key);
    if (e && e->network_id == ingress->id) return key;
  }
  return std::nullopt;
}

void number_published_ports(const Store& store, ServiceRecord& s, const ServiceRecord* before) {
  if (s.mode == ServiceMode::dnsrr && has_ingress_ports(s)) {
    throw Error(Errc::invalid_argument,
                "ports: a dnsrr service cannot publish in ingress mode (the routing mesh balances through a VIP); "
                "publish with mode=host");
  }
  // An ingress port keeps its number through an update unless it was given anew.
  if (before) {
    for (auto& p : s.ports) {
      if (!is_ingress(p) || p.published != 0) continue;
      for (const auto& old : before->ports) {
        if (is_ingress(old) && old.protocol == p.protocol && old.target == p.target) p.published = old.published;
      }
    }
  }
  std::map<std::string, std::string> used;  // "tcp/30080" -> "service web (ingress mode)"
  for (const auto& [id, e] : store.services()) {
    if (e.deleted || e.value.name == s.name) continue;
    for (const auto& p : e.value.ports) {
      if (p.publish_mode.empty() || p.published == 0) continue;
      used.emplace(port_key(p.protocol, p.published), "service " + e.value.name + " (" + p.publish_mode + " mode)");
    }
  }
  for (auto& p : s.ports) {
    if (p.publish_mode.empty()) continue;
    if (is_ingress(p) && p.published == 0) {
      for (unsigned port = kIngressPortFirst; p.published == 0 && port <= kIngressPortLast; ++port) {
        if (!used.count(port_key(p.protocol, port))) p.published = static_cast<uint16_t>(port);
      }
      if (p.published == 0) {
        throw Error(Errc::exhausted, "ports: every ingress port of " + std::to_string(kIngressPortFirst) + "-" +
                                         std::to_string(kIngressPortLast) + " is taken");
      }
    }
    if (p.published == 0) continue;  // host mode: chosen on each node
    const std::string key = port_key(p.protocol, p.published);
    auto it = used.find(key);
    // Host-mode ports of different services may share a number (each on
    // its own tasks' nodes); nothing shares an ingress port's.
    if (it != used.end() && (is_ingress(p) || it->second.find("(ingress") != std::string::npos)) {
      throw Error(Errc::conflict, "ports: " + key + " is already published by " + it->second);
    }
    if (is_ingress(p)) used.emplace(key, "service " + s.name + " (ingress mode)");
  }
}

std::map<std::string, std::string> ingress_ports_taken(const Store& store) {
  std::map<std::string, std::string> taken;
  for (const auto& [id, e] : store.services()) {
    if (e.deleted) continue;
    for (const auto& p : e.value.ports) {
      if (is_ingress(p) && p.published != 0) {
        taken.emplace(port_key(p.protocol, p.published), "service " + e.value.name + " (ingress mode, every node)");
      }
    }
  }
  return taken;
}

std::vector<std::string> ingress_host_links(const Store& store) {
  if (!find_ingress_network(store)) return {};
  return {kGatewayBridge, kGatewayBridgeSandboxLink, kSandboxHostLink};
}

std::optional<std::string> ingress_host_table(const Store& store) {
  if (!find_ingress_network(store)) return std::nullopt;
  return kMeshHostTable;
}

}  // namespace swarmnet::daemon
