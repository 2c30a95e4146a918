// Encrypted networks' keys, SPIs and the reconciliation of SAs and policies,
// against a fake of the kernel's XFRM tables (the real kernel: the VM test).
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "daemon/encryption.hpp"
#include "daemon/records.hpp"

using namespace swarmnet;
using namespace swarmnet::daemon;

namespace {

const std::string kA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const std::string kC = "cccccccccccccccccccccccccccccccc";
const Ipv4Address kIpA(0xac1ffa0b), kIpB(0xac1ffa0c), kIpC(0xac1ffa0d);

encryption::ClusterKey key_of(uint8_t fill) {
  encryption::ClusterKey k;
  k.fill(fill);
  return k;
}

// The kernel's SA and policy tables, with a log of the calls in order.
class FakeXfrm final : public EspKernel {
 public:
  void update_state(const kernel::EspState& s) override {
    states[{s.dst, s.spi}] = s;
    log.push_back("state+ " + std::to_string(s.spi));
  }
  void delete_state(Ipv4Address dst, uint32_t spi) override {
    states.erase({dst, spi});
    log.push_back("state- " + std::to_string(spi));
  }
  std::vector<kernel::EspStateInfo> list_states() override {
    std::vector<kernel::EspStateInfo> out;
    for (const auto& [k, s] : states) out.push_back({s.src, s.dst, s.spi, s.reqid});
    return out;
  }
  void update_policy(const kernel::EspPolicy& p) override {
    policies[{p.src, p.dst}] = p;
    log.push_back("policy " + p.dst.str() + " reqid " + std::to_string(p.reqid - encryption::kReqidBase));
  }
  void delete_policy(const kernel::EspPolicy& p) override {
    policies.erase({p.src, p.dst});
    log.push_back("policy- " + p.dst.str());
  }
  std::vector<kernel::EspPolicy> list_policies(uint32_t mark) override {
    std::vector<kernel::EspPolicy> out;
    for (const auto& [k, p] : policies) {
      if (p.mark == mark) out.push_back(p);
    }
    return out;
  }
  std::map<std::pair<Ipv4Address, uint32_t>, kernel::EspState> states;
  std::map<std::pair<Ipv4Address, Ipv4Address>, kernel::EspPolicy> policies;
  std::vector<std::string> log;
};

}  // namespace

TEST_CASE("ESP keys: one per direction, pair and generation, the same on both ends", "[encryption]") {
  const auto k1 = key_of(1);
  const auto ab = encryption::derive_key(k1, 1, kA, kB);
  CHECK(ab == encryption::derive_key(k1, 1, kA, kB));  // what B derives for its inbound SA
  CHECK(ab != encryption::derive_key(k1, 1, kB, kA));
  CHECK(ab != encryption::derive_key(k1, 2, kA, kB));
  CHECK(ab != encryption::derive_key(key_of(2), 1, kA, kB));
  CHECK(ab != encryption::derive_key(k1, 1, kA, kC));
}

TEST_CASE("SPIs carry the generation and differ per direction", "[encryption]") {
  for (uint32_t g : {1u, 2u, 7u, 255u}) {
    CHECK(encryption::generation_of_spi(encryption::spi(g, kA, kB)) == g);
  }
  CHECK(encryption::generation_of_spi(encryption::spi(256, kA, kB)) == 1);  // cycles, never 0
  CHECK(encryption::spi(1, kA, kB) != encryption::spi(1, kB, kA));
  CHECK(encryption::spi(1, kA, kB) != encryption::spi(2, kA, kB));
  CHECK(encryption::spi(1, kA, kB) >= 256);  // 1-255 are reserved
}

