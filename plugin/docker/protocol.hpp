// Docker's remote plugin protocols, as the bodies Docker sends and the
// replies it reads: NetworkDriver (moby/libnetwork docs/remote.md,
// drivers/remote/api/api.go) and IpamDriver (docs/ipam.md,
// ipams/remote/api/api.go). Field names are Docker's, exactly. Pure: no
// daemon, no kernel, so the unit tests and the fuzzer cover every decoder.
//
// Errors travel in the reply body, with HTTP 200: network driver replies
// carry {"Err": ...}, IPAM replies {"Error": ...} (Docker reads only that
// field of a 200 reply). Every decoder throws Error(invalid_argument)
// naming the field, so a malformed body gets a clear message.
#pragma once

#include <boost/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::docker {

namespace json = boost::json;

inline constexpr const char* kDefaultPluginSocket = "/run/docker/plugins/swarmnet.sock";
// Docker's content type for plugin replies (pkg/plugins: "application/vnd.docker.plugins.v1.2+json").
inline constexpr const char* kContentType = "application/vnd.docker.plugins.v1.2+json";

// Options Docker passes (libnetwork/netlabel and ipamapi).
inline constexpr const char* kGenericOptions = "com.docker.network.generic";   // -o KEY=VALUE
inline constexpr const char* kPortMap = "com.docker.network.portmap";          // -p bindings
inline constexpr const char* kGatewayAddressType = "com.docker.network.gateway";
inline constexpr const char* kRequestAddressType = "RequestAddressType";
inline constexpr const char* kInternalOption = "com.docker.network.internal";  // --internal
inline constexpr const char* kMtuOption = "com.docker.network.driver.mtu";     // -o, Docker's bridge's name
// Ours: the swarmnet network a Docker network maps to (--ipam-opt or -o).
inline constexpr const char* kNetworkOption = "swarmnet.network";
// Swarm's option for IPsec-encrypted overlays (-o encrypted).
inline constexpr const char* kEncryptedOption = "encrypted";

// Which protocol a method belongs to: decides the error field.
enum class Protocol { plugin, network, ipam, unknown };
Protocol protocol_of(std::string_view method);  // "/NetworkDriver.Join" -> network

// {"Err": message} or {"Error": message} as the protocol wants.
json::object error_reply(Protocol protocol, const std::string& message);

// Docker's object ids: 1-64 of [0-9a-zA-Z] (Docker uses 64 hex digits).
void check_docker_id(const std::string& id, std::string_view field);

// --- IpamDriver ---------------------------------------------------------

struct RequestPool {
  std::string address_space;
  std::optional<Ipv4Prefix> pool;  // --subnet
  std::optional<Ipv4Prefix> sub_pool;  // --ip-range: where addresses without --ip come from
  std::map<std::string, std::string> options;  // --ipam-opt
  bool v6 = false;
};
RequestPool parse_request_pool(const json::value& body);

struct ReleasePool {
  std::string pool_id;
};
ReleasePool parse_release_pool(const json::value& body);

struct RequestAddress {
  std::string pool_id;
  std::optional<Ipv4Address> address;  // --ip, or --gateway for the gateway request
  std::map<std::string, std::string> options;
  bool gateway() const;  // Options.RequestAddressType == com.docker.network.gateway
};
RequestAddress parse_request_address(const json::value& body);

struct ReleaseAddress {
  std::string pool_id;
  Ipv4Address address;
};
ReleaseAddress parse_release_address(const json::value& body);

// --- NetworkDriver --------------------------------------------------------

struct IpamData {
  std::string address_space;
  Ipv4Prefix pool;
  std::optional<Ipv4Prefix> gateway;
};

struct CreateNetwork {
  std::string network_id;
  std::map<std::string, std::string> generic_options;  // Options["com.docker.network.generic"]
  bool internal = false;                                // Options["com.docker.network.internal"]
  std::vector<IpamData> ipv4;
  size_t ipv6_pools = 0;
};
CreateNetwork parse_create_network(const json::value& body);

// DeleteNetwork, FreeNetwork.
struct NetworkRef {
  std::string network_id;
};
NetworkRef parse_network_ref(const json::value& body);

struct PortBinding {
  std::string proto;  // "tcp", "udp", "sctp"
  uint16_t container_port = 0;
  std::optional<Ipv4Address> host_ip;  // nullopt: every address of the host
  uint16_t host_port = 0;
  uint16_t host_port_end = 0;  // == host_port for a single port
  auto operator<=>(const PortBinding&) const = default;
};

struct CreateEndpoint {
  std::string network_id;
  std::string endpoint_id;
  std::optional<Ipv4Prefix> address;  // Interface.Address, from the IPAM driver
  bool has_ipv6 = false;
  std::string mac;                    // Interface.MacAddress, "" when Docker lets us choose
};
CreateEndpoint parse_create_endpoint(const json::value& body);

// DeleteEndpoint, EndpointOperInfo, Leave, RevokeExternalConnectivity.
struct EndpointRef {
  std::string network_id;
  std::string endpoint_id;
};
EndpointRef parse_endpoint_ref(const json::value& body);

struct Join {
  std::string network_id;
  std::string endpoint_id;
  std::string sandbox_key;  // the container's netns path
};
Join parse_join(const json::value& body);

struct ProgramExternalConnectivity {
  std::string network_id;
  std::string endpoint_id;
  std::vector<PortBinding> ports;  // Options["com.docker.network.portmap"]
};
ProgramExternalConnectivity parse_program_external_connectivity(const json::value& body);

// Replies.
json::object activate_reply();  // {"Implements": ["NetworkDriver", "IpamDriver"]}
json::object network_capabilities_reply();
json::object ipam_capabilities_reply();
json::object address_spaces_reply();
json::object request_pool_reply(const std::string& pool_id, const Ipv4Prefix& pool,
                                 Ipv4Address gateway);
json::object request_address_reply(const Ipv4Prefix& address);
json::object create_endpoint_reply(const std::string& mac);  // "" -> no Interface
// No gateway (an internal network): Docker sets no default route through it.
json::object join_reply(const std::string& src_name, const std::string& dst_prefix,
                        std::optional<Ipv4Address> gateway);

inline constexpr const char* kLocalAddressSpace = "swarmnet-local";
inline constexpr const char* kGlobalAddressSpace = "swarmnet";

}  // namespace swarmnet::docker
