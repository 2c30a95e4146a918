// Fuzzes what a gossip node reads from the network. First byte: bit 0 set =
// the rest is sealed in an envelope (envelope.hpp) to 10.0.0.1:7946, opened
// with the test key at a fixed time, as fuzz/corpus/gossip_packet was
// sealed: a datagram, or with bit 1 also set a stream frame (head, then
// body); bit 0 clear = a plaintext message. Whatever opens is decoded; what
// decodes must re-encode to the same message; and the membership core (with
// a few members) takes it as a datagram and as a stream request without
// crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>

#include "daemon/gossip/codec.hpp"
#include "daemon/gossip/envelope.hpp"
#include "daemon/gossip/keyring.hpp"
#include "daemon/gossip/memberlist.hpp"

using namespace swarmnet::gossip;

namespace {

class NullDelegate : public Delegate {
 public:
  void on_member_change(const Member&) override {}
  void on_user_message(std::span<const uint8_t>) override {}
  std::vector<uint8_t> local_state() override { return {1, 2, 3}; }
  void merge_remote_state(std::span<const uint8_t>) override {}
};

// Shared with corpus_gen.cpp: key 0x42 x 32, sealed at 2026-01-01T00:00:00Z
// to 10.0.0.1:7946.
const Keyring::WallClock::time_point kSealTime{std::chrono::seconds(1767225600)};
const Address kSelf{swarmnet::Ipv4Address(0x0A000001), 7946};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> input(data + 1, size - 1);
  std::vector<uint8_t> opened;
  if (data[0] & 1) {
    Keyring::Key key;
    key.fill(0x42);
    Keyring ring({key});
    const std::vector<Address> mine = {kSelf};
    if (data[0] & 2) {
      if (input.size() < kFrameHeadSize) return 0;
      auto head = open_frame_head(ring, input.first(kFrameHeadSize), mine, 1 << 20, kSealTime);
      if (!head) return 0;
      auto body = open_frame_body(ring, *head, input.subspan(kFrameHeadSize), kSealTime);
      if (!body) return 0;
      opened = std::move(*body);
    } else {
      auto packet = open_packet(ring, input, mine, kSealTime);
      if (!packet) return 0;
      opened = std::move(packet->payload);
    }
    input = opened;
  }

  if (auto msg = decode(input)) {
    auto again = decode(encode(*msg));
    if (!again || !(*again == *msg)) std::abort();
  }

  NullDelegate d;
  Memberlist core(Config{}, "self", "self", kSelf, d,
                  std::mt19937_64(1));
  TimePoint now{};
  for (const char* id : {"a", "b", "c"}) {
    Alive a{1, id, id, Address{swarmnet::Ipv4Address(0x0A000002), 7946}};
    core.handle_packet(Address{}, encode(a), now);
  }
  core.handle_packet(Address{}, input, now);
  core.handle_stream(Address{}, input, now);
  core.tick(now + std::chrono::seconds(2));
  core.take_outbox();
  return 0;
}
