// The swarmnetd HTTP/JSON API: the one contract between the daemon and its
// front ends (CNI plugins, the Docker driver, swarmnetctl). docs/api.md lists
// the routes; these are the bodies. Decoding throws Error(invalid_argument)
// naming the field, so a bad body gets a clear 400.
#pragma once

#include <boost/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::api {

namespace json = boost::json;

inline constexpr const char* kDefaultSocket = "/run/swarmnet/swarmnetd.sock";
inline constexpr const char* kDefaultStateDir = "/var/lib/swarmnet";

// POST /v1/networks
struct NetworkCreate {
  std::string name;
  std::optional<Ipv4Prefix> subnet;    // absent: taken from the default pool
  std::optional<Ipv4Address> gateway;  // absent: first host address of the subnet
  std::optional<unsigned> mtu;         // absent: underlay MTU minus the VXLAN overhead
  bool internal = false;               // no egress
  bool encrypted = false;              // VXLAN between hosts in IPsec ESP
  // Where addresses without a static one come from (Docker's --ip-range):
  // inside the subnet; its blocks are cut small enough that it holds several.
  std::optional<Ipv4Prefix> ip_range;
  // The routing mesh's network; only `cluster init` makes one (never
  // decoded from a request).
  bool ingress = false;
};

// GET /v1/networks/NAME, and each element of GET /v1/networks
struct Network {
  std::string id;
  std::string name;
  Ipv4Prefix subnet;
  Ipv4Address gateway;
  unsigned mtu = 0;
  uint32_t vni = 0;
  bool internal = false;
  bool encrypted = false;
  // Encrypted networks: the cluster key generation this node's outbound ESP
  // uses now (0: none programmed: no peer, or not in a cluster), and why
  // this node cannot carry the network ("" when it can).
  uint32_t key_generation = 0;
  std::string encryption_missing;
  unsigned block_length = 0;  // prefix length of the address blocks nodes own
  std::optional<Ipv4Prefix> ip_range;  // where addresses without a static one come from
  std::string created_by;     // node id
  std::string bridge;         // this host's bridge for the network
  size_t endpoints = 0;       // endpoints on this host
};

struct AttachmentKey {
  std::string container_id;
  std::string ifname;
  auto operator<=>(const AttachmentKey&) const = default;
};

// A port the runtime asks to publish on this host (CNI portMappings).
struct PortMapping {
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  std::string protocol = "tcp";  // "tcp" or "udp"
  auto operator<=>(const PortMapping&) const = default;
};

// Who made an endpoint (EndpointCreate.owner, Endpoint.owner). Cleanup done
// for one of them (CNI GC, the reaper of endpoints whose namespace is gone)
// only ever releases that one's endpoints. Through the API a client may
// claim "cni", "docker" or "api" (the default); the service VIPs and the
// ingress sandbox are the daemon's own.
inline constexpr const char* kOwnerCni = "cni";
inline constexpr const char* kOwnerDocker = "docker";
inline constexpr const char* kOwnerApi = "api";
inline constexpr const char* kOwnerServiceVip = "service-vip";
inline constexpr const char* kOwnerSandbox = "sandbox";
// POST .../endpoints?sync=later (docs/api.md): the reply's header, then the
// one line the daemon writes after the reply once the record is durable
// ("synced"), or "failed: REASON".
inline constexpr std::string_view kSyncHeader = "Swarmnet-Sync";
inline constexpr std::string_view kSyncAfterReply = "after-reply";
inline constexpr std::string_view kSyncedLine = "synced";
inline constexpr std::string_view kSyncFailedPrefix = "failed: ";
// A node's own address on a network (node-local access to the VIPs).
inline constexpr const char* kOwnerNode = "node";

