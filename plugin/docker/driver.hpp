// The Docker plugin's logic: each NetworkDriver and IpamDriver call turned
// into swarmnetd API requests and host link work, behind narrow interfaces
// (the daemon, the host's links, the port publisher) so that it is tested
// with fakes and no root.
//
// How Docker's objects map onto swarmnet's:
// - IPAM pool = a swarmnet network; the PoolID is the network's id. Which
//   network: `--ipam-opt swarmnet.network=NAME`, else the one whose subnet is
//   `--subnet`; when none exists it is created (named NAME, or
//   "docker-A.B.C.D-LEN" after the subnet, or "docker-RANDOM" with neither),
//   and deleted again by ReleasePool if this host created it.
// - Docker network = the swarmnet network of its pool (found by subnet in
//   CreateNetwork, remembered in the state directory by Docker network id).
// - An address (RequestAddress) is a swarmnetd endpoint with attach=false,
//   container id "docker-ipam-RANDOM": a reservation. CreateEndpoint turns it
//   into the endpoint proper (container id = Docker's endpoint id, attach=true,
//   same address: the reservation is deleted and the address taken statically
//   right after; swarmnetd's allocator moves forward, so it does not hand the
//   address to anyone else in between); DeleteEndpoint turns it back into a
//   reservation, ReleaseAddress frees it. So every Docker step leaves
//   swarmnetd's state consistent on its own, and nothing is held only in
//   this process: it may restart at any time.
// - Join creates the veth pair in the host namespace (Docker moves SrcName
//   into the container and names it eth<N>), the host end on the network's
//   bridge; the MAC is swarmnetd's (derived from the address), which remote
//   hosts put in their FDB.
#pragma once

#include <boost/json.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/api.hpp"
#include "plugin/docker/protocol.hpp"

namespace swarmnet::docker {

// swarmnetd's API (an ApiClient in the program). Throws swarmnet::Error
// with the daemon's code and message.
class DaemonApi {
 public:
  virtual ~DaemonApi() = default;
  virtual json::value call(const std::string& method, const std::string& target,
                           const json::value* body = nullptr) = 0;
};

// The host namespace's links.
class HostLinks {
 public:
  virtual ~HostLinks() = default;
  // A veth pair, both ends here: `host_end` enslaved to `bridge` and up,
  // `container_end` down with `mac` (Docker moves and renames it). A link
  // left by an earlier attempt under either name is replaced.
  virtual void create_pair(const std::string& host_end, const std::string& container_end,
                           unsigned mtu, const std::string& mac, const std::string& bridge) = 0;
  // False when it did not exist.
  virtual bool remove(const std::string& name) = 0;
};

// Host-mode published ports (-p), one set per Docker endpoint.
class PortPublisher {
 public:
  virtual ~PortPublisher() = default;
  // Replaces what the endpoint published before.
  virtual void publish(const std::string& endpoint_id, Ipv4Address container,
                       const std::vector<PortBinding>& ports) = 0;
  // Idempotent.
  virtual void unpublish(const std::string& endpoint_id) = 0;
};

// Optional: the container behind a Docker endpoint, from dockerd's API.
struct ContainerInfo {
  std::string id;
  std::string name;
  std::map<std::string, std::string> labels;
  // --network-alias, docker network connect --alias: on the endpoint's network only.
  std::vector<std::string> aliases;
};

// Told of every Join, to find the container and give swarmnetd its names
// later (container_names.hpp). Must not block.
class EndpointNamer {
 public:
  virtual ~EndpointNamer() = default;
  virtual void joined(const std::string& network_id, const std::string& endpoint_id) = 0;
};

// What this plugin remembers between calls, in files (survives restarts).
class StateDir {
 public:
  explicit StateDir(std::string dir);
  struct NetworkEntry {
    std::string network_id;  // swarmnet's
    std::string name;        // swarmnet's
    Ipv4Prefix subnet;
    Ipv4Address gateway;
    bool internal = false;  // no default route through it (--internal)
  };
  std::optional<NetworkEntry> network(const std::string& docker_network_id) const;
  void put_network(const std::string& docker_network_id, const NetworkEntry& e);
  bool erase_network(const std::string& docker_network_id);

