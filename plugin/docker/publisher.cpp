#include "plugin/docker/publisher.hpp"

namespace swarmnet::docker {

std::vector<kernel::PublishedPort> published_ports(const std::vector<PortBinding>& bindings) {
  std::vector<kernel::PublishedPort> out;
  for (const auto& b : bindings) out.push_back({b.proto, b.host_port, b.container_port, b.host_ip});
  return out;
}

}  // namespace swarmnet::docker