// POST /v1/networks/NAME/endpoints
struct EndpointCreate {
  std::string container_id;
  std::string ifname;
  std::string netns;                      // informational: the sandbox path
  std::vector<Ipv4Address> static_ips;    // at most one for now (IPv4 only)
  // Without a static address: one inside this range of the subnet (Docker's
  // --ip-range on a network made without it). Absent: the network's range.
  std::optional<Ipv4Prefix> ip_range;
  std::map<std::string, std::string> labels;
  std::string name;                       // container name for DNS (optional)
  std::vector<std::string> aliases;
  std::string service;                    // service this endpoint is a task of
  // true: swarmnetd wires the host side (bridge) for the CNI "swarmnet"
  // plugin; false: an address only, for swarmnet-ipam under another plugin.
  bool attach = true;
  // Host-mode publications of this endpoint (the CNI portMappings capability).
  std::vector<PortMapping> port_mappings;
  std::string owner = kOwnerApi;
  // CNI only: the name of the runtime's network configuration, as GC is
  // asked per configuration.
  std::string cni_config;
};

struct Endpoint {
  std::string id;
  std::string network_id;
  std::string network;  // name
  std::string container_id;
  std::string ifname;
  std::string netns;
  std::string node;
  Ipv4Prefix address;  // e.g. 10.1.0.5/24
  Ipv4Address gateway;
  std::string mac;
  unsigned mtu = 0;
  std::string bridge;       // host bridge to attach the host end to ("" when attach=false)
  std::string host_ifname;  // name for the host end of the veth
  bool attach = true;
  std::string name;
  std::vector<std::string> aliases;
  std::string service;
  std::map<std::string, std::string> labels;
  std::string owner;  // "" for endpoints made before owners were recorded
  std::string cni_config;
  // Where the container resolves names: swarmnetd's DNS at the network's
  // gateway, and the network's name as search domain. Empty when the
  // daemon serves no DNS (--no-dns).
  std::vector<Ipv4Address> dns_servers;
  std::vector<std::string> dns_search;
};

// PATCH /v1/networks/NAME/endpoints/CONTAINER/IFNAME: names learnt after
// the attachment (Docker names the container to its driver only after Join).
// Absent fields stay as they are.
struct EndpointUpdate {
  std::optional<std::string> name;
  std::optional<std::vector<std::string>> aliases;
  std::optional<std::string> service;
};

// POST /v1/networks/NAME/gc: CNI GC for one network configuration. Only
// endpoints the CNI plugin made for that configuration are candidates.
struct GcRequest {
  std::vector<AttachmentKey> valid;
  std::string cni_config;
};
struct GcResult {
  std::vector<AttachmentKey> released;
};

struct Status {
  std::string node_id;
  std::string node_name;
  std::string version;
  size_t networks = 0;
  size_t endpoints = 0;
};

// A port of a service (ServiceCreate, ServiceUpdate, Service).
struct ServicePort {
  uint16_t target = 0;
  std::string protocol = "tcp";  // "tcp" or "udp"
  // nullopt: not published (a port for SRV records); 0: published on a
  // port chosen for it (ingress: from 30000-32767; host: on each task's node).
  std::optional<uint16_t> published;
  std::string publish_mode;  // "" when not published, else "host" or "ingress" (the default)
  auto operator<=>(const ServicePort&) const = default;
};

// A service's health check; an empty kind: none.
struct HealthCheck {
  std::string kind;  // "", "tcp" (connect) or "http" (GET, 2xx/3xx is healthy)
  uint16_t port = 0;
  std::string path;  // http: an absolute path, default "/"
  unsigned interval_s = 5;
  unsigned retries = 3;  // failures in a row before a task is unhealthy
  auto operator<=>(const HealthCheck&) const = default;
};

// POST /v1/services
struct ServiceCreate {
  std::string name;
  std::vector<std::string> networks;  // names or ids, at least one
  std::string endpoint_mode = "vip";  // "vip" or "dnsrr"
  std::vector<ServicePort> ports;
  HealthCheck health;
};

// PATCH /v1/services/NAME: the whole new list of ports (nothing else can change).
struct ServiceUpdate {
  std::vector<ServicePort> ports;
};

