// The names swarmnet answers, scoped by network, and the answer to one query.
//
// The daemon feeds it from the replicated tables (networks, endpoints,
// services); the DNS server asks it, from its own thread. Updates take an
// exclusive lock and touch only the changed entry's names; lookups take a
// shared lock and do not allocate, so serving never waits for more than one
// small update.
//
// What a container can resolve (Docker's rules, network-scoped):
//   NAME, NAME.NETWORK        its own and other containers' names and aliases
//   SERVICE, SERVICE.NETWORK  a service's VIP (vip mode) or its healthy
//                             tasks' addresses (dnsrr mode)
//   tasks.SERVICE             the healthy tasks' addresses
//   _PORT._PROTO.SERVICE      SRV for the service's ports
//   d.c.b.a.in-addr.arpa      PTR for containers, tasks and VIPs
// but only on the networks the querying container is attached to: for it a
// name of another network is an outside name, forwarded upstream.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ipv4.hpp"
#include "dns/message.hpp"

namespace swarmnet::dns {

// A name as a container would type it: one DNS label of hostname
// characters (letters, digits, '-', '_'), 1 to 63 of them.
bool is_hostname_label(std::string_view s);

struct NetworkInfo {
  std::string id;
  std::string name;
  Ipv4Address gateway;  // where this host answers DNS for the network
};

struct EndpointInfo {
  std::string key;  // unique (the daemon's endpoint key)
  std::string network_id;
  std::string container_id;
  std::string name;  // "" when the engine gave none
  std::vector<std::string> aliases;
  Ipv4Address ip;
  bool local = false;   // on this host: its queries come to this server
  std::string service;  // service name it is a task of ("" if none)
  bool healthy = true;
};

struct ServicePort {
  uint16_t port = 0;       // the port the tasks listen on
  std::string protocol;    // "tcp" or "udp"
};

struct ServiceInfo {
  std::string id;
  std::string name;
  bool dnsrr = false;                            // else vip mode
  std::map<std::string, Ipv4Address> vips;       // network id -> VIP (vip mode)
  std::vector<ServicePort> ports;
};

// Which networks a query may see: the querying container's.
struct Scope {
  static constexpr size_t kMax = 32;
  uint32_t networks[kMax];
  size_t count = 0;
  bool contains(uint32_t n) const {
    for (size_t i = 0; i < count; ++i)
      if (networks[i] == n) return true;
    return false;
  }
};

enum class Outcome {
  answered,  // the writer holds the answer (records, NODATA or NXDOMAIN)
  outside,   // not ours for this scope: forward upstream
  refused,   // the source is no container of this host
};

class NameTable {
 public:
  explicit NameTable(uint32_t ttl_seconds = 2) : ttl_(ttl_seconds) {}

  void upsert_network(const NetworkInfo& network);
  void remove_network(const std::string& id);
  void upsert_endpoint(const EndpointInfo& endpoint);
  void remove_endpoint(const std::string& key);
  void upsert_service(const ServiceInfo& service);
  void remove_service(const std::string& id);
  // Drops everything (tests, resync).
  void clear();

  // Answers `query`, sent from `source` to `destination` (a gateway address
  // this host listens on), into `writer`: records, or NODATA or NXDOMAIN
  // with an SOA as RFC 2308 says; or says it is an outside name (forward
  // it) or that the source may not ask (refuse it). The scope: a container
  // of this host sees its networks; the host itself (loopback, or one of
  // its gateway addresses as the source) sees the network whose gateway it
  // asked. One shared lock for the whole answer.
  Outcome respond(const Query& query, Ipv4Address source, Ipv4Address destination,
                  ResponseWriter& writer) const;

  // Every name the table answers, "name.network A ip" lines, for `swarmnetctl dns ls`
  // and tests.
  std::vector<std::string> dump() const;
  size_t name_count() const;
  uint32_t ttl() const { return ttl_; }

 private:
  // A name's addresses on one network, each with who contributed it (an
  // endpoint key or "svc:" + service id) so an update removes exactly its
  // own. `owner` points at the key of contributions_ (an unordered_map
  // node, so the address is stable until the contribution is withdrawn,
  // which removes every record pointing at it first).
  struct Address {
    Ipv4Address ip;
    const std::string* owner;
  };
  struct Srv {
    uint16_t port;
    std::string target;  // "name.network"
    const std::string* owner;
  };
  struct NameEntry {
    std::vector<Address> addresses;
    std::vector<Srv> srvs;
  };
  struct Contribution {
    std::vector<std::string> name_keys;                 // keys it added addresses to
    std::vector<std::pair<uint32_t, Ipv4Address>> ptrs;  // (network, ip) it added PTRs for
    std::vector<std::string> srv_keys;
  };
  struct Ptr {
    uint32_t network;
    std::string target;  // "name.network"
    const std::string* owner;
  };
  struct Network {
    NetworkInfo info;
    uint32_t index;
  };

  std::optional<Scope> scope_locked(Ipv4Address source, Ipv4Address destination) const;
  // A name's key: the network's index (4 bytes), then the name in lower case.
  static void write_key(std::string& out, uint32_t network, std::string_view name);
  static std::string key_for(uint32_t network, std::string_view name);
  uint32_t network_index(const std::string& id);
  void withdraw(const std::string& owner);
  void add_address(const std::string& owner, uint32_t network, std::string_view name, Ipv4Address ip);
  void add_ptr(const std::string& owner, uint32_t network, Ipv4Address ip, std::string target);
  void add_srv(const std::string& owner, uint32_t network, std::string_view name, uint16_t port,
               std::string target);
  void rebuild_service(const std::string& service_name);
  void rebuild_service_locked(const ServiceInfo& service);
  std::string_view network_name(uint32_t index) const;  // "" if unknown
  void index_local(const EndpointInfo& e, bool add);

  uint32_t ttl_;
  mutable std::shared_mutex mutex_;
  mutable std::atomic<uint64_t> rotation_{0};

  std::map<std::string, Network> networks_;                // by id
  std::unordered_map<uint32_t, std::string> network_ids_;  // index -> id
  uint32_t next_network_index_ = 1;
  std::unordered_map<std::string, NameEntry> names_;       // key_for() -> entry
  std::unordered_map<uint32_t, std::vector<Ptr>> ptrs_;    // ip -> PTRs
  std::map<std::string, EndpointInfo> endpoints_;          // by key
  std::map<std::string, ServiceInfo> services_;            // by id
  std::unordered_map<std::string, Contribution> contributions_;  // by owner
  std::unordered_map<std::string, std::set<std::string>> tasks_by_service_;  // name -> endpoint keys
  // Local containers: ip -> container ids; container id -> network indexes.
  std::unordered_map<uint32_t, std::vector<std::string>> local_by_ip_;
  std::unordered_map<std::string, std::vector<uint32_t>> local_networks_;
  std::unordered_map<uint32_t, uint32_t> gateways_;  // gateway ip -> network index
};

}  // namespace swarmnet::dns
