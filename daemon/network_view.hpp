// GET /v1/networks/NAME/verbose (`swarmnetctl network inspect NAME
// --verbose`), as Docker's `network inspect --verbose` for a swarm network:
// the network, its services with their VIP on it and their tasks on every
// node (address, node, health), and its peers: the nodes that carry it
// (those with a container on it), with their underlay addresses.
#pragma once

#include <boost/json.hpp>
#include <string>

#include "daemon/api_routes.hpp"
#include "daemon/controller.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

class Cluster;

// Error(not_found) for an unknown network. `cluster` may be null (a node in
// no cluster: its peers are itself).
boost::json::value network_view(const Store& store, const Controller& controller, const Cluster* cluster,
                                 const std::string& name_or_id);

// GET /v1/networks/NAME/verbose
void add_network_view_routes(Router& router, const Store& store, const Controller& controller,
                             const Cluster* cluster);

}  // namespace swarmnet::daemon
