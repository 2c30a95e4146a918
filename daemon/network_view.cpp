#include "daemon/network_view.hpp"

#include <map>

#include "daemon/cluster.hpp"
#include "daemon/services.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;

json::value network_view(const Store& store, const Controller& controller, const Cluster* cluster,
                         const std::string& name_or_id) {
  const api::Network network = controller.inspect_network(name_or_id);
  json::value out = json::value_from(network);
  auto node_name = [&](const std::string& id) -> std::string {
    if (cluster) {
      if (auto name = cluster->name_of(id)) return *name;
    }
    return "";
  };
  auto node_address = [&](const std::string& id) -> json::value {
    if (!cluster) return nullptr;
    auto ip = cluster->address_of(id);
    return ip ? json::value(ip->str()) : json::value(nullptr);
  };

  // The network's live endpoints: tasks by service, and the nodes they are on.
  std::map<std::string, json::array> tasks;  // service name -> tasks
  std::map<std::string, size_t> carried_by;  // node id -> containers on the network
  for (const auto& [key, e] : store.endpoints()) {
    const EndpointRecord& ep = e.value;
    // A node's own address (node-local access) is no container.
    if (e.deleted || ep.network_id != network.id || is_vip_endpoint(ep) ||
        ep.owner == api::kOwnerNode) {
      continue;
    }
    if (ep.attach) ++carried_by[ep.node];
    if (ep.service.empty()) continue;
    tasks[ep.service].push_back(json::object{{"container_id", ep.container_id},
                                             {"name", ep.name},
                                             {"endpoint_id", ep.id},
                                             {"ip", ep.ip.str()},
                                             {"node", ep.node},
                                             {"node_name", node_name(ep.node)},
                                             {"node_address", node_address(ep.node)},
                                             {"node_alive", controller.is_alive(ep.node)},
                                             {"healthy", ep.healthy}});
  }

  json::array services;
  for (const auto& [id, s] : store.services()) {
    const ServiceRecord& svc = s.value;
    if (s.deleted || std::find(svc.networks.begin(), svc.networks.end(), network.id) == svc.networks.end()) continue;
    auto vip = svc.vips.find(network.id);
    json::array ports;
    for (const auto& p : svc.ports) {
      json::object port{{"target", p.target}, {"protocol", p.protocol}};
      if (!p.publish_mode.empty()) {
        port["published"] = p.published;
        port["publish_mode"] = p.publish_mode;
      }
      ports.push_back(std::move(port));
    }
    auto t = tasks.find(svc.name);
    services.push_back(json::object{{"name", svc.name},
                                    {"id", svc.id},
                                    {"endpoint_mode", svc.mode == ServiceMode::dnsrr ? "dnsrr" : "vip"},
                                    {"vip", vip != svc.vips.end() ? json::value(vip->second.str()) : nullptr},
                                    {"ports", std::move(ports)},
                                    {"tasks", t != tasks.end() ? std::move(t->second) : json::array()}});
  }

  json::array peers;
  for (const auto& [node, count] : carried_by) {
    peers.push_back(json::object{{"node", node},
                                 {"name", node_name(node)},
                                 {"address", node_address(node)},
                                 {"alive", controller.is_alive(node)},
                                 {"containers", count},
                                 {"self", node == store.node_id()}});
  }
  out.as_object()["services"] = std::move(services);
  out.as_object()["peers"] = std::move(peers);
  return out;
}

void add_network_view_routes(Router& router, const Store& store, const Controller& controller,
                             const Cluster* cluster) {
  router.add("GET", "/v1/networks/NAME/verbose", "other", [&store, &controller, cluster](const ApiRequest& r) {
    return HttpReply{200, network_view(store, controller, cluster, r.params[0])};
  });
}

}  // namespace swarmnet::daemon
