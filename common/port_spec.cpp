#include "common/port_spec.hpp"

#include "common/error.hpp"
#include "common/ipv4.hpp"

namespace swarmnet {

namespace {

// "PORT[/tcp|/udp]" into the spec's target and protocol; false if malformed.
bool parse_target(std::string_view text, PortSpec& spec) {
  const auto slash = text.find('/');
  if (slash != std::string_view::npos) {
    spec.protocol = std::string(text.substr(slash + 1));
    if (spec.protocol != "tcp" && spec.protocol != "udp") return false;
  }
  const auto port = parse_port(text.substr(0, slash));
  if (!port) return false;
  spec.target = *port;
  return true;
}

}  // namespace

PortSpec parse_port_spec(std::string_view text) {
  PortSpec spec;
  if (!parse_target(text, spec)) {
    throw Error(Errc::invalid_argument, "--port " + std::string(text) + ": expected PORT[/tcp|/udp]");
  }
  return spec;
}

PortSpec parse_publish_spec(std::string_view text) {
  auto bad = [&] {
    return Error(Errc::invalid_argument, "--publish " + std::string(text) +
                                             ": expected [mode=host|ingress,][PUBLISHED]:TARGET[/tcp|/udp]");
  };
  PortSpec spec;
  spec.publish_mode = "ingress";
  std::string_view rest = text;
  if (rest.starts_with("mode=")) {
    const auto comma = rest.find(',');
    if (comma == std::string_view::npos) throw bad();
    spec.publish_mode = std::string(rest.substr(5, comma - 5));
    if (spec.publish_mode != "host" && spec.publish_mode != "ingress") throw bad();
    rest = rest.substr(comma + 1);
  }
  const auto colon = rest.find(':');
  if (colon == std::string_view::npos || !parse_target(rest.substr(colon + 1), spec)) throw bad();
  if (colon == 0) {
    spec.published = 0;
  } else {
    spec.published = parse_port(rest.substr(0, colon));
    if (!spec.published) throw bad();
  }
  return spec;
}

}  // namespace swarmnet
