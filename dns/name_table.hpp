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
#include <deque>
#include <cstdint>
#include <map>
#include <set>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ipv4.hpp"
#include "common/key_digest.hpp"
#include "dns/hash_index.hpp"
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
  static constexpr uint32_t kNone = HashIndex::kNone;

  // Containers' names: most of the table, so held compactly (about 150
  // bytes a name, bench/dns_names). An endpoint's name or one of its
  // aliases: `name` on `network` answers `ip`. The records of one
  // (network, name) are chained from the name index, an endpoint's from the
  // endpoint, and names (not aliases) per address from the address index,
  // for PTR.
  struct Record {
    std::string name;  // lower case; held inline up to 15 characters
    Ipv4Address ip;
    uint32_t network = 0;
    uint32_t next_same_name = kNone;
    uint32_t next_same_ip = kNone;
    uint32_t next_of_endpoint = kNone;
    bool ptr = false;  // the endpoint's own name: answers the reverse name of ip
  };
  // The daemon's endpoint key is some 110 bytes (network, node, container,
  // interface): more than everything else a name costs here. An endpoint is
  // known by its key's digest instead (common/key_digest.hpp).
  struct Endpoint {
    KeyDigest key;
    Ipv4Address ip;
    uint32_t network = 0;
    uint32_t first_record = kNone;
    const std::string* service = nullptr;  // its key in tasks_by_service_, if a task
    bool local = false;
    bool healthy = true;
  };
  // A deque with its free slots reused: ids stay valid, nothing moves.
  template <class T>
  struct Slab {
    std::deque<T> items;
    std::vector<uint32_t> free;
    uint32_t add(T item);
    void remove(uint32_t id);
  };

  // Services' names (VIPs, tasks.NAME, dnsrr, SRV): few next to containers',
  // rebuilt whole when a task changes. Each address or SRV remembers its
  // owner ("svc:" + service id) so a rebuild removes exactly its own.
  // `owner` points at the key of contributions_ (an unordered_map node, so
  // the address is stable until the contribution is withdrawn, which
  // removes every record pointing at it first).
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
    std::vector<std::string> name_keys;                 // keys it added addresses or SRVs to
    std::vector<Ipv4Address> ptrs;                      // addresses it added PTRs for
  };
  struct Ptr {
    uint32_t network;
    std::string target;  // "name.network"
    const std::string* owner;
  };
  struct Network {
    std::string name;  // lower case; "" once removed
    Ipv4Address gateway;
  };

  std::optional<Scope> scope_locked(Ipv4Address source, Ipv4Address destination) const;
  uint32_t network_index(const std::string& id);
  std::string_view network_name(uint32_t index) const;  // "" if unknown

  static uint64_t name_hash(uint32_t network, std::string_view lower_name);
  uint32_t find_endpoint(const KeyDigest& key) const;
  // The first record of a name, or of an address's PTRs; kNone if none.
  uint32_t find_name(uint32_t network, std::string_view lower_name) const;
  uint32_t find_address(Ipv4Address ip) const;
  // Puts record `id` at the head of a chain (`next`: which one) whose head
  // was `head`, or takes it out of it; the index points at the new head.
  void link(HashIndex& index, uint64_t hash, uint32_t head, uint32_t id, uint32_t Record::*next);
  void unlink(HashIndex& index, uint64_t hash, uint32_t head, uint32_t id, uint32_t Record::*next);
  void add_record(uint32_t endpoint, std::string name, bool ptr);
  // Takes an endpoint's records, task membership and local index away; the
  // endpoint itself stays.
  void strip_endpoint(uint32_t id);
  // Files a local endpoint under its address and its container;
  // unindex_local takes it out of both (nothing if it is not there).
  void index_local(uint32_t endpoint, const std::string& container);
  void unindex_local(uint32_t endpoint);
  // A task's name for dnsrr SRV targets ("" if it has none).
  std::string_view endpoint_name(const Endpoint& e) const;

  // A name's key in names_: the network's index (4 bytes), then the name in lower case.
  static void write_key(std::string& out, uint32_t network, std::string_view name);
  static std::string key_for(uint32_t network, std::string_view name);
  void withdraw(const std::string& owner);
  void add_address(const std::string& owner, uint32_t network, std::string_view name, Ipv4Address ip);
  void add_ptr(const std::string& owner, uint32_t network, Ipv4Address ip, std::string target);
  void add_srv(const std::string& owner, uint32_t network, std::string_view name, uint16_t port,
               std::string target);
  void rebuild_service(const std::string& service_name);
  void rebuild_service_locked(const ServiceInfo& service);
  void forget_service_name(const std::string& name, const std::string& id);

  // What a lookup found: the addresses and the SRVs (with the network their
  // name was found in, for the target).
  struct Found;
  bool gather(uint32_t network, std::string_view lower_name, Found& found) const;

  uint32_t ttl_;
  mutable std::shared_mutex mutex_;
  mutable std::atomic<uint64_t> rotation_{0};

  std::map<std::string, uint32_t> network_ids_;  // network id -> index
  std::vector<Network> networks_;                // by index (0 unused)

  Slab<Endpoint> endpoints_;
  Slab<Record> records_;
  HashIndex endpoint_index_;  // KeyDigest -> endpoint
  HashIndex name_index_;      // (network, name) -> first record of that name
  HashIndex address_index_;   // ip -> first PTR record of that address

  std::unordered_map<std::string, NameEntry> names_;       // key_for() -> entry
  std::unordered_map<uint32_t, std::vector<Ptr>> ptrs_;    // ip -> PTRs
  std::map<std::string, ServiceInfo> services_;            // by id
  std::map<std::string, std::set<std::string>> service_ids_by_name_;  // name -> ids of services_
  std::unordered_map<std::string, Contribution> contributions_;  // by owner
  std::unordered_map<std::string, std::vector<uint32_t>> tasks_by_service_;  // name -> endpoints

  // Local containers, for a query's scope (the networks of the container
  // that asks): ip -> local endpoints; endpoint -> its container; container
  // -> its local endpoints (whose networks are the scope). A container is
  // known by its id's digest, and each pair is one small node: with the id
  // and a vector per address and per container this index cost 160 bytes
  // of every local endpoint (bench/daemon_memory.sh, heaptrack).
  struct DigestHash {
    size_t operator()(const KeyDigest& d) const noexcept { return d.a; }
  };
  std::unordered_multimap<uint32_t, uint32_t> local_by_ip_;
  std::unordered_map<uint32_t, KeyDigest> local_containers_;
  std::unordered_multimap<KeyDigest, uint32_t, DigestHash> local_by_container_;
  std::unordered_map<uint32_t, uint32_t> gateways_;  // gateway ip -> network index
};

}  // namespace swarmnet::dns