TEST_CASE("plan_states: both directions per peer and generation", "[encryption]") {
  const std::vector<encryption::Generation> gens = {{1, key_of(1)}, {2, key_of(2)}};
  const auto p = encryption::plan_states(kA, kIpA, {{kB, kIpB, {}}, {kC, kIpC, {}}, {kA, kIpA, {}}}, gens);
  REQUIRE(p.size() == 8);  // 2 peers x 2 generations x 2 directions; never to itself
  // What B plans for its inbound SA from A is what A plans outbound to B.
  const auto from_b = encryption::plan_states(kB, kIpB, {{kA, kIpA, {}}}, gens);
  for (const auto& s : p) {
    if (s.dst != kIpB) continue;
    bool matched = false;
    for (const auto& t : from_b) {
      matched = matched || (t.src == kIpA && t.dst == kIpB && t.spi == s.spi && t.key == s.key && t.reqid == s.reqid);
    }
    CHECK(matched);
  }
}

TEST_CASE("outbound_generation: the primary only once the peer confirms it", "[encryption]") {
  const std::vector<encryption::Generation> gens = {{2, key_of(2)}, {1, key_of(1)}};
  using V = std::vector<uint32_t>;
  auto peer = [](std::optional<V> confirmed) { return encryption::Peer{kB, kIpB, std::move(confirmed)}; };
  CHECK(encryption::outbound_generation(peer(V{1, 2}), 2, gens, 1) == 2);
  CHECK(encryption::outbound_generation(peer(V{1}), 2, gens, 1) == 1);         // not confirmed: stays
  CHECK(encryption::outbound_generation(peer(std::nullopt), 2, gens, 1) == 1);  // no record heard: stays
  // Nothing in place (a new peer, a new encrypted network): the newest it
  // confirmed, else the primary.
  CHECK(encryption::outbound_generation(peer(V{1}), 2, gens, std::nullopt) == 1);
  CHECK(encryption::outbound_generation(peer(V{}), 2, gens, std::nullopt) == 2);
  CHECK(encryption::outbound_generation(peer(std::nullopt), 2, gens, std::nullopt) == 2);
  // The peer no longer has the one in use (it restarted without it): move.
  CHECK(encryption::outbound_generation(peer(V{2}), 2, gens, 1) == 2);
  CHECK(encryption::outbound_generation(peer(V{3}), 2, gens, 1) == 2);
}

namespace {

struct Clocked {
  std::chrono::steady_clock::time_point now{};
  Encryption::Clock clock() {
    return [this] { return now; };
  }
};

}  // namespace

