// The gossip wire envelope: every datagram and stream frame says who sent it
// to whom, and both are authenticated with the cluster key, so a packet
// captured on its way to node B is refused by node C.
//
//   datagram:     header | sealed(payload)
//   stream frame: header | sealed(u32 size of the sealed body) | sealed(payload)
//   header:       version (1) = kWireVersion | from ip (4) port (2) | to ip (4) port (2)
//
// Everything big-endian; "sealed" is Keyring::seal. The associated data of
// each sealed part is a channel name plus the header (and, for a stream
// body, the nonce of its head), so neither address can be changed, a
// datagram cannot be replayed as a stream part or the other way round, and a
// body cannot be put behind another head.
//
// The identities are gossip addresses (ip:port), the one thing both sides
// know before any exchange: `from` is the sender's advertise address, `to`
// is the address it sent to (a member's advertise address, or a seed as the
// operator wrote it). A node takes `to` as its own if it is its advertise
// address, its bound address, or the local address of the TCP connection
// the frame came on (a seed reached by another of its addresses). Node ids
// would not do: a joining node does not know its seed's id yet.
//
// A stream reader first reads kFrameHeadSize bytes (header and sealed head,
// a fixed size) and authenticates them before it allocates anything for the
// body: a peer without the key can make it hold kFrameHeadSize bytes, never
// the size it announces.
#pragma once

#include <array>
#include <optional>
#include <span>

#include "daemon/gossip/keyring.hpp"
#include "daemon/gossip/types.hpp"

namespace swarmnet::gossip {

inline constexpr uint8_t kWireVersion = 2;
inline constexpr size_t kEnvelopeHeaderSize = 1 + 6 + 6;
// Bytes a datagram carries beyond its payload.
inline constexpr size_t kPacketOverhead = kEnvelopeHeaderSize + Keyring::kOverhead;
// Header and sealed head of a stream frame: read, and authenticated, first.
inline constexpr size_t kFrameHeadSize = kEnvelopeHeaderSize + Keyring::kOverhead + 4;

struct Envelope {
  Address from, to;
  bool operator==(const Envelope&) const = default;
};

Bytes seal_packet(Keyring& keyring, const Envelope& envelope, std::span<const uint8_t> payload,
                  Keyring::WallClock::time_point now = Keyring::WallClock::now());

struct OpenedPacket {
  Envelope envelope;
  Bytes payload;
  int64_t sent_ms = 0;  // the sender's wall clock when it sealed the packet
};
// nullopt: malformed, addressed to none of `mine`, or the keyring refuses it
// (foreign key, tampered, stale, replayed). An envelope addressed elsewhere
// is refused before the keyring sees it.
std::optional<OpenedPacket> open_packet(Keyring& keyring, std::span<const uint8_t> data,
                                        std::span<const Address> mine,
                                        Keyring::WallClock::time_point now = Keyring::WallClock::now());

// The whole frame (header, head, body) ready to write.
Bytes seal_frame(Keyring& keyring, const Envelope& envelope, std::span<const uint8_t> payload,
                 Keyring::WallClock::time_point now = Keyring::WallClock::now());

struct FrameHead {
  Envelope envelope;
  size_t body_size = 0;  // bytes of the sealed body that follow the head
  std::array<uint8_t, kEnvelopeHeaderSize> header{};
  std::array<uint8_t, Keyring::kNonceSize> nonce{};
};
// The first kFrameHeadSize bytes of a frame. nullopt as open_packet, and if
// the body would hold more than max_payload bytes of payload.
std::optional<FrameHead> open_frame_head(Keyring& keyring, std::span<const uint8_t> head,
                                         std::span<const Address> mine, size_t max_payload,
                                         Keyring::WallClock::time_point now = Keyring::WallClock::now());
// The body that followed `head` (exactly head.body_size bytes).
std::optional<Bytes> open_frame_body(Keyring& keyring, const FrameHead& head,
                                     std::span<const uint8_t> body,
                                     Keyring::WallClock::time_point now = Keyring::WallClock::now());

}  // namespace swarmnet::gossip
