// IPsec ESP in transport mode through the kernel's XFRM netlink interface
// (raw NETLINK_XFRM: the few messages needed do not justify libnl-xfrm).
// Security associations use AES-GCM (rfc4106(gcm(aes)), a 128-bit key and a
// 32-bit salt, a 128-bit tag) with extended sequence numbers, so a long-lived
// SA never runs out of sequence numbers. Policies select outbound UDP to one
// peer's VXLAN port from a block of source ports (and, if given, with a
// firewall mark): encrypted networks' VXLAN devices send from a block of
// their own (daemon/encryption.hpp), so plain networks' VXLAN to the same
// peer stays plain.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::kernel {

using EspKey = std::array<uint8_t, 20>;  // AES-128 key + 4-byte salt

struct EspState {
  Ipv4Address src;
  Ipv4Address dst;
  uint32_t spi = 0;
  uint32_t reqid = 0;
  EspKey key{};
};

// Outbound: UDP from src:sport/sport_mask to dst:dport (with the mark,
// unless 0) goes through the SA of that reqid (src -> dst, ESP, transport).
struct EspPolicy {
  Ipv4Address src;
  Ipv4Address dst;
  uint16_t dport = 0;
  uint32_t mark = 0;  // 0: any packet, marked or not
  uint32_t reqid = 0;
  uint16_t sport = 0;       // the source ports whose bits under sport_mask
  uint16_t sport_mask = 0;  // equal sport's (mask 0: any source port)
};

// What the kernel holds, as far as we read it back.
struct EspStateInfo {
  Ipv4Address src;
  Ipv4Address dst;
  uint32_t spi = 0;
  uint32_t reqid = 0;
};

class XfrmSocket {
 public:
  // A NETLINK_XFRM socket in the calling thread's namespace.
  // Error(unavailable) if the kernel has no XFRM.
  static XfrmSocket open();
  XfrmSocket(XfrmSocket&& other) noexcept;
  XfrmSocket& operator=(XfrmSocket&& other) noexcept;
  XfrmSocket(const XfrmSocket&) = delete;
  XfrmSocket& operator=(const XfrmSocket&) = delete;
  ~XfrmSocket();

  // Adds or replaces the SA (same dst, spi). Error(unavailable) naming what
  // the kernel lacks when it refuses the algorithm (no esp4, no gcm).
  void update_state(const EspState& state);
  // No error if it is already gone.
  void delete_state(Ipv4Address dst, uint32_t spi);
  std::vector<EspStateInfo> list_states();
  // Adds or replaces the policy (same selector, direction and mark).
  void update_policy(const EspPolicy& policy);
  // No error if it is already gone.
  void delete_policy(const EspPolicy& policy);
  // The outbound policies whose mark is `mark` (0: those without one).
  std::vector<EspPolicy> list_policies(uint32_t mark);
  // An ESP SA with the null cipher (no crypto module needed): whether the
  // kernel has ESP at all. Returns the kernel's errno (0: it has).
  int try_null_esp();

 private:
  explicit XfrmSocket(int fd) : fd_(fd) {}
  // Sends one request and waits for its ack; returns the kernel's errno (0: ok).
  int request(void* message, size_t length);
  // XFRM_MSG_NEWSA or XFRM_MSG_UPDSA; returns the kernel's errno.
  int add_or_update_state(const EspState& state, uint16_t type);
  // Sends a dump request and calls `each` with every reply message.
  template <class F>
  void dump(uint16_t type, F&& each);
  int fd_ = -1;
  uint32_t seq_ = 0;
};

// Whether this kernel can do what encrypted networks need: an ESP SA with
// AES-GCM, tried in a throwaway network namespace (a module list or config
// file can claim a feature a namespace cannot use). nullopt: it can; else
// what is missing, for the operator.
std::optional<std::string> esp_missing();

}  // namespace swarmnet::kernel