TEST_CASE("Encryption::sync: SAs before policies, rotation without a gap, cleanup", "[encryption]") {
  auto owned = std::make_unique<FakeXfrm>();
  FakeXfrm& k = *owned;
  // Somebody else's IPsec on the same host: never touched.
  k.states[{kIpC, 0x1000}] = kernel::EspState{kIpA, kIpC, 0x1000, 7, {}};
  k.policies[{kIpA, kIpC}] = kernel::EspPolicy{kIpA, kIpC, 500, 0x99, 7};
  Clocked t;
  Encryption enc(std::move(owned), std::nullopt, 4789, std::chrono::seconds(30), t.clock());
  std::vector<encryption::Peer> peers = {{kB, kIpB, std::vector<uint32_t>{}}};
  const encryption::Generation g1{1, key_of(1)}, g2{2, key_of(2)};

  enc.sync(true, kA, kIpA, peers, {g1}, 1);
  REQUIRE(k.log.size() == 3);
  CHECK(k.log[0].starts_with("state+"));
  CHECK(k.log[1].starts_with("state+"));
  CHECK(k.log[2] == "policy 172.31.250.12 reqid 1");
  // Selected by the encrypted networks' block of source ports, no mark.
  CHECK(k.policies.at({kIpA, kIpB}).mark == 0);
  CHECK(k.policies.at({kIpA, kIpB}).sport == encryption::kSourcePortMin);
  CHECK(k.policies.at({kIpA, kIpB}).sport_mask == encryption::kSourcePortMask);
  CHECK(k.policies.at({kIpA, kIpB}).dport == 4789);
  CHECK(enc.generation() == 1);
  CHECK(enc.inbound_generations() == std::vector<uint32_t>{1});

  k.log.clear();
  peers[0].confirmed = std::vector<uint32_t>{1};
  enc.sync(true, kA, kIpA, peers, {g1}, 1);
  CHECK(k.log.empty());  // in place: nothing rewritten (sequence numbers go on)

  // Rotation step 1: the new key is known, outbound stays on generation 1.
  enc.sync(true, kA, kIpA, peers, {g1, g2}, 1);
  CHECK(k.log == std::vector<std::string>{"state+ " + std::to_string(encryption::spi(2, kA, kB)),
                                          "state+ " + std::to_string(encryption::spi(2, kB, kA))});
  CHECK(enc.inbound_generations() == std::vector<uint32_t>{1, 2});
  // Step 2: the peer has confirmed generation 2, which is primary: outbound
  // switches; nothing removed yet.
  k.log.clear();
  peers[0].confirmed = std::vector<uint32_t>{1, 2};
  enc.sync(true, kA, kIpA, peers, {g2, g1}, 2);
  CHECK(k.log == std::vector<std::string>{"policy 172.31.250.12 reqid 2"});
  CHECK(enc.generation() == 2);
  // Step 3: the old key is retired; its SAs stay for the grace time (the
  // peer may not have heard yet that we confirmed 2), then go.
  k.log.clear();
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  CHECK(k.log.empty());
  t.now += std::chrono::seconds(29);
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  CHECK(k.log.empty());
  t.now += std::chrono::seconds(1);
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  CHECK(k.log.size() == 2);
  CHECK(k.states.count({kIpB, encryption::spi(1, kA, kB)}) == 0);
  CHECK(k.states.count({kIpA, encryption::spi(1, kB, kA)}) == 0);
  CHECK(k.states.count({kIpB, encryption::spi(2, kA, kB)}) == 1);

  // No encrypted network left: everything of ours goes at once, the other's stays.
  enc.sync(false, kA, kIpA, peers, {g2}, 2);
  CHECK(k.states.size() == 1);
  CHECK(k.states.count({kIpC, 0x1000}) == 1);
  CHECK(k.policies.size() == 1);
  CHECK(k.policies.count({kIpA, kIpC}) == 1);
  CHECK(enc.generation() == 0);
  CHECK(enc.inbound_generations().empty());
}

TEST_CASE("Encryption::sync: outbound stays on the old generation until the peer confirms the new", "[encryption]") {
  auto owned = std::make_unique<FakeXfrm>();
  FakeXfrm& k = *owned;
  Clocked t;
  Encryption enc(std::move(owned), std::nullopt, 4789, std::chrono::seconds(30), t.clock());
  std::vector<encryption::Peer> peers = {{kB, kIpB, std::vector<uint32_t>{1}}, {kC, kIpC, std::vector<uint32_t>{1}}};
  const encryption::Generation g1{1, key_of(1)}, g2{2, key_of(2)};
  auto outbound_to = [&](Ipv4Address peer) { return k.policies.at({kIpA, peer}).reqid - encryption::kReqidBase; };

  enc.sync(true, kA, kIpA, peers, {g1}, 1);
  enc.sync(true, kA, kIpA, peers, {g1, g2}, 1);
  // Generation 2 is primary, but neither peer has said it installed its
  // inbound SAs (its broadcast was lost, or it has not learnt the key).
  enc.sync(true, kA, kIpA, peers, {g2, g1}, 2);
  CHECK(outbound_to(kIpB) == 1);
  CHECK(outbound_to(kIpC) == 1);
  CHECK(enc.generation() == 1);
  // B's record arrives (a broadcast, or the next push/pull): only B moves.
  peers[0].confirmed = std::vector<uint32_t>{1, 2};
  enc.sync(true, kA, kIpA, peers, {g2, g1}, 2);
  CHECK(outbound_to(kIpB) == 2);
  CHECK(outbound_to(kIpC) == 1);
  CHECK(enc.generation() == 1);  // the oldest in use
  // The old key is retired while C still has not confirmed: the SA to C
  // that the policy uses stays past the grace time; the unused ones go.
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  t.now += std::chrono::seconds(31);
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  CHECK(outbound_to(kIpC) == 1);
  CHECK(k.states.count({kIpC, encryption::spi(1, kA, kC)}) == 1);
  CHECK(k.states.count({kIpB, encryption::spi(1, kA, kB)}) == 0);
  CHECK(k.states.count({kIpA, encryption::spi(1, kB, kA)}) == 0);
  CHECK(k.states.count({kIpA, encryption::spi(1, kC, kA)}) == 0);
  // C confirms: it moves, and its old SA goes after the grace time.
  peers[1].confirmed = std::vector<uint32_t>{2};
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  CHECK(outbound_to(kIpC) == 2);
  CHECK(enc.generation() == 2);
  CHECK(k.states.count({kIpC, encryption::spi(1, kA, kC)}) == 1);
  t.now += std::chrono::seconds(30);
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  CHECK(k.states.count({kIpC, encryption::spi(1, kA, kC)}) == 0);
}

