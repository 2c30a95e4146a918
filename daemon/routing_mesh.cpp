#include "daemon/routing_mesh.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/log.hpp"
#include "daemon/services.hpp"

namespace swarmnet::daemon {

RoutingMesh::RoutingMesh(Store& store, Controller& controller, Ipv4Prefix gateway_subnet, std::string lb_backend,
                         bool keep_client_address)
    : store_(store),
      controller_(controller),
      gateway_subnet_(gateway_subnet),
      lb_backend_(std::move(lb_backend)),
      keep_client_address_(keep_client_address) {
  subscription_ = store_.feed().subscribe(Stage::routing_mesh, [this](const Change& c) { on_change(c); });
}

RoutingMesh::~RoutingMesh() = default;

void RoutingMesh::start() {
  // The sandbox's endpoint, written by join(), reaches this class (and the
  // others) through the feed once the sandbox exists.
  auto hold = store_.feed().hold();
  if (join()) spdlog::info("routing mesh: this node answers on every ingress port");
  program();
}

void RoutingMesh::on_change(const Change& c) {
  if (c.is(TableId::cursors)) return;
  // After a failure other than a missing address block, only a change of
  // the networks or of the membership is worth another try (not every
  // health report).
  if (!sandbox_ && (!join_failed_ || c.is(TableId::networks) || c.kind == Change::Kind::membership)) join();
  program();
}

// This node's place on the ingress network: its endpoint there (one address
// from the cluster IPAM) and the sandbox behind it. False until both exist.
bool RoutingMesh::join() {
  if (sandbox_) return true;
  const NetworkRecord* ingress = store_.find_ingress_network();
  if (!ingress) return false;
  const NetworkRecord network = *ingress;
  try {
    api::EndpointCreate req;
    req.container_id = kSandboxContainerId;
    req.ifname = kSandboxIngressLink;
    req.netns = "(swarmnetd's ingress sandbox)";
    req.owner = api::kOwnerSandbox;
    auto [ep, created] = controller_.create_endpoint(network.name, req);
    const EndpointRecord* record =
        store_.find_endpoint(endpoint_key(network.id, store_.node_id(), req.container_id, req.ifname));
    if (!record) throw Error(Errc::internal, "the ingress sandbox's endpoint vanished");
    IngressSandboxConfig config;
    config.gateway_subnet = gateway_subnet_;
    config.ingress_subnet = network.subnet;
    config.ingress_bridge = Controller::bridge_name(network.id);
    config.ingress_mtu = ep.mtu;
    config.address = record->ip;
    config.mac = record->mac;
    config.host_link = record->host_ifname;
    config.lb_backend = lb_backend_;
    config.keep_client_address = keep_client_address_;
    sandbox_ = std::make_unique<IngressSandbox>(config);
    balanced_.clear();
    join_failed_ = false;
  } catch (const BlockNeeded& e) {
    // The blocks' change brings us back here, also after an earlier failure
    // (the owners were unreachable while the cluster was coming up).
    join_failed_ = false;
    controller_.request_block(e);
  } catch (const std::exception& e) {
    spdlog::error("routing mesh: cannot join the ingress network: {}", e.what());
    join_failed_ = true;
  }
  return sandbox_ != nullptr;
}

void RoutingMesh::program() {
  if (!sandbox_) return;
  try {
    const NetworkRecord* ingress = store_.find_ingress_network();
    // Each node's sandbox address on the ingress network, and the other
    // nodes' with their MACs (for the replies of what they balance).
    std::map<std::string, Ipv4Address> sandbox_of;
    std::map<Ipv4Address, std::string> peer_sandboxes;
    for (const std::string& key : ingress ? store_.index().endpoints_on_network(ingress->id) : ReadModel::Keys{}) {
      const EndpointRecord* e = store_.find_endpoint(key);
      if (e->container_id != kSandboxContainerId) continue;
      sandbox_of[e->node] = e->ip;
      if (e->node != store_.node_id()) peer_sandboxes[e->ip] = e->mac;
    }
    sandbox_->sync_peers(peer_sandboxes, controller_.underlay_peers());
    const Liveness alive = [this](const std::string& node) { return controller_.is_alive(node); };
    std::map<std::string, lb::VirtualIp> balanced;
    std::map<Ipv4Address, std::optional<Ipv4Address>> routes;
    std::map<std::string, std::pair<Ipv4Address, std::vector<kernel::PublishedPort>>> published;
    for (const auto& [id, entry] : store_.services()) {
      const ServiceRecord& s = entry.value;
      if (entry.deleted || !s.ingress_vip || !has_ingress_ports(s)) continue;
      lb::VirtualIp v;
      v.key = s.id.substr(0, 16) + "/ingress";
      v.vip = *s.ingress_vip;
      v.bridge = kSandboxIngressLink;
      // One backend per task container (a task on two of the service's
      // networks is one task), on live nodes whose sandbox has joined.
      std::set<std::pair<std::string, std::string>> seen;
      for (const std::string& network_id : s.networks) {
        for (const EndpointRecord* task : healthy_tasks(store_, s.name, network_id, alive)) {
          const EndpointRecord& r = *task;
          const bool local = r.node == store_.node_id();
          if (!local && !sandbox_of.count(r.node)) continue;
          if (!seen.insert({r.node, r.container_id}).second) continue;
          v.backends.push_back(r.ip);
          routes[r.ip] = local ? std::nullopt : std::optional<Ipv4Address>(sandbox_of.at(r.node));
        }
      }
      std::sort(v.backends.begin(), v.backends.end());
      v.backends.erase(std::unique(v.backends.begin(), v.backends.end()), v.backends.end());
      std::vector<kernel::PublishedPort> ports;
      for (const auto& p : s.ports) {
        if (p.publish_mode == "ingress") ports.push_back({p.protocol, p.published, p.target, std::nullopt});
      }
      published[s.id] = {v.vip, ports};
      balanced[v.key] = std::move(v);
    }

    // The sandbox: routes first (a new backend is reachable before it is chosen).
    sandbox_->sync_routes(routes);
    for (const auto& [key, v] : balanced) {
      auto it = balanced_.find(key);
      if (it != balanced_.end() && it->second == v) continue;
      sandbox_->balancer().upsert(v);
      spdlog::info("routing mesh: VIP {} balanced over {} task(s)", v.vip.str(), v.backends.size());
    }
    for (const auto& [key, v] : balanced_) {
      if (!balanced.count(key)) sandbox_->balancer().remove(key);
    }
    balanced_ = std::move(balanced);

    // The host: every ingress port on every address of this node.
    const bool first = published_.empty();
    for (const auto& [id, want] : published) {
      auto it = published_.find(id);
      if (it != published_.end() && it->second == want) continue;
      try {
        host_rules_.replace(id, want.first, want.second);
        std::string list;
        for (const auto& p : want.second) {
          list += " " + p.protocol + "/" + std::to_string(p.host_port) + "->" + std::to_string(p.container_port);
        }
        spdlog::info("routing mesh: published on this node:{} (VIP {})", list, want.first.str());
      } catch (const Error& e) {
        spdlog::error("routing mesh: service {}: {}", id.substr(0, 12), e.what());
      }
    }
    std::set<std::string> stale;
    for (const auto& [id, want] : published_) {
      if (!published.count(id)) stale.insert(id);
    }
    if (first) {
      for (const std::string& id : host_rules_.ids()) {
        if (!published.count(id)) stale.insert(id);
      }
    }
    for (const std::string& id : stale) {
      host_rules_.remove(id);
      spdlog::info("routing mesh: ingress ports of service {} closed on this node", id.substr(0, 12));
    }
    published_ = std::move(published);
  } catch (const std::exception& e) {
    spdlog::error("routing mesh: {}", e.what());
  }
}

}  // namespace swarmnet::daemon
