// Encrypted networks' keys, SPIs and the reconciliation of SAs and policies,
// against a fake of the kernel's XFRM tables (the real kernel: the VM test).
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "daemon/encryption.hpp"

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

TEST_CASE("plan: both directions per peer and generation, one policy per peer", "[encryption]") {
  const std::vector<encryption::Generation> gens = {{1, key_of(1)}, {2, key_of(2)}};
  const auto p = encryption::plan(kA, kIpA, {{kB, kIpB}, {kC, kIpC}, {kA, kIpA}}, gens, 1, 4789);
  REQUIRE(p.states.size() == 8);  // 2 peers x 2 generations x 2 directions; never to itself
  REQUIRE(p.policies.size() == 2);
  for (const auto& pol : p.policies) {
    CHECK(pol.src == kIpA);
    CHECK(pol.dport == 4789);
    CHECK(pol.mark == encryption::kMark);
    CHECK(pol.reqid == encryption::kReqidBase + 1);
  }
  // What B plans for its inbound SA from A is what A plans outbound to B.
  const auto from_b = encryption::plan(kB, kIpB, {{kA, kIpA}}, gens, 1, 4789);
  for (const auto& s : p.states) {
    if (s.dst != kIpB) continue;
    bool matched = false;
    for (const auto& t : from_b.states) {
      matched = matched || (t.src == kIpA && t.dst == kIpB && t.spi == s.spi && t.key == s.key && t.reqid == s.reqid);
    }
    CHECK(matched);
  }
}

TEST_CASE("Encryption::sync: SAs before policies, rotation without a gap, cleanup", "[encryption]") {
  auto owned = std::make_unique<FakeXfrm>();
  FakeXfrm& k = *owned;
  // Somebody else's IPsec on the same host: never touched.
  k.states[{kIpC, 0x1000}] = kernel::EspState{kIpA, kIpC, 0x1000, 7, {}};
  k.policies[{kIpA, kIpC}] = kernel::EspPolicy{kIpA, kIpC, 500, 0x99, 7};
  Encryption enc(std::move(owned), std::nullopt, 4789);
  const std::vector<encryption::Peer> peers = {{kB, kIpB}};
  const encryption::Generation g1{1, key_of(1)}, g2{2, key_of(2)};

  enc.sync(true, kA, kIpA, peers, {g1}, 1);
  REQUIRE(k.log.size() == 3);
  CHECK(k.log[0].starts_with("state+"));
  CHECK(k.log[1].starts_with("state+"));
  CHECK(k.log[2] == "policy 172.31.250.12 reqid 1");
  CHECK(enc.generation() == 1);

  k.log.clear();
  enc.sync(true, kA, kIpA, peers, {g1}, 1);
  CHECK(k.log.empty());  // in place: nothing rewritten (sequence numbers go on)

  // Rotation step 1: the new key is known, outbound stays on generation 1.
  enc.sync(true, kA, kIpA, peers, {g1, g2}, 1);
  CHECK(k.log == std::vector<std::string>{"state+ " + std::to_string(encryption::spi(2, kA, kB)),
                                          "state+ " + std::to_string(encryption::spi(2, kB, kA))});
  // Step 2: outbound switches; nothing removed yet.
  k.log.clear();
  enc.sync(true, kA, kIpA, peers, {g2, g1}, 2);
  CHECK(k.log == std::vector<std::string>{"policy 172.31.250.12 reqid 2"});
  CHECK(enc.generation() == 2);
  // Step 3: the old generation's SAs go.
  k.log.clear();
  enc.sync(true, kA, kIpA, peers, {g2}, 2);
  CHECK(k.log.size() == 2);
  CHECK(k.states.count({kIpB, encryption::spi(1, kA, kB)}) == 0);
  CHECK(k.states.count({kIpA, encryption::spi(1, kB, kA)}) == 0);
  CHECK(k.states.count({kIpB, encryption::spi(2, kA, kB)}) == 1);

  // No encrypted network left: everything of ours goes, the other's stays.
  enc.sync(false, kA, kIpA, peers, {g2}, 2);
  CHECK(k.states.size() == 1);
  CHECK(k.states.count({kIpC, 0x1000}) == 1);
  CHECK(k.policies.size() == 1);
  CHECK(k.policies.count({kIpA, kIpC}) == 1);
  CHECK(enc.generation() == 0);
}

TEST_CASE("Encryption without ESP in the kernel programs nothing", "[encryption]") {
  auto owned = std::make_unique<FakeXfrm>();
  FakeXfrm& k = *owned;
  Encryption enc(std::move(owned), std::string("the kernel has no ESP"), 4789);
  enc.sync(true, kA, kIpA, {{kB, kIpB}}, {{1, key_of(1)}}, 1);
  CHECK(k.log.empty());
  CHECK(enc.missing() == std::optional<std::string>("the kernel has no ESP"));
}
