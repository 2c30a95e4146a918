// The gossip wire format: every message survives a round trip, and the
// decoder refuses (never crashes on, never over-allocates for) anything
// truncated, padded, nested or lying about its lengths.
#include <catch2/catch.hpp>
#include <random>

#include "common/error.hpp"
#include "daemon/gossip/codec.hpp"

using namespace swarmnet;
using namespace swarmnet::gossip;

namespace {

Address addr(uint32_t ip, uint16_t port) {
  return Address{Ipv4Address(ip), port};
}

std::vector<Message> samples() {
  PushPull pp;
  pp.join = true;
  pp.members = {Member{"n1", "host-1", addr(0x0A000001, 7946), 3, MemberStatus::alive},
                Member{"n2", "host-2", addr(0x0A000002, 7946), 9, MemberStatus::left}};
  pp.user_state = {1, 2, 3};
  return {
      Ping{7, "n2", "n1", addr(0x0A000001, 7946)},
      IndirectPing{8, "n3", addr(0x0A000003, 7000), "n1", addr(0x0A000001, 7946), true},
      Ack{9},
      Nack{10},
      Suspect{4, "n3", "n1"},
      Alive{5, "n3", "host-3", addr(0x7F000001, 65535)},
      Dead{6, "n3", "n3"},
      UserMsg{0xDEADBEEFCAFEF00Dull, {0, 1, 2, 255}},
      Compound{{encode(Ack{1}), encode(Suspect{1, "a", "b"})}},
      pp,
  };
}

}  // namespace

TEST_CASE("gossip codec: every message round-trips", "[gossip][codec]") {
  for (const auto& m : samples()) {
    Bytes wire = encode(m);
    auto back = decode(wire);
    REQUIRE(back);
    CHECK(back->index() == m.index());
    CHECK(*back == m);
  }
}

TEST_CASE("gossip codec: truncated or padded input is refused", "[gossip][codec]") {
  for (const auto& m : samples()) {
    Bytes wire = encode(m);
    for (size_t n = 0; n < wire.size(); ++n)
      CHECK_FALSE(decode(std::span<const uint8_t>(wire.data(), n)));
    Bytes padded = wire;
    padded.push_back(0);
    CHECK_FALSE(decode(padded));
  }
}

TEST_CASE("gossip codec: lying lengths and bad values are refused", "[gossip][codec]") {
  SECTION("unknown kind") {
    CHECK_FALSE(decode(Bytes{0}));
    CHECK_FALSE(decode(Bytes{200, 0}));
  }
  SECTION("user payload length beyond the packet") {
    Bytes wire = encode(UserMsg{1, {1, 2, 3}});
    wire[9] = 0xFF;  // top byte of the u32 length
    CHECK_FALSE(decode(wire));
  }
  SECTION("push/pull member count beyond the packet, no huge reserve") {
    Bytes wire = encode(PushPull{});
    // flags, then u32 count = 0xFFFFFFFF
    wire[2] = wire[3] = wire[4] = wire[5] = 0xFF;
    CHECK_FALSE(decode(wire));
  }
  SECTION("node id longer than 64") {
    Bytes wire = encode(Suspect{1, "a", "b"});
    wire[5] = 65;
    wire.resize(6 + 65 + 2, 'x');
    CHECK_FALSE(decode(wire));
  }
  SECTION("nested compound") {
    Bytes inner = encode(Compound{{encode(Ack{1})}});
    CHECK(decode(inner));
    CHECK_FALSE(decode(encode(Compound{{inner}})));
  }
  SECTION("compound lengths not adding up") {
    Bytes wire = encode(Compound{{encode(Ack{1}), encode(Nack{2})}});
    wire[4] = 6;  // first part claims one byte more
    CHECK_FALSE(decode(wire));
  }
  SECTION("bad status and bool bytes") {
    PushPull pp;
    pp.members.push_back(Member{"a", "b", {}, 1, MemberStatus::alive});
    Bytes wire = encode(pp);
    wire[wire.size() - 5] = 4;  // status byte just before the u32 user-state length
    CHECK_FALSE(decode(wire));
    Bytes ip = encode(IndirectPing{1, "t", {}, "s", {}, false});
    ip.back() = 2;
    CHECK_FALSE(decode(ip));
  }
}

TEST_CASE("gossip codec: encoding refuses what decoding would", "[gossip][codec]") {
  CHECK_THROWS_AS(encode(Suspect{1, std::string(65, 'x'), "b"}), Error);
  CHECK_THROWS_AS(encode(Alive{1, "a", std::string(256, 'n'), {}}), Error);
}

TEST_CASE("gossip codec: random and mutated bytes never crash", "[gossip][codec]") {
  std::mt19937_64 rng(42);
  size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b;
    if (i % 2 == 0) {
      b.resize(rng() % 64);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
    } else {
      auto all = samples();
      b = encode(all[rng() % all.size()]);
      for (int k = 0; k < 3; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    }
    if (decode(b)) accepted++;
  }
  // Mutations hitting only payload bytes still decode; random junk rarely.
  CHECK(accepted < 20000);
}