  struct PoolEntry {
    std::string network_id;
    std::string name;
    bool created = false;  // this plugin created the swarmnet network
    std::optional<Ipv4Prefix> ip_range;  // --ip-range
  };
  std::optional<PoolEntry> pool(const std::string& pool_id) const;
  // The pool id whose entry names swarmnet network `network_id`, if any.
  std::optional<std::string> pool_of_network(const std::string& network_id) const;
  void put_pool(const std::string& pool_id, const PoolEntry& e);
  bool erase_pool(const std::string& pool_id);

 private:
  std::string dir_;
};

inline constexpr const char* kReservationPrefix = "docker-ipam-";
inline constexpr const char* kEndpointIfname = "docker";  // swarmnetd's key part for Docker endpoints

class Driver {
 public:
  Driver(DaemonApi& daemon, HostLinks& links, PortPublisher& publisher, StateDir& state,
         EndpointNamer* namer = nullptr);

  // One plugin call: `method` is the URL path ("/NetworkDriver.Join"),
  // `body` the raw request. Never throws: errors become the protocol's
  // error field. Returns the HTTP status (200, also for errors Docker
  // should see; 404 for an unknown method) and the reply body.
  std::pair<unsigned, json::object> handle(const std::string& method, std::string_view body);

 private:
  json::object dispatch(const std::string& method, const json::value& body);

  json::object request_pool(const RequestPool& r);
  json::object release_pool(const ReleasePool& r);
  json::object request_address(const RequestAddress& r);
  json::object release_address(const ReleaseAddress& r);
  json::object create_network(const CreateNetwork& r);
  json::object delete_network(const NetworkRef& r);
  json::object create_endpoint(const CreateEndpoint& r);
  json::object delete_endpoint(const EndpointRef& r);
  json::object endpoint_info(const EndpointRef& r);
  json::object join(const Join& r);
  json::object leave(const EndpointRef& r);
  json::object program_external(const ProgramExternalConnectivity& r);
  json::object revoke_external(const EndpointRef& r);

  StateDir::NetworkEntry network_of(const std::string& docker_network_id) const;
  api::Endpoint endpoint_of(const StateDir::NetworkEntry& n, const std::string& endpoint_id);
  std::optional<api::Endpoint> find_endpoint(const std::string& network_id,
                                             const std::string& container_id);
  std::vector<api::Endpoint> endpoints(const std::string& network_id);
  // This host's reservation of `a` in a listing of endpoints(), or null.
  const api::Endpoint* reservation_in(const std::vector<api::Endpoint>& eps, Ipv4Address a);
  // A reservation of `address`, else of a free address inside `range`
  // (--ip-range), else of any free address.
  api::Endpoint reserve(const std::string& network_id, std::optional<Ipv4Address> address,
                        std::optional<Ipv4Prefix> range = std::nullopt);
  // Makes the pool's network again with what `docker network create` asked
  // for (options Docker gives the network driver only after the IPAM pool).
  api::Network recreate(const std::string& pool_id, const api::Network& old,
                        const api::NetworkCreate& wanted);
  std::optional<api::Network> find_network(const std::string& name_or_id);
  std::optional<api::Network> find_network_by_subnet(const Ipv4Prefix& subnet);
  const std::string& node_id();

  DaemonApi& daemon_;
  HostLinks& links_;
  PortPublisher& publisher_;
  StateDir& state_;
  EndpointNamer* namer_;
  std::string node_id_;
  // Docker calls concurrently; one call at a time keeps each reservation
  // swap and each state file change whole.
  std::mutex mutex_;
};

// The name of the container end while it is still in the host namespace.
std::string container_end_name(const std::string& host_ifname);
// Swarmnet network name for a Docker pool created without a name.
std::string generated_network_name(const std::optional<Ipv4Prefix>& subnet);

}  // namespace swarmnet::docker