// POST /v1/services/NAME/attach (NAME "-": of no service)
struct ServiceAttach {
  std::string network;
  std::string container_id;
  std::string ifname = "eth0";
};
struct ServiceAttached {
  std::string container_id;
  std::string network;  // name
  std::string service;  // "" when detached
};

// A host-mode port a task publishes on its node, as its node programmed it.
struct TaskPort {
  std::string protocol;
  uint16_t published = 0;
  uint16_t target = 0;
  std::string origin;
};

struct ServiceTask {
  std::string container_id;
  std::string network;  // name
  std::string node;     // id
  bool node_alive = false;
  std::string ip;
  bool healthy = true;
  std::vector<TaskPort> host_ports;
};

struct ServiceVip {
  std::string network;  // name
  std::string address;
};

// GET /v1/services/NAME (with tasks), each element of GET /v1/services
// (without).
struct Service {
  std::string id;
  std::string name;
  std::string endpoint_mode;
  std::vector<std::string> networks;  // names
  std::vector<ServiceVip> vips;       // one per network in vip mode; a JSON object NETWORK: ADDRESS
  std::optional<std::string> ingress_vip;
  std::vector<ServicePort> ports;
  HealthCheck health;
  size_t task_count = 0;
  size_t healthy_count = 0;
  std::optional<std::vector<ServiceTask>> tasks;
};

// Error body of every non-2xx reply.
struct ErrorBody {
  std::string code;  // to_string(Errc)
  std::string message;
};

// JSON conversions (Boost.JSON customisation points).
void tag_invoke(json::value_from_tag, json::value&, const NetworkCreate&);
NetworkCreate tag_invoke(json::value_to_tag<NetworkCreate>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const Network&);
Network tag_invoke(json::value_to_tag<Network>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const AttachmentKey&);
AttachmentKey tag_invoke(json::value_to_tag<AttachmentKey>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const EndpointCreate&);
EndpointCreate tag_invoke(json::value_to_tag<EndpointCreate>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const EndpointUpdate&);
EndpointUpdate tag_invoke(json::value_to_tag<EndpointUpdate>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const Endpoint&);
Endpoint tag_invoke(json::value_to_tag<Endpoint>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const GcRequest&);
GcRequest tag_invoke(json::value_to_tag<GcRequest>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const GcResult&);
GcResult tag_invoke(json::value_to_tag<GcResult>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const Status&);
Status tag_invoke(json::value_to_tag<Status>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const ServicePort&);
ServicePort tag_invoke(json::value_to_tag<ServicePort>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const HealthCheck&);
HealthCheck tag_invoke(json::value_to_tag<HealthCheck>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const ServiceCreate&);
ServiceCreate tag_invoke(json::value_to_tag<ServiceCreate>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const ServiceUpdate&);
ServiceUpdate tag_invoke(json::value_to_tag<ServiceUpdate>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const ServiceAttach&);
ServiceAttach tag_invoke(json::value_to_tag<ServiceAttach>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const ServiceAttached&);
ServiceAttached tag_invoke(json::value_to_tag<ServiceAttached>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const Service&);
Service tag_invoke(json::value_to_tag<Service>, const json::value&);
void tag_invoke(json::value_from_tag, json::value&, const ErrorBody&);
ErrorBody tag_invoke(json::value_to_tag<ErrorBody>, const json::value&);

// Network names: what Docker accepts, [A-Za-z0-9][A-Za-z0-9_.-]{0,62}.
bool valid_network_name(std::string_view name);

// Why `subnet` cannot be a network's, or nullopt when it can: it overlaps a
// range that IP gives its own meaning (0.0.0.0/8 "this network", loopback
// 127.0.0.0/8, link-local 169.254.0.0/16, multicast 224.0.0.0/4, reserved
// 240.0.0.0/4 with the broadcast 255.255.255.255), so a gateway or route in
// it would break the host. The daemon, swarmnetctl and the Docker driver all
// ask here.
std::optional<std::string> subnet_refusal(const Ipv4Prefix& subnet);

}  // namespace swarmnet::api
