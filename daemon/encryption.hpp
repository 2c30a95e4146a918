// Encrypted overlay networks (`network create --encrypted`): the VXLAN
// packets of those networks travel between hosts in IPsec ESP (transport
// mode, AES-GCM), programmed through XFRM (kernel/xfrm.hpp).
//
// Which packets: XFRM selectors cannot see a VNI (all VXLAN is UDP to one
// port), so an encrypted network's VXLAN device sends from a block of UDP
// source ports of its own (kSourcePortMin..kSourcePortMax), and each
// outbound policy matches UDP to the peer's VXLAN port from that block.
// Plain networks' VXLAN to the same peer comes from the kernel's local port
// range and stays plain. Selected by ports, not by a firewall mark, the
// packets keep the kernel's cached route of the VXLAN device (a marked
// packet is routed again, and its XFRM bundle made anew, per packet). The
// firewall also drops, for encrypted VNIs, outbound VXLAN without an XFRM
// route and inbound VXLAN that did not come out of ESP, so nothing of an
// encrypted network crosses in clear, whatever the state of the SAs.
//
// Keys: nothing new is distributed. Each cluster key (the gossip keyring)
// has a generation; the key of the SA from node S to node D is
// HKDF-SHA256(cluster key, info = "swarmnet esp" | generation | S | D), and
// its SPI carries the generation in its top byte. SAs exist for every
// generation the keyring holds, in both directions. A rotation (cluster
// rotate-key) adds the new key everywhere first (new inbound SAs), makes it
// primary a few seconds later, and retires the old key after that. The
// outbound policy to a peer moves to the primary's generation only once the
// peer has confirmed its inbound SAs of it (the `esp_inbound` of its node
// record, daemon/records.hpp: a broadcast, repaired by push/pull if lost),
// so a peer that missed a step never receives what it cannot open; SAs of
// retired generations stay for a grace time, and as long as a policy uses
// them.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/xfrm.hpp"

namespace swarmnet::daemon {

namespace encryption {

// The source ports of encrypted networks' VXLAN, [min, max), and the mask
// the policies select them by: no plain network's VXLAN uses them (the
// kernel's local port range ends at 60999 unless an operator widens it; a
// plain packet from there would only be encrypted needlessly).
inline constexpr uint16_t kSourcePortMin = 0xf000;
inline constexpr uint16_t kSourcePortMax = 0xffff;
inline constexpr uint16_t kSourcePortMask = 0xf000;
// The mark older versions had the firewall put on encrypted networks'
// VXLAN, which their policies matched: such policies are replaced. And the
// range of XFRM reqids that are ours (kReqidBase + generation), so a
// restarted daemon finds and reconciles what it left without touching
// anyone else's IPsec.
inline constexpr uint32_t kMark = 0x4e5c0001;
inline constexpr uint32_t kReqidBase = 0x4e5c0000;
inline constexpr uint32_t kReqidMask = 0xffff0000;
// How long an SA of ours that is no longer wanted (its key retired, its peer
// gone) stays: a peer that has not yet heard that we confirmed the new
// generation still sends with the old one until its next push/pull (30 s).
inline constexpr std::chrono::seconds kStaleGrace{30};

using ClusterKey = std::array<uint8_t, 32>;

struct Generation {
  uint32_t number = 0;
  ClusterKey key{};
};

kernel::EspKey derive_key(const ClusterKey& key, uint32_t generation, const std::string& src_node,
                          const std::string& dst_node);
// Top byte: the generation (1..255, cycling); the rest: a hash of the pair.
uint32_t spi(uint32_t generation, const std::string& src_node, const std::string& dst_node);
uint32_t generation_of_spi(uint32_t spi);

struct Peer {
  std::string id;
  Ipv4Address address;
  // The generations whose inbound SAs the peer says it has installed (its
  // node record); nullopt: no record of it heard yet.
  std::optional<std::vector<uint32_t>> confirmed;
};

// The SAs this node wants: for every peer and every generation an outbound
// and an inbound SA.
std::vector<kernel::EspState> plan_states(const std::string& self_id, Ipv4Address self,
                                          const std::vector<Peer>& peers, const std::vector<Generation>& generations);

// The generation outbound traffic to `peer` uses: the primary once the peer
// has confirmed it; until then the one in use (`current`, whose SA is in
// place) while the peer has not said it dropped it; with none in use, the
// newest generation of `generations` the peer has confirmed, else the
// primary (nothing to keep: a new peer, a new encrypted network).
uint32_t outbound_generation(const Peer& peer, uint32_t primary, const std::vector<Generation>& generations,
                             std::optional<uint32_t> current);

}  // namespace encryption

// The kernel side, an interface so the reconciliation is tested with a fake.
class EspKernel {
 public:
  virtual ~EspKernel() = default;
  virtual void update_state(const kernel::EspState&) = 0;
  virtual void delete_state(Ipv4Address dst, uint32_t spi) = 0;
  virtual std::vector<kernel::EspStateInfo> list_states() = 0;
  virtual void update_policy(const kernel::EspPolicy&) = 0;
  virtual void delete_policy(const kernel::EspPolicy&) = 0;
  virtual std::vector<kernel::EspPolicy> list_policies(uint32_t mark) = 0;
};

std::unique_ptr<EspKernel> make_xfrm_kernel();

class Encryption {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // `missing`: why this kernel cannot do ESP (kernel::esp_missing()); then
  // nothing is ever programmed and encrypted networks are refused here.
  // `grace`: how long an unwanted SA stays (encryption::kStaleGrace).
  Encryption(std::unique_ptr<EspKernel> kernel, std::optional<std::string> missing, uint16_t vxlan_port,
             std::chrono::steady_clock::duration grace = encryption::kStaleGrace,
             Clock clock = std::chrono::steady_clock::now);

  const std::optional<std::string>& missing() const { return missing_; }

  // Makes the kernel hold the SAs of plan_states(...) and per peer one
  // outbound policy on outbound_generation(...) (`primary`: the keyring's
  // primary key's generation): adds what is missing, switches a policy only
  // to an SA already in place, removes SAs and policies of ours no longer
  // wanted (SAs after the grace time, and never one a policy uses), never
  // rewrites an SA that is in place (its sequence numbers go on). `wanted`
  // false (no encrypted network, or out of a cluster): removes everything of
  // ours at once. Cheap when nothing changed (two dumps).
  void sync(bool wanted, const std::string& self_id, Ipv4Address self, const std::vector<encryption::Peer>& peers,
            const std::vector<encryption::Generation>& generations, uint32_t primary);

  // The oldest generation outbound traffic uses now (0: none programmed).
  uint32_t generation() const { return generation_; }
  // The generations whose inbound SAs from every peer the last sync left in
  // place: what this node's record confirms to its peers.
  const std::vector<uint32_t>& inbound_generations() const { return inbound_; }

 private:
  // The outbound policy from self to peer through the SAs of reqid.
  kernel::EspPolicy policy(Ipv4Address self, Ipv4Address peer, uint32_t reqid) const;

  std::unique_ptr<EspKernel> kernel_;
  std::optional<std::string> missing_;
  uint16_t vxlan_port_;
  std::chrono::steady_clock::duration grace_;
  Clock clock_;
  uint32_t generation_ = 0;
  std::vector<uint32_t> inbound_;
  // Unwanted SAs (dst, spi) and since when: removed once the grace is over.
  std::map<std::pair<Ipv4Address, uint32_t>, std::chrono::steady_clock::time_point> stale_since_;
};

}  // namespace swarmnet::daemon
