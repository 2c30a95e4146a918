// What swarmnetd knows, as versioned tables. Each entry carries a Version
// (Lamport clock, node id), and deletions are tombstones, so the multi-host
// gossip can merge tables from several nodes by "highest version wins" with a
// deterministic tie-break on the node id. On one host the same model is used
// unchanged: the journal records every entry that changes.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ipv4.hpp"
#include "common/shared_string.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;

struct Version {
  uint64_t lamport = 0;
  SharedString node;  // one of a few node ids, in every entry
  auto operator<=>(const Version&) const = default;
};

struct NetworkRecord {
  std::string id;
  std::string name;
  Ipv4Prefix subnet;
  Ipv4Address gateway;
  unsigned mtu = 0;
  uint32_t vni = 0;
  bool internal = false;
  // VXLAN between hosts in IPsec ESP (daemon/encryption.hpp).
  bool encrypted = false;
  // The routing mesh's network (daemon/ingress/ingress.hpp): it carries
  // published traffic between the nodes' ingress sandboxes only.
  bool ingress = false;
  // Whether containers join it (every network but the routing mesh's). One
  // that holds none has no gateway address on its bridges, no DNS, no
  // isolation rules and no node address (daemon/load_balancing.hpp).
  bool carries_containers() const { return !ingress; }
  unsigned block_length = 0;
  // Where addresses without a static one come from (Docker's --ip-range).
  // Absent in records of earlier releases, which ignore it.
  std::optional<Ipv4Prefix> ip_range;
  std::string created_by;
};

// One address block of a network's subnet and the node that owns it. Only
// the owner hands out addresses inside the block.
struct BlockRecord {
  std::string network_id;
  Ipv4Prefix block;
  std::string owner;
};

// A port of this endpoint published on its own node (host mode): traffic to
// any local address of the node on `published` goes straight to this
// endpoint's `target`. From the service's host-mode ports ("service", the
// number chosen on the node when the service left it open) or from the
// runtime (the CNI portMappings capability: "runtime").
struct HostPortRecord {
  std::string protocol = "tcp";
  uint16_t published = 0;
  uint16_t target = 0;
  std::string origin = "service";
  auto operator<=>(const HostPortRecord&) const = default;
};

// An endpoint's labels. Most endpoints have none: an empty set is one null
// pointer (8 bytes) where a std::map is 48 in every record. Reads as a
// const std::map; writing allocates the map.
class Labels {
 public:
  using Map = std::map<std::string, std::string>;
  Labels() = default;
  Labels(const Map& m) { *this = m; }  // NOLINT: implicit, as the map it stands for
  Labels(std::initializer_list<Map::value_type> items) : Labels(Map(items)) {}
  Labels(const Labels& o) : map_(o.map_ ? std::make_unique<Map>(*o.map_) : nullptr) {}
  Labels(Labels&&) noexcept = default;
  Labels& operator=(const Labels& o) {
    if (this != &o) map_ = o.map_ ? std::make_unique<Map>(*o.map_) : nullptr;
    return *this;
  }
  Labels& operator=(Labels&&) noexcept = default;
  Labels& operator=(const Map& m) {
    map_ = m.empty() ? nullptr : std::make_unique<Map>(m);
    return *this;
  }
  Labels& operator=(std::initializer_list<Map::value_type> items) { return *this = Map(items); }

  const Map& map() const { return map_ ? *map_ : none(); }
  operator const Map&() const { return map(); }  // NOLINT: reads as the map
  Map::const_iterator begin() const { return map().begin(); }
  Map::const_iterator end() const { return map().end(); }
  Map::const_iterator find(const std::string& key) const { return map().find(key); }
  size_t count(const std::string& key) const { return map().count(key); }
  bool empty() const { return !map_ || map_->empty(); }
  size_t size() const { return map_ ? map_->size() : 0; }
  void clear() { map_.reset(); }
  std::string& operator[](const std::string& key) { return own()[key]; }
  template <class... Args>
  auto emplace(Args&&... args) {
    return own().emplace(std::forward<Args>(args)...);
  }
  friend bool operator==(const Labels& a, const Labels& b) { return a.map() == b.map(); }
  friend bool operator==(const Labels& a, const Map& b) { return a.map() == b; }

 private:
  Map& own() {
    if (!map_) map_ = std::make_unique<Map>();
    return *map_;
  }
  static const Map& none();
  std::unique_ptr<Map> map_;
};

// The fields that many endpoints repeat (their network, node, service,
// owner, interface name) are SharedStrings: held once, not per endpoint.
struct EndpointRecord {
  std::string id;
  SharedString network_id;
  SharedString node;
  std::string container_id;
  SharedString ifname;
  std::string netns;
  Ipv4Address ip;
  // Beside ip, in its 8 bytes' padding (20,000 of these are held).
  bool attach = true;  // false: IPAM only, no interface (host_ifname "")
  // The task's health as its own host last checked it (true when the
  // service has no check). Unhealthy tasks leave DNS answers and balancers.
  bool healthy = true;
  // Its MAC address, derived from its IP address as Docker does (02:42 and
  // the address's four bytes): stable, unique within the network, the same
  // on every host, so not held (20,000 endpoints held 1.1 MB of copies).
  // Records carry it as "mac" all the same, for those that read it.
  std::string mac() const;
  std::string host_ifname;  // "" when attach is false (IPAM only)
  std::string name;
  std::vector<std::string> aliases;
  SharedString service;
  Labels labels;
  std::vector<HostPortRecord> host_ports;
  // Who made it (api::kOwner*): cleanup on behalf of one creator (CNI GC,
  // the reaper) never releases another's endpoint. "" in records written
  // before owners were recorded: never released by such cleanup.
  SharedString owner;
  SharedString cni_config;  // CNI: the runtime's network configuration name
};

