// The wire envelope: sender and recipient are authenticated, so a packet
// captured on its way to one node is refused by another; a stream frame's
// head is checked before its body is believed, and a body cannot be moved
// behind another head.
#include <catch2/catch.hpp>

#include "daemon/gossip/envelope.hpp"

using namespace swarmnet;
using namespace swarmnet::gossip;

namespace {

Keyring::Key key(uint8_t fill) {
  Keyring::Key k;
  k.fill(fill);
  return k;
}

const Address kA{Ipv4Address(0x0A000001), 7946};
const Address kB{Ipv4Address(0x0A000002), 7946};
const Address kC{Ipv4Address(0x0A000003), 7946};
const Address kB2{Ipv4Address(0x0A000002), 7947};  // another node on B's host
const Bytes kHello = {'h', 'e', 'l', 'l', 'o'};

std::vector<Address> only(Address a) { return {a}; }

}  // namespace

TEST_CASE("envelope: a packet opens at its recipient, with its sender", "[gossip][envelope]") {
  Keyring a({key(1)}), b({key(1)});
  auto sealed = seal_packet(a, Envelope{kA, kB}, kHello);
  CHECK(sealed.size() == kHello.size() + kPacketOverhead);
  auto opened = open_packet(b, sealed, only(kB));
  REQUIRE(opened);
  CHECK(opened->payload == kHello);
  CHECK(opened->envelope == Envelope{kA, kB});
  // A node with several addresses takes any of them.
  CHECK(open_packet(b, seal_packet(a, Envelope{kA, kB}, kHello), std::vector<Address>{kC, kB}));
}

TEST_CASE("envelope: a packet captured to B is refused by C, even with the same key",
          "[gossip][envelope]") {
  Keyring a({key(1)}), b({key(1)}), c({key(1)});
  auto sealed = seal_packet(a, Envelope{kA, kB}, kHello);
  // Replayed to C as it was captured: not addressed to C.
  CHECK_FALSE(open_packet(c, sealed, only(kC)));
  // Nor to another node on B's host (another port).
  CHECK_FALSE(open_packet(c, sealed, only(kB2)));
  // Re-addressed to C: the recipient is authenticated, so it fails to open.
  auto readdressed = sealed;
  readdressed[7 + 3] = 0x03;  // to.ip 10.0.0.2 -> 10.0.0.3
  CHECK_FALSE(open_packet(c, readdressed, only(kC)));
  // A changed sender fails too.
  auto other_sender = sealed;
  other_sender[1 + 3] = 0x07;
  CHECK_FALSE(open_packet(b, other_sender, only(kB)));
  // The untouched packet still opens at B (so the refusals above are about
  // the addresses, not a broken seal).
  CHECK(open_packet(b, sealed, only(kB)));
}

TEST_CASE("envelope: foreign keys, old versions, short and tampered packets are refused",
          "[gossip][envelope]") {
  Keyring a({key(1)}), other({key(2)});
  auto sealed = seal_packet(a, Envelope{kA, kB}, kHello);
  CHECK_FALSE(open_packet(other, sealed, only(kB)));
  // A packet of the previous layout (keyring version byte first, no
  // addresses) is refused.
  Bytes old_layout = a.seal(kHello, std::vector<uint8_t>{'s', 'w', 'n', '/', 'u', 'd', 'p'});
  CHECK_FALSE(open_packet(a, old_layout, only(kB)));
  Keyring b0({key(1)});
  for (size_t n = 0; n < sealed.size(); ++n)
    CHECK_FALSE(open_packet(b0, std::span<const uint8_t>(sealed.data(), n), only(kB)));
  for (size_t i = 0; i < sealed.size(); ++i) {
    auto t = sealed;
    t[i] ^= 0x01;
    Keyring fresh({key(1)});
    CHECK_FALSE(open_packet(fresh, t, std::vector<Address>{kB, kA}));
  }
  // Replayed to B itself: the keyring remembers the nonce.
  Keyring b({key(1)});
  CHECK(open_packet(b, sealed, only(kB)));
  CHECK_FALSE(open_packet(b, sealed, only(kB)));
}

TEST_CASE("envelope: stream frames, head first", "[gossip][envelope]") {
  Keyring a({key(1)}), b({key(1)});
  Bytes payload(1000, 0x5A);
  auto frame = seal_frame(a, Envelope{kA, kB}, payload);
  REQUIRE(frame.size() == kFrameHeadSize + payload.size() + Keyring::kOverhead);
  auto head_bytes = std::span<const uint8_t>(frame).first(kFrameHeadSize);
  auto body_bytes = std::span<const uint8_t>(frame).subspan(kFrameHeadSize);

  SECTION("it opens at its recipient") {
    auto head = open_frame_head(b, head_bytes, only(kB), 1 << 20);
    REQUIRE(head);
    CHECK(head->envelope == Envelope{kA, kB});
    CHECK(head->body_size == body_bytes.size());
    auto body = open_frame_body(b, *head, body_bytes);
    REQUIRE(body);
    CHECK(*body == payload);
  }
  SECTION("not at another node") {
    Keyring c({key(1)});
    CHECK_FALSE(open_frame_head(c, head_bytes, only(kC), 1 << 20));
  }
  SECTION("a body larger than the limit is refused at the head") {
    CHECK_FALSE(open_frame_head(b, head_bytes, only(kB), payload.size() - 1));
    Keyring b2({key(1)});
    CHECK(open_frame_head(b2, head_bytes, only(kB), payload.size()));
  }
  SECTION("a head that only announces a size, unsealed, is refused") {
    // What an attacker without the key can send: the old layout's 16 MiB
    // length, then anything.
    Bytes forged(kFrameHeadSize, 0);
    forged[0] = 0x01;
    CHECK_FALSE(open_frame_head(b, forged, only(kB), 64u << 20));
    Bytes addressed = forged;
    addressed[0] = kWireVersion;
    addressed[7] = 10, addressed[10] = 2, addressed[11] = 0x1F, addressed[12] = 0x0A;  // to kB
    CHECK_FALSE(open_frame_head(b, addressed, only(kB), 64u << 20));
    Keyring other({key(2)});
    auto foreign = seal_frame(other, Envelope{kA, kB}, payload);
    CHECK_FALSE(open_frame_head(b, std::span<const uint8_t>(foreign).first(kFrameHeadSize),
                                only(kB), 1 << 20));
  }
  SECTION("a body behind another head is refused") {
    auto second = seal_frame(a, Envelope{kA, kB}, payload);
    auto head2 = open_frame_head(b, std::span<const uint8_t>(second).first(kFrameHeadSize),
                                 only(kB), 1 << 20);
    REQUIRE(head2);
    CHECK_FALSE(open_frame_body(b, *head2, body_bytes));
    CHECK(open_frame_body(b, *head2, std::span<const uint8_t>(second).subspan(kFrameHeadSize)));
  }
}
