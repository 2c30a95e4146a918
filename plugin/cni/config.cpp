#include "plugin/cni/config.hpp"

#include <algorithm>
#include <cctype>

#include "plugin/cni/json_path.hpp"

namespace swarmnet::cni {

namespace json = boost::json;
using namespace json_path;

namespace {

// The keys libcni has used for GC's list (it sets both since v1.2.3).
constexpr std::string_view kValidAttachmentsKey = "cni.dev/valid-attachments";
constexpr std::string_view kValidAttachmentsOldKey = "cni.dev/attachments";

json::value parse_json(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    throw CniError(code::kDecodeFailure, "no network configuration on stdin");
  }
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    throw CniError(code::kDecodeFailure,
                   "failed to decode the network configuration: " + ec.message());
  }
  return v;
}

SpecVersion parse_version(const json::object& o) {
  auto text = opt_string(o, "", "cniVersion");
  if (!text || text->empty()) {
    throw CniError(code::kIncompatibleVersion, "cniVersion is missing",
                   "supported versions: " + supported_versions_text());
  }
  auto v = parse_spec_version(*text);
  if (!v) {
    throw CniError(code::kIncompatibleVersion, "incompatible cniVersion \"" + *text + "\"",
                   "supported versions: " + supported_versions_text());
  }
  return *v;
}

void check_command_allowed(Command c, SpecVersion v) {
  SpecVersion needed = SpecVersion::v0_3_0;
  if (c == Command::check) needed = SpecVersion::v0_4_0;
  if (c == Command::gc || c == Command::status) needed = SpecVersion::v1_1_0;
  if (v < needed) {
    throw CniError(
        code::kIncompatibleVersion,
        "cniVersion " + std::string(to_string(v)) + " does not allow " + std::string(to_string(c)),
        std::string(to_string(c)) + " needs cniVersion " + std::string(to_string(needed)) +
            " or later");
  }
}

std::string socket_path(const json::object& o, std::string_view parent, std::string fallback) {
  auto s = opt_string(o, parent, "daemonSocket");
  if (!s) return fallback;
  if (s->empty() || (*s)[0] != '/') {
    throw CniError(code::kInvalidConfig,
                   join(parent, "daemonSocket") + ": \"" + *s + "\" is not an absolute path");
  }
  return *s;
}

void parse_logging(const json::object& o, std::string_view parent, NetConf& conf) {
  if (auto f = opt_string(o, parent, "logFile")) conf.log_file = *f;
  if (auto l = opt_string(o, parent, "logLevel")) {
    static constexpr std::string_view kLevels[] = {"trace", "debug",    "info", "warn",
                                                   "error", "critical", "off"};
    if (std::find(std::begin(kLevels), std::end(kLevels), *l) == std::end(kLevels)) {
      throw CniError(code::kInvalidConfig, join(parent, "logLevel") + ": unknown level \"" + *l +
                                               "\" (trace, debug, info, warn, error, off)");
    }
    conf.log_level = *l;
  }
}

// "10.1.0.7" or "10.1.0.7/24" (the ips capability carries CIDRs; the
// prefix length is the network's, so only the address counts).
Ipv4Address parse_static_ip(std::string_view text, const std::string& path) {
  if (text.find(':') != std::string_view::npos) {
    throw CniError(code::kInvalidConfig,
                   path + ": \"" + std::string(text) + "\" is IPv6; swarmnet networks are IPv4");
  }
  try {
    size_t slash = text.find('/');
    if (slash != std::string_view::npos) return Ipv4Prefix::parse(text).address();
    return Ipv4Address::parse(text);
  } catch (const Error&) {
    throw CniError(code::kInvalidConfig,
                   path + ": \"" + std::string(text) + "\" is not an IPv4 address or CIDR");
  }
}

void add_static_ip(NetConf& conf, Ipv4Address a) {
  if (std::find(conf.static_ips.begin(), conf.static_ips.end(), a) == conf.static_ips.end()) {
    conf.static_ips.push_back(a);
  }
}

void parse_args_cni(const json::object& root, NetConf& conf) {
  const json::value* args = field(root, "args");
  // The spec lets runtimes put anything in args; only args.cni is ours.
  if (!args || !args->is_object()) return;
  const json::object* cni = opt_object(args->get_object(), "args", "cni");
  if (!cni) return;
  if (const json::array* labels = opt_array(*cni, "args.cni", "labels")) {
    for (size_t i = 0; i < labels->size(); ++i) {
      std::string path = index("args.cni.labels", i);
      const auto& l = object((*labels)[i], path);
      auto key = opt_string(l, path, "key");
      auto value = opt_string(l, path, "value");
      if (!key || key->empty()) throw CniError(code::kInvalidConfig, path + ".key: missing");
      conf.labels[*key] = value.value_or("");
    }
  }
  auto ips = string_list(*cni, "args.cni", "ips");
  for (size_t i = 0; i < ips.size(); ++i) {
    add_static_ip(conf, parse_static_ip(ips[i], index("args.cni.ips", i)));
  }
}

