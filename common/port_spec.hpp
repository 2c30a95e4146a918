// The command line's port specifications (swarmnetctl service create/update):
//   --port    TARGET[/tcp|/udp]            a port for SRV, not published
//   --publish as `docker service create` takes it, in either form:
//     short  [mode=host|ingress,][[PUBLISHED]:]TARGET[/tcp|/udp]
//     long   published=PUBLISHED,target=TARGET[,protocol=tcp|udp][,mode=host|ingress]
//             (keys in any order; target required)
//     PUBLISHED and TARGET may be ranges A-B; equal-length ranges map one to
//     one (8000-8010:80-90 is 8000:80 ... 8010:90). No PUBLISHED (or
//     published omitted): a port is chosen per target. Ingress by default,
//     as in swarm.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace swarmnet {

struct PortSpec {
  uint16_t target = 0;
  std::string protocol = "tcp";
  std::optional<uint16_t> published;  // nullopt: not published; 0: a port is chosen
  std::string publish_mode;           // "" (not published), "host" or "ingress"
  auto operator<=>(const PortSpec&) const = default;
};

// A range may hold at most this many ports: enough for any real service,
// small enough that a typo (1-65535) is refused rather than sent as 65,535
// publications.
inline constexpr unsigned kMaxPublishRange = 1000;

// Both throw Error(invalid_argument) quoting the text and what is wrong.
PortSpec parse_port_spec(std::string_view text);
// One spec per port (a range gives several), in order.
std::vector<PortSpec> parse_publish_spec(std::string_view text);

}  // namespace swarmnet
