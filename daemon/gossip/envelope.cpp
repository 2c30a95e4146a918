#include "daemon/gossip/envelope.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace swarmnet::gossip {

namespace {

constexpr std::string_view kUdpChannel = "swn/udp";
constexpr std::string_view kHeadChannel = "swn/tcp-head";
constexpr std::string_view kBodyChannel = "swn/tcp-body";

void put_address(uint8_t* p, const Address& a) {
  uint32_t ip = a.ip.value();
  p[0] = uint8_t(ip >> 24), p[1] = uint8_t(ip >> 16), p[2] = uint8_t(ip >> 8), p[3] = uint8_t(ip);
  p[4] = uint8_t(a.port >> 8), p[5] = uint8_t(a.port);
}

Address get_address(const uint8_t* p) {
  uint32_t ip = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
  return Address{Ipv4Address(ip), uint16_t((p[4] << 8) | p[5])};
}

std::array<uint8_t, kEnvelopeHeaderSize> header_of(const Envelope& e) {
  std::array<uint8_t, kEnvelopeHeaderSize> h{};
  h[0] = kWireVersion;
  put_address(h.data() + 1, e.from);
  put_address(h.data() + 7, e.to);
  return h;
}

// The header of `data` if it has one of our version addressed to one of
// `mine`.
std::optional<Envelope> read_header(std::span<const uint8_t> data, std::span<const Address> mine) {
  if (data.size() < kEnvelopeHeaderSize || data[0] != kWireVersion) return std::nullopt;
  Envelope e{get_address(data.data() + 1), get_address(data.data() + 7)};
  if (std::find(mine.begin(), mine.end(), e.to) == mine.end()) return std::nullopt;
  return e;
}

Bytes aad(std::string_view channel, std::span<const uint8_t> header,
          std::span<const uint8_t> extra = {}) {
  Bytes out(channel.begin(), channel.end());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

}  // namespace

Bytes seal_packet(Keyring& keyring, const Envelope& envelope, std::span<const uint8_t> payload,
                  Keyring::WallClock::time_point now) {
  auto header = header_of(envelope);
  Bytes out(header.begin(), header.end());
  Bytes sealed = keyring.seal(payload, aad(kUdpChannel, header), now);
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

std::optional<OpenedPacket> open_packet(Keyring& keyring, std::span<const uint8_t> data,
                                        std::span<const Address> mine,
                                        Keyring::WallClock::time_point now) {
  auto envelope = read_header(data, mine);
  if (!envelope) return std::nullopt;
  auto header = data.first(kEnvelopeHeaderSize);
  int64_t sent_ms = 0;
  auto payload = keyring.open(data.subspan(kEnvelopeHeaderSize), aad(kUdpChannel, header), now, &sent_ms);
  if (!payload) return std::nullopt;
  return OpenedPacket{*envelope, std::move(*payload), sent_ms};
}

Bytes seal_frame(Keyring& keyring, const Envelope& envelope, std::span<const uint8_t> payload,
                 Keyring::WallClock::time_point now) {
  if (payload.size() > UINT32_MAX - Keyring::kOverhead)
    throw Error(Errc::invalid_argument, "gossip: stream frame too large");
  auto header = header_of(envelope);
  const uint32_t body_size = static_cast<uint32_t>(payload.size() + Keyring::kOverhead);
  const uint8_t size_bytes[4] = {uint8_t(body_size >> 24), uint8_t(body_size >> 16),
                                 uint8_t(body_size >> 8), uint8_t(body_size)};
  Bytes head = keyring.seal(size_bytes, aad(kHeadChannel, header), now);
  auto nonce = std::span<const uint8_t>(head).subspan(1, Keyring::kNonceSize);
  Bytes body = keyring.seal(payload, aad(kBodyChannel, header, nonce), now);
  Bytes out(header.begin(), header.end());
  out.reserve(kFrameHeadSize + body.size());
  out.insert(out.end(), head.begin(), head.end());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::optional<FrameHead> open_frame_head(Keyring& keyring, std::span<const uint8_t> head,
                                         std::span<const Address> mine, size_t max_payload,
                                         Keyring::WallClock::time_point now) {
  if (head.size() != kFrameHeadSize) return std::nullopt;
  auto envelope = read_header(head, mine);
  if (!envelope) return std::nullopt;
  auto header = head.first(kEnvelopeHeaderSize);
  auto sealed = head.subspan(kEnvelopeHeaderSize);
  auto size_bytes = keyring.open(sealed, aad(kHeadChannel, header), now);
  if (!size_bytes || size_bytes->size() != 4) return std::nullopt;
  const auto& s = *size_bytes;
  const size_t body_size = (size_t(s[0]) << 24) | (size_t(s[1]) << 16) | (size_t(s[2]) << 8) | s[3];
  if (body_size < Keyring::kOverhead || body_size - Keyring::kOverhead > max_payload) return std::nullopt;
  FrameHead out;
  out.envelope = *envelope;
  out.body_size = body_size;
  std::copy(header.begin(), header.end(), out.header.begin());
  auto nonce = sealed.subspan(1, Keyring::kNonceSize);
  std::copy(nonce.begin(), nonce.end(), out.nonce.begin());
  return out;
}

std::optional<Bytes> open_frame_body(Keyring& keyring, const FrameHead& head,
                                     std::span<const uint8_t> body,
                                     Keyring::WallClock::time_point now) {
  if (body.size() != head.body_size) return std::nullopt;
  return keyring.open(body, aad(kBodyChannel, head.header, head.nonce), now);
}

}  // namespace swarmnet::gossip
