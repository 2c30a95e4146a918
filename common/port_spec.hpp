// The command line's port specifications (swarmnetctl service create/update):
//   --port    TARGET[/tcp|/udp]                           a port for SRV, not published
//   --publish [mode=host|ingress,][PUBLISHED]:TARGET[/tcp|/udp]
//             published on PUBLISHED (none: a port chosen for it); ingress
//             by default, as in swarm.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace swarmnet {

struct PortSpec {
  uint16_t target = 0;
  std::string protocol = "tcp";
  std::optional<uint16_t> published;  // nullopt: not published; 0: a port is chosen
  std::string publish_mode;           // "" (not published), "host" or "ingress"
  auto operator<=>(const PortSpec&) const = default;
};

// Both throw Error(invalid_argument) quoting the text and the syntax.
PortSpec parse_port_spec(std::string_view text);
PortSpec parse_publish_spec(std::string_view text);

}  // namespace swarmnet
