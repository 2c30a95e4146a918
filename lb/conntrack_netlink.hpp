// Used through lb/stale_flows.hpp: forgetting the connection-tracking
// entries of a backend that left a VIP, or of a task that the DNAT of a
// published port no longer sends to straight (the routing mesh's
// shortcut), over a ctnetlink (libmnl) socket.
//
// Why: a DNAT (the balancer's, a published port's) is decided once per
// conntrack entry. A UDP "connection" has no end: as long as a client
// keeps sending from the same source port (a resolver, syslog, statsd),
// each packet renews the entry and keeps its old NAT, so the client never
// fails over to a healthy task.
// TCP needs no such help: a new connection on the tuple is a new entry,
// and an open one is best left on its task (it ends on its own).
// kube-proxy does the same for UDP and SCTP services.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "common/ipv4.hpp"

struct mnl_socket;
struct nlmsghdr;

namespace swarmnet::lb::conntrack {

// One tracked flow as the kernel holds it (IPv4, with ports).
struct Flow {
  uint8_t protocol = 0;             // IPPROTO_UDP: the balancers NAT TCP and UDP, and only UDP is forgotten
  Ipv4Address source, destination;  // the original direction
  uint16_t source_port = 0, destination_port = 0;
  Ipv4Address reply_source;  // who answers: the backend after DNAT
  uint16_t zone = 0;

  bool operator==(const Flow&) const = default;
};

// The backends that left each VIP: VIP -> backends, sorted.
using LeftBackends = std::map<Ipv4Address, std::vector<Ipv4Address>>;

// A port this host publishes, on any of its addresses.
struct PublishedPort {
  uint8_t protocol = 0;  // IPPROTO_UDP
  uint16_t port = 0;
  auto operator<=>(const PublishedPort&) const = default;
};
// The tasks each published port's DNAT no longer sends to straight (the
// routing mesh's shortcut): port -> tasks, sorted.
using LeftDirectTargets = std::map<PublishedPort, std::vector<Ipv4Address>>;

// Both kinds, which forget finds in one dump.
struct Left {
  LeftBackends vips;
  LeftDirectTargets published;
  bool empty() const { return vips.empty() && published.empty(); }
};

// True for the flows forget deletes: UDP, sent to a VIP of `left`
// and NATed to one of the backends that left it.
bool sent_to_left_backend(const Flow& flow, const LeftBackends& left);
// True for the flows forget deletes for a published port of `left`: of its
// protocol, sent to it (at any of this host's addresses) and NATed to one
// of the tasks its DNAT no longer sends to.
bool sent_to_left_direct_target(const Flow& flow, const LeftDirectTargets& left);

class ConntrackSocket {
 public:
  // A netfilter netlink socket in the calling thread's network namespace.
  // Error(unavailable) if it cannot be opened.
  ConntrackSocket();
  ~ConntrackSocket();
  ConntrackSocket(const ConntrackSocket&) = delete;
  ConntrackSocket& operator=(const ConntrackSocket&) = delete;

  // The IPv4 UDP flows of this namespace; only those whose original
  // destination is `to` and whose original destination port is `to_port`,
  // if given. The kernel filters the dump (and still walks its whole table:
  // about 10 ms for 262,144 buckets, whatever the namespace holds); each
  // flow is checked here again.
  std::vector<Flow> udp_flows(std::optional<Ipv4Address> to = std::nullopt,
                              std::optional<uint16_t> to_port = std::nullopt);

  // Deletes the UDP flows sent to a VIP of `left` that were NATed to one of
  // the backends that left it, and those sent to a published port of `left`
  // that were NATed to one of the tasks it left: one dump, then one delete
  // per such flow. Their next packet makes a new entry and a new choice
  // (the VIP's backends, the port's DNAT as it is now). Returns how many it
  // deleted (one that expired meanwhile is not counted). Throws Error with
  // what failed.
  size_t forget(const Left& left);

 private:
  void request(const char* what, ::nlmsghdr* message, int (*callback)(const ::nlmsghdr*, void*),
               void* data);

  struct mnl_socket* sock_ = nullptr;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  std::vector<char> receive_buffer_;
};

}  // namespace swarmnet::lb::conntrack