enum class ServiceMode { vip, dnsrr };

// A port of a service: the port its tasks listen on, and how it is
// published to the outside (publish_mode "" = not published).
struct ServicePortRecord {
  uint16_t target = 0;
  std::string protocol = "tcp";  // "tcp" or "udp"
  uint16_t published = 0;
  std::string publish_mode;  // "", "ingress" or "host"
  auto operator<=>(const ServicePortRecord&) const = default;
};

struct HealthCheckRecord {
  std::string kind;  // "" (none), "tcp" or "http"
  uint16_t port = 0;
  std::string path;  // http only
  unsigned interval_s = 5;
  unsigned retries = 3;
  auto operator<=>(const HealthCheckRecord&) const = default;
};

// A service: its tasks are the endpoints whose `service` is its name.
struct ServiceRecord {
  std::string id;
  std::string name;
  ServiceMode mode = ServiceMode::vip;
  std::vector<std::string> networks;          // network ids
  std::map<std::string, Ipv4Address> vips;    // network id -> VIP (vip mode)
  // The routing mesh's VIP, on the ingress network, while the service
  // publishes a port in ingress mode. Not in `vips`: no container is on the
  // ingress network, and nothing resolves this address by name.
  std::optional<Ipv4Address> ingress_vip;
  std::vector<ServicePortRecord> ports;
  HealthCheckRecord health;
  std::string created_by;
};

// What a node says of itself to the others. Only that node writes it, so
// it travels by gossip (a broadcast when it changes, and in every push/pull,
// which repairs a lost broadcast) rather than in the store's tables, and
// nothing of it is kept across a restart: the node says it again.
struct NodeRecord {
  std::string id;
  // Its writer's counter (unix microseconds when written, always growing):
  // a higher one replaces a lower.
  uint64_t version = 0;
  // Encrypted networks: why this node cannot carry them ("": it can).
  std::string esp_missing;
  // The cluster key generations whose inbound ESP SAs (from every peer) this
  // node has installed: a peer moves its outbound SA to this node to a new
  // generation only once it is listed here.
  std::vector<uint32_t> esp_inbound;
  // The version of the cluster keyring this node has applied and saved
  // (0: a node of a version that does not say): a key rotation takes its
  // next step once every member lists the current one (daemon/cluster.hpp).
  uint64_t keyring_version = 0;
  auto operator<=>(const NodeRecord&) const = default;
};

// Local to this node, never replicated: where round-robin allocation resumes.
struct CursorRecord {
  std::string network_id;
  Ipv4Address last_allocated;
};

template <class T>
struct Entry {
  Version version;
  bool deleted = false;
  int64_t deleted_at = 0;  // unix seconds; tombstones are reaped after a while
  T value;
};

// A table of the store: entries (tombstones included) by key, in key order.
template <class T>
using Table = std::map<std::string, Entry<T>>;

json::value to_json(const NetworkRecord&);
json::value to_json(const BlockRecord&);
// With `sp`, the value lives in that storage (a push/pull serializes every
// endpoint: a monotonic resource saves each one's allocations and frees).
json::value to_json(const EndpointRecord&, json::storage_ptr sp = {});
json::value to_json(const CursorRecord&);
json::value to_json(const ServiceRecord&);
json::value to_json(const Version&, json::storage_ptr sp = {});
json::value to_json(const NodeRecord&);
// Decoders throw Error(invalid_argument) naming the field.
void from_json(const json::value&, NetworkRecord&);
void from_json(const json::value&, BlockRecord&);
void from_json(const json::value&, EndpointRecord&);
void from_json(const json::value&, CursorRecord&);
void from_json(const json::value&, ServiceRecord&);
void from_json(const json::value&, Version&);
void from_json(const json::value&, NodeRecord&);

// This host's kernel objects of a network: its bridge "swn-" and its VXLAN
// device "swx-" followed by 11 characters of the network id (IFNAMSIZ 15).
std::string bridge_name(const std::string& network_id);
std::string vxlan_name(const std::string& network_id);

// Keys of the tables. An endpoint's key is its network's id, node's id,
// container's id and interface name, in that order, each part followed by
// kKeySeparator but the last: the keys of one network, and of one node in
// it, are a range of the ordered table (ReadModel's EndpointKeys).
inline constexpr char kKeySeparator = '\x1f';
// Just above the separator: `prefix + kKeySeparator` .. `prefix + kPastSeparator`
// bounds every key that continues `prefix` with a separator.
inline constexpr char kPastSeparator = kKeySeparator + 1;
std::string block_key(const std::string& network_id, const Ipv4Prefix& block);
std::string endpoint_key(const std::string& network_id, const std::string& node,
                         const std::string& container_id, const std::string& ifname);

}  // namespace swarmnet::daemon
