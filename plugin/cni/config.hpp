// The network configuration on stdin, for the swarmnet main plugin and for
// swarmnet-ipam, parsed and validated completely before anything is touched.
// Every error is a CniError: 1 for an unsupported cniVersion, 2 for a field
// we refuse (an "ipam" section given to the main plugin), 6 for bad JSON, 7
// for a field of the wrong type or value (the message names the field).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/api.hpp"
#include "common/ipv4.hpp"
#include "plugin/cni/protocol.hpp"
#include "plugin/cni/result.hpp"

namespace swarmnet::cni {

enum class PluginKind { main, ipam };

inline constexpr const char* kServiceLabel = "swarmnet.service";
inline constexpr const char* kNameLabel = "name";
inline constexpr const char* kServiceArg = "SWARMNET_SERVICE";
inline constexpr const char* kDefaultLogLevel = "warn";  // stderr quiet on success
inline constexpr unsigned kMinMtu = 68;                  // IPv4's minimum
inline constexpr unsigned kMaxMtu = 65535;

struct NetConf {
  SpecVersion version = kLatestVersion;
  std::string name;  // the network configuration's name
  std::string type;
  std::string network;  // the swarmnet network: `name`, or ipam.network for swarmnet-ipam
  std::string daemon_socket = api::kDefaultSocket;
  std::optional<unsigned> mtu;  // overrides the network's MTU (main plugin)

  // Attachment details sent to the daemon.
  std::map<std::string, std::string> labels;
  std::string service;
  std::string container_name;
  std::vector<Ipv4Address> static_ips;
  std::vector<std::string> aliases;
  // runtimeConfig.portMappings (capability "portMappings"): host mode.
  std::vector<api::PortMapping> port_mappings;

  std::optional<Result> prev_result;
  Dns dns;
  std::vector<Route> routes;  // swarmnet-ipam: ipam.routes

  std::vector<api::AttachmentKey> valid_attachments;  // GC

  std::string log_file;
  std::string log_level = kDefaultLogLevel;
};

// The cniVersion alone, for the error JSON of a config that fails later.
// nullopt when the text is not JSON or has no usable cniVersion.
std::optional<SpecVersion> peek_version(std::string_view stdin_text);

// Parses and validates the config against the environment (CNI_ARGS carry
// the service and static IPs too). Also checks that the command exists in
// the config's version (CHECK from 0.4.0, GC and STATUS from 1.1.0).
NetConf parse_config(std::string_view stdin_text, const Environment& env, PluginKind kind);

}  // namespace swarmnet::cni
