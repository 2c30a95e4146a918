#include "daemon/ingress/routing_mesh.hpp"

#include <algorithm>
#include <iterator>

#include "common/error.hpp"
#include "common/log.hpp"
#include "daemon/ingress/ingress.hpp"

namespace swarmnet::daemon {

namespace {

std::string balanced_key(const std::string& service_id) { return service_id.substr(0, 16) + "/ingress"; }

}  // namespace

RoutingMesh::RoutingMesh(Store& store, Controller& controller, MeshKernel& kernel, Ipv4Prefix gateway_subnet,
                         std::string lb_backend, bool keep_client_address)
    : store_(store),
      controller_(controller),
      kernel_(kernel),
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
  program_all();
}

void RoutingMesh::on_change(const Change& c) {
  if (c.is(TableId::cursors)) return;
  if (!kernel_.has_sandbox()) {
    // After a failure other than a missing address block (whose change
    // comes here), only a change of the networks or of the membership is
    // worth another try (not every health report).
    if ((!join_failed_ || c.is(TableId::networks) || c.kind == Change::Kind::membership) && join()) program_all();
    return;
  }
  if (c.is(TableId::blocks)) return;
  try {
    if (c.kind == Change::Kind::membership || c.is(TableId::networks)) {
      program_all();  // which nodes can take requests, and what reaches them
    } else if (c.is(TableId::services)) {
      program_service(c.key);
    } else if (c.is(TableId::endpoints)) {
      auto it = store_.endpoints().find(c.key);
      if (it == store_.endpoints().end()) return;
      const EndpointRecord& e = it->second.value;  // a tombstone keeps its last value
      if (e.container_id == kSandboxContainerId) {
        program_all();  // a node's sandbox came or went
        return;
      }
      // The services it serves now, and those it served until now (it may
      // have left one, or gone): every service holding its address.
      std::set<std::string> ids;
      if (!e.service.empty()) {
        const auto& named = store_.index().services_named(e.service);
        ids.insert(named.begin(), named.end());
      }
      if (auto users = route_users_.find(e.ip); users != route_users_.end()) {
        ids.insert(users->second.begin(), users->second.end());
      }
      for (const auto& id : ids) program_service(id);
    }
  } catch (const std::exception& ex) {
    spdlog::error("routing mesh: {}", ex.what());
  }
}

// This node's place on the ingress network: its endpoint there (one address
// from the cluster IPAM) and the sandbox behind it. False until both exist.
bool RoutingMesh::join() {
  if (kernel_.has_sandbox()) return true;
  const NetworkRecord* ingress = find_ingress_network(store_);
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
    config.mac = record->mac();
    config.host_link = record->host_ifname;
    config.lb_backend = lb_backend_;
    config.keep_client_address = keep_client_address_;
    kernel_.build_sandbox(config);
    // A new sandbox holds nothing yet.
    balanced_.clear();
    routes_of_.clear();
    route_users_.clear();
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
  return kernel_.has_sandbox();
}

std::map<Ipv4Address, std::string> RoutingMesh::read_sandboxes() {
  sandbox_of_.clear();
  std::map<Ipv4Address, std::string> peers;
  const NetworkRecord* ingress = find_ingress_network(store_);
  if (!ingress) return peers;
  for (const std::string& key : store_.index().endpoints_on_network(ingress->id)) {
    const EndpointRecord* e = store_.find_endpoint(key);
    if (!e || e->container_id != kSandboxContainerId) continue;
    sandbox_of_[e->node] = e->ip;
    if (e->node != store_.node_id()) peers[e->ip] = e->mac();
  }
  return peers;
}

void RoutingMesh::program_all() {
  if (!kernel_.has_sandbox()) return;
  try {
    kernel_.sync_peers(read_sandboxes(), controller_.underlay_peers());
    std::set<std::string> ids;
    for (const auto& [id, entry] : store_.services()) ids.insert(id);
    for (const auto& [id, want] : published_) ids.insert(id);
    for (const auto& [id, routes] : routes_of_) ids.insert(id);
    for (const std::string& id : ids) program_service(id);
    // Ports an earlier run published for services gone since.
    if (!programmed_once_) {
      for (const std::string& id : kernel_.published_ids()) {
        if (published_.count(id)) continue;
        kernel_.unpublish(id);
        spdlog::info("routing mesh: ingress ports of service {} closed on this node", id.substr(0, 12));
      }
      programmed_once_ = true;
    }
  } catch (const std::exception& e) {
    spdlog::error("routing mesh: {}", e.what());
  }
}

