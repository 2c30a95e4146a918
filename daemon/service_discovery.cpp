#include "daemon/service_discovery.hpp"

#include "common/error.hpp"
#include "common/log.hpp"
#include "daemon/services.hpp"

namespace swarmnet::daemon {

ServiceDiscovery::ServiceDiscovery(Store& store, Liveness alive, dns::NameTable& table, dns::Server& server)
    : store_(store), alive_(std::move(alive)), table_(table), server_(server) {
  subscription_ = store_.feed().subscribe(Stage::discovery, [this](const Change& c) { on_change(c); });
  resync();
}

ServiceDiscovery::~ServiceDiscovery() = default;

void ServiceDiscovery::resync() {
  for (const auto& [id, e] : store_.networks()) update_network(id);
  for (const auto& [key, e] : store_.endpoints()) update_endpoint(key);
  for (const auto& [id, e] : store_.services()) update_service(id);
}

void ServiceDiscovery::on_change(const Change& c) {
  if (c.kind == Change::Kind::membership) {
    // A dead node's endpoints leave the answers, a returning node's come
    // back. Joining or leaving a cluster may change any node's.
    if (!c.member) {
      resync();
      return;
    }
    const auto& keys = store_.index().endpoints_of_node(c.member->id);
    for (const std::string& key : std::vector<std::string>(keys.begin(), keys.end())) update_endpoint(key);
    return;
  }
  try {
    if (c.table == TableId::networks) {
      update_network(c.key);
    } else if (c.table == TableId::endpoints) {
      update_endpoint(c.key);
    } else if (c.table == TableId::services) {
      update_service(c.key);
    }
  } catch (const std::exception& e) {
    spdlog::error("DNS: updating {} {}: {}", table_name(c.table), c.key, e.what());
  }
}

void ServiceDiscovery::update_network(const std::string& id) {
  const NetworkRecord* n = store_.find_network(id);
  if (!n) {
    auto it = store_.networks().find(id);
    if (it != store_.networks().end()) server_.remove_listener(it->second.value.gateway);
    table_.remove_network(id);
    return;
  }
  if (!n->carries_containers()) return;  // no container there to ask, and no gateway address to answer on
  table_.upsert_network({n->id, n->name, n->gateway});
  try {
    server_.add_listener(n->gateway);
  } catch (const Error& e) {
    // Names still replicate; only this host's containers of the network
    // cannot ask. Say so loudly: it is an operator's problem (port 53 taken).
    spdlog::error("DNS for network {}: {}", n->name, e.what());
  }
}

void ServiceDiscovery::update_endpoint(const std::string& key) {
  const EndpointRecord* e = store_.find_endpoint(key);
  // A dead node's containers stop resolving at once (they are unreachable
  // anyway); they come back if the node does.
  // A VIP reservation is no container: the service's own entry names it.
  // Nor is a node's own address on the network.
  if (!e || !alive_(e->node) || is_vip_endpoint(*e) || e->owner == api::kOwnerNode) {
    table_.remove_endpoint(key);
    return;
  }
  dns::EndpointInfo info;
  info.key = key;
  info.network_id = e->network_id;
  info.container_id = e->container_id;
  info.name = e->name;
  info.aliases = e->aliases;
  info.ip = e->ip;
  info.local = e->node == store_.node_id();
  info.service = e->service;
  // Answered in tasks.SERVICE (and a dnsrr SERVICE) only if it serves.
  info.healthy = is_healthy_task(*e, alive_);
  table_.upsert_endpoint(info);
}

void ServiceDiscovery::update_service(const std::string& id) {
  const ServiceRecord* s = store_.find_service(id);
  if (!s) {
    table_.remove_service(id);
    return;
  }
  dns::ServiceInfo info;
  info.id = s->id;
  info.name = s->name;
  info.dnsrr = s->mode == ServiceMode::dnsrr;
  info.vips = s->vips;
  for (const ServicePortRecord& p : s->ports) info.ports.push_back({p.target, p.protocol});
  table_.upsert_service(info);
}

}  // namespace swarmnet::daemon
