// Link, address and route work through libnl-route-3, on one netlink socket
// bound to one network namespace. Every call either does what it says or
// throws swarmnet::Error (internal for unexpected kernel errors, with the
// kernel's message and the object's name; conflict for "exists";
// not_found for a missing link). Dumps interrupted by a concurrent change
// (NLE_DUMP_INTR) are retried.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/netns.hpp"

struct nl_sock;
struct nl_msg;
struct nlmsghdr;

namespace swarmnet::kernel {

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string kind;  // "veth", "bridge", "vxlan", "" for others
  std::string mac;   // "02:42:0a:01:00:05"
  unsigned mtu = 0;
  bool up = false;
  int master_index = 0;  // 0 when not enslaved
};

struct RouteInfo {
  Ipv4Prefix destination;              // 0.0.0.0/0 for the default route
  std::optional<Ipv4Address> gateway;  // nullopt for on-link routes
  int oif_index = 0;
};

class NetlinkSocket {
 public:
  static constexpr uint32_t kMainTable = 254;  // RT_TABLE_MAIN

  // A socket in the calling thread's namespace.
  static NetlinkSocket open();
  // A socket in another namespace (enters it briefly to create the socket).
  static NetlinkSocket open_in(const Netns& ns);

  NetlinkSocket(NetlinkSocket&&) noexcept;
  NetlinkSocket& operator=(NetlinkSocket&&) noexcept;
  ~NetlinkSocket();

  std::optional<LinkInfo> find_link(const std::string& name);
  std::optional<LinkInfo> find_link(int index);
  LinkInfo get_link(const std::string& name);  // Error(not_found) if missing
  // Every link of this socket's namespace.
  std::vector<LinkInfo> links();
  int link_index(const std::string& name);     // Error(not_found) if missing

  // Creates a veth pair: `name` in this socket's namespace, `peer_name` in
  // `peer_ns`, both with `mtu`, the peer with `peer_mac` when not empty. One
  // netlink request, so a failure leaves nothing behind. Error(conflict) if
  // `name` exists here (the peer name is checked by the kernel in peer_ns;
  // a clash there is also Error(conflict)).
  void create_veth(const std::string& name, const std::string& peer_name, const Netns& peer_ns,
                   unsigned mtu, const std::string& peer_mac);

  // Creates a bridge if missing (no error if it exists), sets mtu, brings up.
  // True when it was created by this call.
  bool ensure_bridge(const std::string& name, unsigned mtu);

  // Deletes a link; false if it did not exist.
  bool delete_link(const std::string& name);

  void set_up(const std::string& name);
  void set_down(const std::string& name);
  void set_mtu(const std::string& name, unsigned mtu);
  void set_master(const std::string& name, const std::string& master);
  // Same, with the master's index already known (saves a lookup per call).
  void set_master(const std::string& name, int master_index);

  // Addresses of a link (IPv4 only).
  std::vector<Ipv4Prefix> addresses(const std::string& link);
  // Adds an address; no error if the same address is already there.
  void add_address(const std::string& link, const Ipv4Prefix& address);
  // Removes; false if it was not there.
  bool remove_address(const std::string& link, const Ipv4Prefix& address);

  // IPv4 routes of the main table.
  std::vector<RouteInfo> routes();
  // Adds a route through `link` (via gateway when given); no error if an
  // identical route exists.
  void add_route(const Ipv4Prefix& destination, std::optional<Ipv4Address> gateway,
                 const std::string& link);

  // Makes the route to `destination` in `table` (the main table unless
  // given) this one, whatever route to it was there (one request: traffic
  // never sees no route).
  void replace_route(const Ipv4Prefix& destination, std::optional<Ipv4Address> gateway,
                     const std::string& link, uint32_t table = kMainTable);
  // Removes the route to `destination` of `table`; false if there was none.
  bool delete_route(const Ipv4Prefix& destination, uint32_t table = kMainTable);

  // Policy routing: packets whose firewall mark is exactly `mark` look up
  // `table`, at `priority` (before the main table's 32766). No error if the
  // same rule is there already.
  void add_mark_rule(uint32_t mark, uint32_t table, uint32_t priority);
  // Removes that rule; false if there was none.
  bool delete_mark_rule(uint32_t mark, uint32_t table, uint32_t priority);

  struct nl_sock* raw() {
    return sock_;
  }

  // A dump for the other kernel/ files that parse attributes libnl's
  // objects do not cover (bridge-port flags, FDB entries). `build` makes the
  // request (header and filter attributes; ownership passes here) and is
  // called once per attempt, because a retried dump needs a fresh sequence
  // number; `visit` sees every reply message; `restart` runs before a retry
  // after NLE_DUMP_INTR, so the caller can drop the interrupted attempt's
  // partial result. Same bounded retries as the dumps above.
  void dump_messages(const std::function<struct nl_msg*()>& build,
                     const std::function<void(struct nlmsghdr*)>& visit,
                     const std::function<void()>& restart, const std::string& what);

 private:
  explicit NetlinkSocket(struct nl_sock* sock) : sock_(sock) {}
  struct nl_sock* sock_ = nullptr;
};

// Throws the Error this library uses for a libnl error code (conflict for
// NLE_EXIST, not_found for NLE_NODEV/NLE_OBJ_NOTFOUND, ...), with libnl's
// message: "what: message". For the other kernel/ files.
[[noreturn]] void throw_netlink_error(int err, const std::string& what);

// Writes a sysctl in the calling thread's namespace ("net/ipv4/ip_forward").
void write_sysctl(const std::string& key, const std::string& value);
std::string read_sysctl(const std::string& key);

}  // namespace swarmnet::kernel