RoutingMesh::Wanted RoutingMesh::wanted(const std::string& id) const {
  Wanted w;
  auto it = store_.services().find(id);
  if (it == store_.services().end() || it->second.deleted) return w;
  const ServiceRecord& s = it->second.value;
  if (!s.ingress_vip || !has_ingress_ports(s)) return w;
  const Liveness alive = [this](const std::string& node) { return controller_.is_alive(node); };
  lb::VirtualIp v;
  v.key = balanced_key(s.id);
  v.vip = *s.ingress_vip;
  v.bridge = kSandboxIngressLink;
  // One backend per task container (a task on two of the service's
  // networks is one task), on live nodes whose sandbox has joined.
  std::set<std::pair<std::string, std::string>> seen;
  std::set<Ipv4Address> here, elsewhere;
  for (const std::string& network_id : s.networks) {
    for (const EndpointRecord* task : healthy_tasks(store_, s.name, network_id, alive)) {
      const EndpointRecord& r = *task;
      const bool local = r.node == store_.node_id();
      auto sandbox = sandbox_of_.find(r.node);
      if (!local && sandbox == sandbox_of_.end()) continue;
      if (!seen.insert({r.node, r.container_id}).second) continue;
      (local ? here : elsewhere).insert(r.ip);
      w.routes[r.ip] = local ? std::nullopt : std::optional<Ipv4Address>(sandbox->second);
    }
  }
  HostPorts host;
  host.vip = v.vip;
  for (const auto& p : s.ports) {
    if (p.publish_mode == "ingress") host.ports.push_back({p.protocol, p.published, p.target, std::nullopt});
  }
  // The shortcut needs the client's address kept: masqueraded, a task's
  // reply must go back through the sandbox, so every flow goes there.
  if (keep_client_address_ && !here.empty()) {
    for (Ipv4Address task : here) elsewhere.erase(task);  // (one address, two nodes: a stale record)
    host.spread.direct.assign(here.begin(), here.end());
    host.spread.shared = static_cast<unsigned>(elsewhere.size());
    v.backends.assign(elsewhere.begin(), elsewhere.end());
  } else {
    std::set<Ipv4Address> all = here;
    all.insert(elsewhere.begin(), elsewhere.end());
    v.backends.assign(all.begin(), all.end());
  }
  w.published = std::move(host);
  w.vip = std::move(v);
  return w;
}

void RoutingMesh::program_service(const std::string& id) {
  const Wanted w = wanted(id);
  // Routes first: a new backend is reachable before it is chosen.
  for (const auto& [task, via] : w.routes) {
    kernel_.set_route(task, via);
    auto& old = routes_of_[id];
    if (old.emplace(task, via).second) route_users_[task].insert(id);
  }
  const std::string key = balanced_key(id);
  if (w.vip) {
    auto it = balanced_.find(key);
    if (it == balanced_.end() || it->second != *w.vip) {
      kernel_.balancer().upsert(*w.vip);
      spdlog::info("routing mesh: VIP {} balanced over {} task(s)", w.vip->vip.str(), w.vip->backends.size());
      balanced_[key] = *w.vip;
    }
  } else if (balanced_.erase(key)) {
    kernel_.balancer().remove(key);
  }
  // The host: the service's ingress ports on every address of this node.
  // A task DNATed to straight is in the hairpin set before its first DNAT,
  // and leaves it after its last.
  if (w.published) {
    auto it = published_.find(id);
    if (it == published_.end() || it->second != *w.published) {
      std::set<Ipv4Address> grown = hairpin_wanted();
      grown.insert(w.published->spread.direct.begin(), w.published->spread.direct.end());
      kernel_.set_hairpin(grown);
      try {
        kernel_.publish(id, w.published->vip, w.published->ports, w.published->spread);
        std::string list;
        for (const auto& p : w.published->ports) {
          list += " " + p.protocol + "/" + std::to_string(p.host_port) + "->" + std::to_string(p.container_port);
        }
        spdlog::info("routing mesh: published on this node:{} (VIP {}{})", list, w.published->vip.str(),
                     w.published->spread.direct.empty()
                         ? std::string()
                         : fmt::format(", {} task(s) of this node straight, {} share(s) to the VIP",
                                       w.published->spread.direct.size(), w.published->spread.shared));
        if (it != published_.end()) forget_left_flows(it->second, &*w.published);
      } catch (const Error& e) {
        spdlog::error("routing mesh: service {}: {}", id.substr(0, 12), e.what());
      }
      published_[id] = *w.published;
    }
  } else if (auto it = published_.find(id); it != published_.end()) {
    const HostPorts before = std::move(it->second);
    published_.erase(it);
    kernel_.unpublish(id);
    spdlog::info("routing mesh: ingress ports of service {} closed on this node", id.substr(0, 12));
    forget_left_flows(before, nullptr);
  }
  kernel_.set_hairpin(hairpin_wanted());
  // Routes no longer needed by this service, and by no other.
  auto old = routes_of_.find(id);
  if (old == routes_of_.end()) return;
  for (auto r = old->second.begin(); r != old->second.end();) {
    auto want = w.routes.find(r->first);
    if (want != w.routes.end()) {
      r->second = want->second;
      ++r;
      continue;
    }
    auto users = route_users_.find(r->first);
    if (users != route_users_.end() && users->second.erase(id) && users->second.empty()) {
      route_users_.erase(users);
      kernel_.remove_route(r->first);
    }
    r = old->second.erase(r);
  }
  if (old->second.empty()) routes_of_.erase(old);
}

void RoutingMesh::forget_left_flows(const HostPorts& before, const HostPorts* after) {
  // Only UDP: a client that keeps its source port renews its flow's entry,
  // and with it the old DNAT, with each datagram. TCP connections stay on
  // their task (a new one takes the new rule).
  for (const kernel::PublishedPort& port : before.ports) {
    if (port.protocol != "udp") continue;
    std::vector<Ipv4Address> still;  // the tasks the port's new rule sends to straight
    if (after && std::find(after->ports.begin(), after->ports.end(), port) != after->ports.end()) {
      still = after->spread.direct;
    }
    std::vector<Ipv4Address> left;  // (both sorted: wanted() fills them from sets)
    std::set_difference(before.spread.direct.begin(), before.spread.direct.end(), still.begin(), still.end(),
                        std::back_inserter(left));
    if (!left.empty()) kernel_.forget_udp_flows(port.host_port, left);
  }
}

std::set<Ipv4Address> RoutingMesh::hairpin_wanted() const {
  std::set<Ipv4Address> tasks;
  for (const auto& [id, host] : published_) tasks.insert(host.spread.direct.begin(), host.spread.direct.end());
  return tasks;
}

}  // namespace swarmnet::daemon
