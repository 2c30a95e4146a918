#include "common/port_spec.hpp"

#include "common/error.hpp"
#include "common/ipv4.hpp"

namespace swarmnet {

namespace {

constexpr const char* kPublishSyntax =
    "expected [mode=host|ingress,][[PUBLISHED]:]TARGET[/tcp|/udp] or "
    "published=PUBLISHED,target=TARGET[,protocol=tcp|udp][,mode=host|ingress], where PUBLISHED and "
    "TARGET may be ranges A-B of equal length";

struct Range {
  uint16_t first = 0;
  uint16_t last = 0;
  unsigned size() const { return last - first + 1u; }
};

// "PORT" or "FIRST-LAST"; nullopt if malformed or backwards.
std::optional<Range> parse_range(std::string_view text) {
  const auto dash = text.find('-');
  const auto first = parse_port(text.substr(0, dash));
  if (!first) return std::nullopt;
  if (dash == std::string_view::npos) return Range{*first, *first};
  const auto last = parse_port(text.substr(dash + 1));
  if (!last || *last < *first) return std::nullopt;
  return Range{*first, *last};
}

// "tcp" or "udp"; anything else is refused by name, since Docker also takes
// sctp and a user should learn that swarmnet does not, not get a syntax error.
std::string parse_protocol(std::string_view text, std::string_view whole) {
  if (text == "tcp" || text == "udp") return std::string(text);
  if (text == "sctp") {
    throw Error(Errc::invalid_argument,
                "--publish " + std::string(whole) + ": sctp is not supported (tcp or udp)");
  }
  throw Error(Errc::invalid_argument, "--publish " + std::string(whole) + ": unknown protocol \"" +
                                          std::string(text) + "\" (tcp or udp)");
}

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

std::vector<PortSpec> expand(std::string_view whole, const std::string& mode,
                             const std::string& protocol, const Range& target,
                             const std::optional<Range>& published) {
  auto refuse = [&](const std::string& why) {
    return Error(Errc::invalid_argument, "--publish " + std::string(whole) + ": " + why);
  };
  if (target.size() > kMaxPublishRange) {
    throw refuse("a range of " + std::to_string(target.size()) + " ports, more than " +
                 std::to_string(kMaxPublishRange));
  }
  if (published && published->size() != target.size()) {
    // Docker maps a published range onto a single target only for `docker
    // run` (any free port of the range); a service publishes each port.
    throw refuse("published range " + std::to_string(published->first) + "-" +
                 std::to_string(published->last) + " and target range " +
                 std::to_string(target.first) + "-" + std::to_string(target.last) +
                 " differ in length; they map one to one");
  }
  std::vector<PortSpec> out;
  for (unsigned i = 0; i < target.size(); ++i) {
    PortSpec s;
    s.target = static_cast<uint16_t>(target.first + i);
    s.protocol = protocol;
    s.published = published ? static_cast<uint16_t>(published->first + i) : 0;
    s.publish_mode = mode;
    out.push_back(s);
  }
  return out;
}

bool is_mode(std::string_view m) { return m == "host" || m == "ingress"; }

std::vector<PortSpec> parse_long_form(std::string_view text) {
  auto refuse = [&](const std::string& why) {
    return Error(Errc::invalid_argument, "--publish " + std::string(text) + ": " + why);
  };
  std::string mode = "ingress", protocol = "tcp";
  std::optional<Range> target, published;
  bool seen_mode = false, seen_protocol = false;
  std::string_view rest = text;
  while (true) {
    const auto comma = rest.find(',');
    const std::string_view field = rest.substr(0, comma);
    const auto eq = field.find('=');
    if (eq == std::string_view::npos) throw refuse("\"" + std::string(field) + "\" is not KEY=VALUE; " + kPublishSyntax);
    const std::string_view key = field.substr(0, eq), value = field.substr(eq + 1);
    auto once = [&](bool seen) {
      if (seen) throw refuse("\"" + std::string(key) + "\" given twice");
    };
    if (key == "mode") {
      once(seen_mode);
      seen_mode = true;
      if (!is_mode(value)) throw refuse("mode \"" + std::string(value) + "\": host or ingress");
      mode = std::string(value);
    } else if (key == "protocol") {
      once(seen_protocol);
      seen_protocol = true;
      protocol = parse_protocol(value, text);
    } else if (key == "target") {
      once(target.has_value());
      target = parse_range(value);
      if (!target) throw refuse("target \"" + std::string(value) + "\" is not a port (1-65535) or range");
    } else if (key == "published") {
      once(published.has_value());
      published = parse_range(value);
      if (!published) throw refuse("published \"" + std::string(value) + "\" is not a port (1-65535) or range");
    } else {
      // Docker's own keys swarmnet has no use for are refused, never dropped.
      throw refuse("unknown key \"" + std::string(key) + "\" (published, target, protocol, mode)");
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  if (!target) throw refuse("target is required");
  return expand(text, mode, protocol, *target, published);
}

std::vector<PortSpec> parse_short_form(std::string_view text) {
  auto bad = [&] { return Error(Errc::invalid_argument, "--publish " + std::string(text) + ": " + kPublishSyntax); };
  std::string mode = "ingress";
  std::string_view rest = text;
  if (rest.starts_with("mode=")) {
    const auto comma = rest.find(',');
    if (comma == std::string_view::npos) throw bad();
    mode = std::string(rest.substr(5, comma - 5));
    if (!is_mode(mode)) throw bad();
    rest = rest.substr(comma + 1);
  }
  const auto colon = rest.find(':');
  if (colon != std::string_view::npos && rest.find(':', colon + 1) != std::string_view::npos) {
    throw Error(Errc::invalid_argument,
                "--publish " + std::string(text) +
                    ": a host address (IP:PUBLISHED:TARGET) is not supported for a service; it is "
                    "published on every address of the node");
  }
  std::string_view target_text = colon == std::string_view::npos ? rest : rest.substr(colon + 1);
  std::string protocol = "tcp";
  if (const auto slash = target_text.find('/'); slash != std::string_view::npos) {
    protocol = parse_protocol(target_text.substr(slash + 1), text);
    target_text = target_text.substr(0, slash);
  }
  const auto target = parse_range(target_text);
  if (!target) throw bad();
  std::optional<Range> published;
  if (colon != std::string_view::npos && colon > 0) {
    published = parse_range(rest.substr(0, colon));
    if (!published) throw bad();
  }
  return expand(text, mode, protocol, *target, published);
}

}  // namespace

PortSpec parse_port_spec(std::string_view text) {
  PortSpec spec;
  if (!parse_target(text, spec)) {
    throw Error(Errc::invalid_argument, "--port " + std::string(text) + ": expected PORT[/tcp|/udp]");
  }
  return spec;
}

std::vector<PortSpec> parse_publish_spec(std::string_view text) {
  // The short form's only KEY=VALUE is a leading mode=, followed by a port
  // mapping; anything else with a KEY=VALUE is the long form.
  const auto last_comma = text.rfind(',');
  const std::string_view last = last_comma == std::string_view::npos ? text : text.substr(last_comma + 1);
  const bool short_form = text.find('=') == std::string_view::npos ||
                          (text.starts_with("mode=") && last_comma != std::string_view::npos &&
                           last.find('=') == std::string_view::npos);
  return short_form ? parse_short_form(text) : parse_long_form(text);
}

}  // namespace swarmnet