TEST_CASE("Encryption::sync replaces a policy that matched the firewall's mark (older versions)", "[encryption]") {
  auto owned = std::make_unique<FakeXfrm>();
  FakeXfrm& k = *owned;
  k.policies[{kIpA, kIpB}] = kernel::EspPolicy{kIpA, kIpB, 4789, encryption::kMark, encryption::kReqidBase + 1};
  Clocked t;
  Encryption enc(std::move(owned), std::nullopt, 4789, std::chrono::seconds(30), t.clock());
  std::vector<encryption::Peer> peers = {{kB, kIpB, std::vector<uint32_t>{1}}};
  enc.sync(true, kA, kIpA, peers, {{1, key_of(1)}}, 1);
  REQUIRE(!k.log.empty());
  CHECK(k.log.front() == "policy- 172.31.250.12");
  CHECK(k.log.back() == "policy 172.31.250.12 reqid 1");
  CHECK(k.policies.at({kIpA, kIpB}).mark == 0);
  CHECK(k.policies.at({kIpA, kIpB}).sport_mask == encryption::kSourcePortMask);
  k.log.clear();
  enc.sync(true, kA, kIpA, peers, {{1, key_of(1)}}, 1);
  CHECK(k.log.empty());
}

TEST_CASE("Encryption without ESP in the kernel programs nothing", "[encryption]") {
  auto owned = std::make_unique<FakeXfrm>();
  FakeXfrm& k = *owned;
  Encryption enc(std::move(owned), std::string("the kernel has no ESP"), 4789);
  enc.sync(true, kA, kIpA, {{kB, kIpB, std::nullopt}}, {{1, key_of(1)}}, 1);
  CHECK(k.log.empty());
  CHECK(enc.missing() == std::optional<std::string>("the kernel has no ESP"));
}

TEST_CASE("NodeRecord: what a node confirms survives the wire; damage is refused", "[encryption]") {
  NodeRecord r{kA, 1764000000000000, "", {1, 2}, 5};
  NodeRecord back;
  from_json(to_json(r), back);
  CHECK(back == r);
  NodeRecord no_esp{kB, 7, "no ESP (module esp4)", {}};
  from_json(to_json(no_esp), back);
  CHECK(back == no_esp);
  // A record of an older swarmnetd's shape (no ESP fields, no keyring
  // version): no generation confirmed, no keyring either.
  from_json(json::parse(R"({"id":"x","version":3})"), back);
  CHECK(back.esp_inbound.empty());
  CHECK(back.keyring_version == 0);
  for (const char* bad : {R"({"version":3})", R"({"id":"x","esp_inbound":"1"})", R"({"id":"x","esp_inbound":[0]})",
                          R"({"id":"x","esp_inbound":[-1]})", R"({"id":"x","esp_inbound":[4294967296]})",
                          R"({"id":"x","esp_inbound":[1.5]})", R"({"id":"x","version":-1})", R"({"id":"x","keyring_version":-1})",
                          R"({"id":"x","keyring_version":"2"})", R"([1])"}) {
    INFO(bad);
    CHECK_THROWS_AS(from_json(json::parse(bad), back), Error);
  }
  json::array many;
  for (int i = 1; i <= 65; ++i) many.emplace_back(i);
  CHECK_THROWS_AS(from_json(json::object{{"id", "x"}, {"esp_inbound", many}}, back), Error);
}
