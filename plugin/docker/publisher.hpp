// Host-mode published ports for Docker's `-p HOST:CONTAINER`: the rules of
// kernel/published_ports.hpp under the owner "docker", one id per Docker
// endpoint. A port that swarmnetd already publishes on this host (a
// service's host-mode port, a CNI portMapping) is refused, and the other
// way round.
#pragma once

#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/published_ports.hpp"
#include "plugin/docker/driver.hpp"

namespace swarmnet::docker {

inline constexpr const char* kPublishOwner = "docker";

// Docker's bindings as published ports (a range is one port: the driver
// takes the first, as protocol.cpp explains).
std::vector<kernel::PublishedPort> published_ports(const std::vector<PortBinding>& bindings);

class NftPortPublisher : public PortPublisher {
 public:
  NftPortPublisher() : rules_(kPublishOwner) {}
  void publish(const std::string& endpoint_id, Ipv4Address container,
               const std::vector<PortBinding>& ports) override {
    rules_.replace(endpoint_id, container, published_ports(ports));
  }
  void unpublish(const std::string& endpoint_id) override { rules_.remove(endpoint_id); }

 private:
  kernel::PublishedPorts rules_;
};

}  // namespace swarmnet::docker
