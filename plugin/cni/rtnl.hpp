// The plugin's own rtnetlink client: the few requests one CNI command makes,
// written directly on a NETLINK_ROUTE socket. The daemon uses libnl
// (kernel/netlink.hpp); the plugin does not, because a runtime starts it for
// every ADD and DEL: libnl's start-up (its cache and link-type registrations,
// /etc/libnl/classid) and its lookups before each change cost more than the
// changes themselves. Every call does what it says or throws swarmnet::Error
// (conflict for EEXIST, not_found for ENODEV, internal otherwise) with the
// kernel's own message when it sends one.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/netns.hpp"

struct nlmsghdr;

namespace swarmnet::cni {

struct RtnlLink {
  int index = 0;
  std::string mac;  // "02:42:0a:01:00:05"
};

struct RtnlRoute {
  Ipv4Prefix destination;              // 0.0.0.0/0 for the default route
  std::optional<Ipv4Address> gateway;  // nullopt for on-link routes
  int oif_index = 0;
};

// What ADD makes: a veth pair, `host_name` here (up, on the bridge
// `master_index`, with `host_mac`), `peer_name` in `peer_ns` (down, with
// `peer_mac`), both with `mtu`.
struct VethRequest {
  std::string host_name;
  std::string host_mac;
  int master_index = 0;
  std::string peer_name;
  std::string peer_mac;
  unsigned mtu = 0;
};

class Rtnl {
 public:
  // A socket in the calling thread's namespace.
  static Rtnl open();
  // A socket in `ns` (the thread enters it only to create the socket).
  static Rtnl open_in(const kernel::Netns& ns);

  Rtnl(Rtnl&& other) noexcept;
  Rtnl& operator=(Rtnl&&) = delete;
  Rtnl(const Rtnl&) = delete;
  ~Rtnl();

  std::optional<RtnlLink> find_link(const std::string& name);

  // One request: the pair is made whole or not at all (the kernel removes
  // both ends when any part fails). Error(conflict) when either name is
  // taken. NLM_F_EXCL: an existing link of that name is never modified.
  void create_veth(const VethRequest& req, const kernel::Netns& peer_ns);
  // Hairpin mode on a bridge port (a task reaching its own service's VIP).
  void set_hairpin(const std::string& port);
  // Brings link `index` up with `address` (and its broadcast) and a
  // default route via `gateway`, in one round trip. An identical default
  // route already there is no error; a different one is Error(conflict).
  void bring_up(int index, const Ipv4Prefix& address, Ipv4Address gateway);
  // False if there was no such link.
  bool delete_link(const std::string& name);

  // IPv4 addresses of link `index`.
  std::vector<Ipv4Prefix> addresses(int index);
  // IPv4 unicast routes of the main table.
  std::vector<RtnlRoute> routes();

 private:
  using Visit = std::function<void(const nlmsghdr&)>;
  explicit Rtnl(int fd) : fd_(fd) {}
  // Sends `requests` (whole messages, headers filled in here) in one
  // datagram, so the kernel runs them in order within one system call, and
  // waits for each one's ack. Returns one errno per request (0: done); data
  // replies go to `visit`; the kernel's text for the first failure goes to
  // `kernel_message`.
  std::vector<int> transact(std::vector<std::string>& requests, const Visit& visit = {},
                            std::string* kernel_message = nullptr);
  // A dump, restarted when a concurrent change interrupted it: `restart`
  // before each attempt, `visit` for every object.
  void dump(std::string request, const std::string& what, const std::function<void()>& restart,
            const Visit& visit);

  int fd_ = -1;
  unsigned seq_ = 0;
};

// A random unicast, locally administered MAC, as the kernel gives a veth
// end that has none.
std::string random_veth_mac();

}  // namespace swarmnet::cni