void parse_runtime_config(const json::object& root, NetConf& conf) {
  const json::object* rc = opt_object(root, "", "runtimeConfig");
  if (!rc) return;
  auto ips = string_list(*rc, "runtimeConfig", "ips");
  for (size_t i = 0; i < ips.size(); ++i) {
    add_static_ip(conf, parse_static_ip(ips[i], index("runtimeConfig.ips", i)));
  }
  for (auto& a : string_list(*rc, "runtimeConfig", "aliases")) {
    if (a.empty()) throw CniError(code::kInvalidConfig, "runtimeConfig.aliases: empty alias");
    conf.aliases.push_back(std::move(a));
  }
  if (const json::array* mappings = opt_array(*rc, "runtimeConfig", "portMappings")) {
    for (size_t i = 0; i < mappings->size(); ++i) {
      const std::string path = index("runtimeConfig.portMappings", i);
      const auto& m = object((*mappings)[i], path);
      api::PortMapping p;
      auto host = opt_uint(m, path, "hostPort", 65535);
      auto container = opt_uint(m, path, "containerPort", 65535);
      if (!host || *host == 0 || !container || *container == 0) {
        throw CniError(code::kInvalidConfig, path + ": hostPort and containerPort 1-65535 are required");
      }
      p.host_port = static_cast<uint16_t>(*host);
      p.container_port = static_cast<uint16_t>(*container);
      p.protocol = opt_string(m, path, "protocol").value_or("tcp");
      for (char& c : p.protocol) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (p.protocol != "tcp" && p.protocol != "udp") {
        throw CniError(code::kInvalidConfig, path + ".protocol: \"tcp\" or \"udp\", not \"" + p.protocol + "\"");
      }
      // swarmnet publishes on every address of the host, as Docker's
      // swarm host mode does; a single address is not supported.
      const std::string host_ip = opt_string(m, path, "hostIP").value_or("");
      if (!host_ip.empty() && host_ip != "0.0.0.0") {
        throw CniError(code::kInvalidConfig, path + ".hostIP \"" + host_ip +
                                                 "\": swarmnet publishes on all of the host's addresses (leave hostIP empty)");
      }
      conf.port_mappings.push_back(p);
    }
  }
}

void parse_attachment_details(const json::object& root, const Environment& env, NetConf& conf) {
  parse_args_cni(root, conf);
  parse_runtime_config(root, conf);
  if (auto it = env.args.find("IP"); it != env.args.end()) {
    add_static_ip(conf, parse_static_ip(it->second, "CNI_ARGS IP"));
  }
  if (conf.static_ips.size() > 1) {
    throw CniError(code::kInvalidConfig, "at most one static IPv4 address per attachment; got " +
                                             std::to_string(conf.static_ips.size()));
  }

  std::string from_label, from_args;
  if (auto it = conf.labels.find(kServiceLabel); it != conf.labels.end()) from_label = it->second;
  if (auto it = env.args.find(kServiceArg); it != env.args.end()) from_args = it->second;
  if (!from_label.empty() && !from_args.empty() && from_label != from_args) {
    throw CniError(code::kInvalidConfig,
                   "service given twice: label \"" + std::string(kServiceLabel) + "\" = \"" +
                       from_label + "\", CNI_ARGS " + kServiceArg + " = \"" + from_args + "\"");
  }
  conf.service = from_label.empty() ? from_args : from_label;

  if (auto it = conf.labels.find(kNameLabel); it != conf.labels.end()) {
    conf.container_name = it->second;
  } else if (auto k8s = env.args.find("K8S_POD_NAME"); k8s != env.args.end()) {
    conf.container_name = k8s->second;
  }
}

