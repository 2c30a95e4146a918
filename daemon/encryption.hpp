// Encrypted overlay networks (`network create --encrypted`): the VXLAN
// packets of those networks travel between hosts in IPsec ESP (transport
// mode, AES-GCM), programmed through XFRM (kernel/xfrm.hpp).
//
// Which packets: XFRM selectors cannot see a VNI (all VXLAN is UDP to one
// port), so the firewall marks outbound VXLAN whose VNI belongs to an
// encrypted network with kMark (nft route chain: the mark change makes the
// kernel look the route, and so the XFRM policy, up again), and each
// outbound policy matches UDP to the peer's VXLAN port carrying kMark. Plain
// networks' VXLAN to the same peer carries no mark and stays plain. The
// firewall also drops, for encrypted VNIs, outbound VXLAN without an XFRM
// route and inbound VXLAN that did not come out of ESP, so nothing of an
// encrypted network crosses in clear, whatever the state of the SAs.
//
// Keys: nothing new is distributed. Each cluster key (the gossip keyring)
// has a generation; the key of the SA from node S to node D is
// HKDF-SHA256(cluster key, info = "swarmnet esp" | generation | S | D), and
// its SPI carries the generation in its top byte. SAs exist for every
// generation the keyring holds, in both directions; the outbound policies
// use the primary key's generation. A rotation (cluster rotate-key) adds the
// new key everywhere first (new inbound SAs), makes it primary a few
// seconds later (outbound switches), and retires the old key after that.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/xfrm.hpp"

namespace swarmnet::daemon {

namespace encryption {

// The mark the firewall puts on encrypted networks' VXLAN, and the range of
// XFRM reqids that are ours (kReqidBase + generation), so a restarted daemon
// finds and reconciles what it left without touching anyone else's IPsec.
inline constexpr uint32_t kMark = 0x4e5c0001;
inline constexpr uint32_t kReqidBase = 0x4e5c0000;
inline constexpr uint32_t kReqidMask = 0xffff0000;

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
};

struct Plan {
  std::vector<kernel::EspState> states;
  std::vector<kernel::EspPolicy> policies;
};

// The SAs and policies this node wants: for every peer and every generation
// an outbound and an inbound SA, and per peer one outbound policy on the
// `outbound` generation.
Plan plan(const std::string& self_id, Ipv4Address self, const std::vector<Peer>& peers,
          const std::vector<Generation>& generations, uint32_t outbound, uint16_t vxlan_port);

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
  // `missing`: why this kernel cannot do ESP (kernel::esp_missing()); then
  // nothing is ever programmed and encrypted networks are refused here.
  Encryption(std::unique_ptr<EspKernel> kernel, std::optional<std::string> missing, uint16_t vxlan_port);

  const std::optional<std::string>& missing() const { return missing_; }

  // Makes the kernel hold exactly plan(...): adds what is missing, removes
  // SAs and policies of ours that are no longer wanted, never rewrites an SA
  // that is in place (its sequence numbers go on). `wanted` false (no
  // encrypted network, or out of a cluster): removes everything of ours.
  // Cheap when nothing changed (two dumps).
  void sync(bool wanted, const std::string& self_id, Ipv4Address self, const std::vector<encryption::Peer>& peers,
            const std::vector<encryption::Generation>& generations, uint32_t outbound);

  // The generation outbound traffic uses now (0: none programmed).
  uint32_t generation() const { return generation_; }

 private:
  std::unique_ptr<EspKernel> kernel_;
  std::optional<std::string> missing_;
  uint16_t vxlan_port_;
  uint32_t generation_ = 0;
};

}  // namespace swarmnet::daemon
