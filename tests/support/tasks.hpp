// The tasks of a service as the daemon's parts see them come, for their unit
// tests: one of this host's containers (added through the controller, as the
// CNI plugin adds it), one of another node's (put in the store, as gossip
// brings it), and the membership that says which nodes live.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>

#include "common/api.hpp"
#include "daemon/controller.hpp"
#include "daemon/membership.hpp"
#include "daemon/store.hpp"

namespace swarmnet::testing {

inline constexpr const char* kOtherNode = "0123456789abcdef0123456789abcdef";

// A container of this host on `network` (by name): its address.
inline std::string add_local_task(daemon::Controller& controller, const std::string& network,
                                  const std::string& container, const std::string& service) {
  api::EndpointCreate req;
  req.container_id = container;
  req.ifname = "eth0";
  req.name = container;
  req.service = service;
  return controller.create_endpoint(network, req).first.address.address().str();
}

// A container of `node` on the network with this id, at `ip`.
inline daemon::EndpointRecord put_remote_task(daemon::Store& store, const std::string& network_id,
                                              const std::string& container, const std::string& ip,
                                              const std::string& service, const std::string& node = kOtherNode) {
  daemon::EndpointRecord r;
  r.id = "ep-" + container;
  r.network_id = network_id;
  r.node = node;
  r.container_id = container;
  r.name = container;
  r.ifname = "eth0";
  r.ip = Ipv4Address::parse(ip);
  r.service = service;
  store.put(r);
  return r;
}

// What the cluster publishes when kOtherNode changes state.
inline void publish_other_node(daemon::Store& store, const std::string& status) {
  store.feed().publish(daemon::Change::membership(daemon::MemberChange{kOtherNode, "host2", "192.168.0.2", status, ""}));
}

// Every node alive but those in `dead`; counts the questions about each
// node (a service's tasks are weighed by asking whether their node lives).
class FakeMembership : public daemon::Membership {
 public:
  bool is_alive(const std::string& node_id) const override {
    ++asked[node_id];
    return !dead.count(node_id);
  }
  std::optional<Ipv4Address> address_of(const std::string&) const override { return Ipv4Address::parse("192.168.0.2"); }
  std::set<std::string> dead;
  mutable std::map<std::string, int> asked;
};

}  // namespace swarmnet::testing
