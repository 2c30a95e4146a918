// Kernel IPVS through its generic netlink family "IPVS" (libnl-genl-3), the
// interface ipvsadm and libnetwork use. Only what swarmnet needs: IPv4
// services keyed by firewall mark, their destinations, and the global
// timeouts. One socket, bound to the network namespace it was opened in
// (IPVS state is per namespace). Not thread-safe.
//
// Every call either does what it says or throws swarmnet::Error: not_found
// when the kernel has no IPVS (or the service is missing, where it matters),
// conflict for "exists", internal with the kernel's message otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/ipv4.hpp"

struct nl_sock;

namespace swarmnet::lb {

// The scheduler flags of ip_vs_mh (include/uapi/linux/ip_vs.h names them
// only from 4.18 on, so older headers lack them): MH_PORT hashes the source
// port with the source address, so flows (not clients) are spread.
inline constexpr uint32_t kIpvsMhFallback = 0x0008;  // IP_VS_SVC_F_SCHED1
inline constexpr uint32_t kIpvsMhPort = 0x0010;      // IP_VS_SVC_F_SCHED2

struct IpvsService {
  uint32_t fwmark = 0;
  std::string scheduler;  // "mh", "rr", ...
  uint32_t flags = 0;     // IP_VS_SVC_F_* (scheduler flags included)

  bool operator==(const IpvsService&) const = default;
};

struct IpvsDestination {
  Ipv4Address address;
  uint16_t port = 0;            // 0: keep the packet's destination port
  uint32_t forwarding = 0;      // IP_VS_CONN_F_MASQ (NAT) = 0
  int weight = 1;
  uint32_t active_connections = 0;    // read back only
  uint32_t inactive_connections = 0;  // read back only
};

// Seconds; 0 in a set() call leaves that timeout unchanged.
struct IpvsTimeouts {
  uint32_t tcp = 0;
  uint32_t tcp_fin = 0;
  uint32_t udp = 0;

  bool operator==(const IpvsTimeouts&) const = default;
};

class IpvsSocket {
 public:
  // Connects in the calling thread's namespace and resolves the "IPVS"
  // family (which makes the kernel load ip_vs if it can).
  // Error(not_found) if this kernel has no IPVS.
  static IpvsSocket open();

  IpvsSocket(IpvsSocket&&) noexcept;
  IpvsSocket& operator=(IpvsSocket&&) noexcept;
  ~IpvsSocket();

  // Every fwmark service (address/port services are skipped: not ours).
  std::vector<IpvsService> fwmark_services();
  // Adds a service; Error(conflict) if its mark is taken.
  void add_service(const IpvsService& service);
  // Changes the scheduler/flags of an existing service.
  void update_service(const IpvsService& service);
  // Removes a service and its destinations; false if it did not exist.
  bool delete_service(uint32_t fwmark);

  // Error(not_found) if the service does not exist.
  std::vector<IpvsDestination> destinations(uint32_t fwmark);
  void add_destination(uint32_t fwmark, const IpvsDestination& destination);
  // False if it was not there.
  bool delete_destination(uint32_t fwmark, const IpvsDestination& destination);

  IpvsTimeouts timeouts();
  void set_timeouts(const IpvsTimeouts& timeouts);

 private:
  IpvsSocket(struct nl_sock* sock, int family) : sock_(sock), family_(family) {}
  struct nl_sock* sock_ = nullptr;
  int family_ = 0;
};

}  // namespace swarmnet::lb