void parse_valid_attachments(const json::object& root, NetConf& conf) {
  std::string_view key = kValidAttachmentsKey;
  const json::array* list = opt_array(root, "", key);
  if (!list) {
    key = kValidAttachmentsOldKey;
    list = opt_array(root, "", key);
  }
  // Without the list every attachment would look stale: refuse rather
  // than release the addresses of running containers.
  if (!list) {
    throw CniError(code::kInvalidConfig, "GC needs \"" + std::string(kValidAttachmentsKey) + "\"");
  }
  for (size_t i = 0; i < list->size(); ++i) {
    std::string path = index(key, i);
    const auto& a = object((*list)[i], path);
    auto id = opt_string(a, path, "containerID");
    auto ifname = opt_string(a, path, "ifname");
    if (!id || id->empty()) throw CniError(code::kInvalidConfig, path + ".containerID: missing");
    if (!ifname || ifname->empty()) throw CniError(code::kInvalidConfig, path + ".ifname: missing");
    conf.valid_attachments.push_back({*id, *ifname});
  }
}

std::string network_name(const json::object& o, std::string_view parent, std::string_view key,
                         bool required) {
  auto n = opt_string(o, parent, key);
  if (!n) {
    if (required) throw CniError(code::kInvalidConfig, join(parent, key) + ": missing");
    return "";
  }
  if (!api::valid_network_name(*n)) {
    throw CniError(code::kInvalidConfig,
                   join(parent, key) + ": invalid network name \"" + *n + "\"",
                   "a letter or digit, then letters, digits, '_', '.', '-' (at most 63)");
  }
  return *n;
}

NetConf parse(std::string_view text, const Environment& env, PluginKind kind) {
  json::value root_value = parse_json(text);
  if (!root_value.is_object()) {
    throw CniError(code::kDecodeFailure, "the network configuration is not a JSON object");
  }
  const json::object& root = root_value.get_object();

  NetConf conf;
  conf.version = parse_version(root);
  check_command_allowed(env.command, conf.version);

  conf.name = network_name(root, "", "name", true);
  conf.network = conf.name;
  conf.type = opt_string(root, "", "type").value_or("");
  conf.daemon_socket = socket_path(root, "", api::kDefaultSocket);
  parse_logging(root, "", conf);
  if (const json::value* d = field(root, "dns")) conf.dns = decode_dns(*d, "dns");

  const json::value* ipam = field(root, "ipam");
  if (kind == PluginKind::main) {
    if (ipam) {
      throw CniError(code::kUnsupportedField,
                     "unsupported field \"ipam\" = " + json::serialize(*ipam),
                     "the swarmnet plugin allocates addresses through swarmnetd itself; remove "
                     "the ipam section (or use swarmnet-ipam under another main plugin)");
    }
    conf.mtu = opt_uint(root, "", "mtu", kMaxMtu);
    if (conf.mtu && *conf.mtu < kMinMtu) {
      throw CniError(code::kInvalidConfig,
                     "mtu: " + std::to_string(*conf.mtu) + " is below " + std::to_string(kMinMtu));
    }
  } else {
    if (!ipam) throw CniError(code::kInvalidConfig, "ipam: missing");
    const json::object& io = object(*ipam, "ipam");
    if (std::string n = network_name(io, "ipam", "network", false); !n.empty()) conf.network = n;
    conf.daemon_socket = socket_path(io, "ipam", conf.daemon_socket);
    parse_logging(io, "ipam", conf);
    if (const json::array* routes = opt_array(io, "ipam", "routes")) {
      for (size_t i = 0; i < routes->size(); ++i) {
        std::string path = index("ipam.routes", i);
        Route r = decode_route((*routes)[i], path);
        try {
          Ipv4Prefix::parse(r.dst);
          if (!r.gw.empty()) Ipv4Address::parse(r.gw);
        } catch (const Error& e) {
          throw CniError(code::kInvalidConfig, path + ": " + e.what());
        }
        conf.routes.push_back(std::move(r));
      }
    }
    if (const json::value* d = field(io, "dns")) conf.dns = decode_dns(*d, "ipam.dns");
  }

  if (const json::value* prev = field(root, "prevResult")) {
    conf.prev_result = decode_result(*prev, "prevResult");
  }
  if (env.command == Command::add || env.command == Command::check) {
    parse_attachment_details(root, env, conf);
  }
  if (env.command == Command::gc) parse_valid_attachments(root, conf);
  return conf;
}

}  // namespace

std::optional<SpecVersion> peek_version(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::value* ver = field(v.get_object(), "cniVersion");
  if (!ver || !ver->is_string()) return std::nullopt;
  return parse_spec_version(ver->get_string());
}

NetConf parse_config(std::string_view text, const Environment& env, PluginKind kind) {
  try {
    return parse(text, env, kind);
  } catch (const CniError&) {
    throw;
  } catch (const Error& e) {
    // A swarmnet parser below us (addresses, names): still a config error.
    throw CniError(code::kInvalidConfig, e.what());
  }
}

}  // namespace swarmnet::cni
