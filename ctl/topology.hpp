// `swarmnetctl topology`: a picture of the cluster. The daemon's API answers
// are decoded into the plain structs below (from_api), drawn as Graphviz DOT
// text by a pure function (to_dot, unit-tested on a 30-node cluster without
// any daemon), and rendered by Graphviz's `dot` program (render).
//
// The layout, left to right: services (with their VIPs and published ports),
// then one box per node listing the containers it runs (a row each: name,
// service, addresses coloured by network), then the networks. An edge from a
// service to a row says "this task runs here"; an edge from a node to a
// network, in the network's colour, says "the network spans this node".
// Nodes are stacked vertically, so 30 of them make a tall picture whose rows
// keep their size instead of a wide one shrunk to be unreadable.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace swarmnet::topology {

struct Node {
  std::string id;
  std::string name;
  std::string address;  // underlay
  std::string status;   // alive, suspect, dead, left, gone
  bool self = false;
};

struct Network {
  std::string name;
  std::string subnet;
  uint32_t vni = 0;
  bool internal = false;
};

struct Endpoint {
  std::string network;  // name
  std::string node;     // node id
  std::string container_id;
  std::string name;  // the container's DNS name, if it has one
  std::string ip;
  std::string service;
  std::string owner;  // "service-vip" and "sandbox" are the daemon's own
};

struct Port {
  unsigned target = 0;
  std::string protocol = "tcp";
  unsigned published = 0;    // 0 with mode "host": chosen per task
  std::string publish_mode;  // "" (not published), "ingress" or "host"
};

struct Task {
  std::string container_id;
  std::string network;
  std::string node;
  bool healthy = true;
  std::vector<std::string> host_ports;  // "9080->80/tcp"
};

struct Service {
  std::string name;
  std::string endpoint_mode;              // vip or dnsrr
  std::map<std::string, std::string> vips;  // network name -> VIP
  std::vector<Port> ports;
  std::vector<Task> tasks;
};

struct Cluster {
  std::vector<Node> nodes;
  std::vector<Network> networks;
  std::vector<Endpoint> endpoints;
  std::vector<Service> services;
};

// From the API's answers: GET /v1/nodes, GET /v1/networks, the endpoints of
// every network (GET /v1/networks/NAME/endpoints, concatenated) and every
// service with its tasks (GET /v1/services/NAME, as an array). Throws
// Error(invalid_argument) naming the field when an answer has not the shape
// the API documents.
Cluster from_api(const boost::json::value& nodes, const boost::json::value& networks,
                 const boost::json::value& endpoints, const boost::json::value& services);

// The picture as Graphviz DOT text. Deterministic: the same cluster gives
// the same text.
std::string to_dot(const Cluster& cluster);

// Runs Graphviz's `dot -TFORMAT` on the text and returns what it printed.
// Throws Error with dot's own message when it fails, and says how to
// install Graphviz when `dot` is not there.
std::string render(const std::string& dot_text, const std::string& format);

}  // namespace swarmnet::topology
