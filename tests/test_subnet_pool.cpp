#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "ipam/subnet_pool.hpp"

using swarmnet::Errc;
using swarmnet::Error;
using swarmnet::Ipv4Address;
using swarmnet::Ipv4Prefix;
using swarmnet::ipam::default_address_pool;
using swarmnet::ipam::kDefaultSubnetLength;
using swarmnet::ipam::next_free_subnet;

namespace {

Ipv4Prefix P(const char* text) {
  return Ipv4Prefix::parse(text);
}

std::vector<Ipv4Prefix> Ps(std::initializer_list<const char*> texts) {
  std::vector<Ipv4Prefix> out;
  for (const char* t : texts) out.push_back(P(t));
  return out;
}

std::string next_str(const char* pool, unsigned length, const std::vector<Ipv4Prefix>& taken) {
  auto s = next_free_subnet(P(pool), length, taken);
  return s ? s->str() : "none";
}

}  // namespace

TEST_CASE("swarm's default pool") {
  CHECK(default_address_pool() == P("10.0.0.0/8"));
  CHECK(kDefaultSubnetLength == 24);
  CHECK(next_free_subnet(default_address_pool(), kDefaultSubnetLength, {}) == P("10.0.0.0/24"));
}

TEST_CASE("next_free_subnet picks the lowest free subnet") {
  struct Row {
    const char* name;
    const char* pool;
    unsigned length;
    std::vector<Ipv4Prefix> taken;
    const char* expected;
  };
  const Row rows[] = {
      {"empty", "10.0.0.0/8", 24, {}, "10.0.0.0/24"},
      {"first taken", "10.0.0.0/8", 24, Ps({"10.0.0.0/24"}), "10.0.1.0/24"},
      {"a hole", "10.0.0.0/8", 24, Ps({"10.0.0.0/24", "10.0.2.0/24"}), "10.0.1.0/24"},
      {"unsorted with duplicates", "10.0.0.0/8", 24,
       Ps({"10.0.2.0/24", "10.0.0.0/24", "10.0.1.0/24", "10.0.0.0/24", "10.0.4.0/24"}),
       "10.0.3.0/24"},
      {"larger taken", "10.0.0.0/8", 24, Ps({"10.0.0.0/16"}), "10.1.0.0/24"},
      {"smaller taken", "10.0.0.0/8", 24, Ps({"10.0.0.128/25"}), "10.0.1.0/24"},
      {"tiny taken", "10.0.0.0/8", 24, Ps({"10.0.1.9/32", "10.0.0.255/32"}), "10.0.2.0/24"},
      {"host bits count as the network", "10.0.0.0/8", 24, Ps({"10.0.0.5/24"}), "10.0.1.0/24"},
      {"outside the pool", "10.0.0.0/8", 24, Ps({"192.168.0.0/16", "9.255.255.0/24"}),
       "10.0.0.0/24"},
      {"straddling two", "10.0.0.0/8", 24, Ps({"10.0.0.0/23", "10.0.1.128/25", "10.0.2.64/26"}),
       "10.0.3.0/24"},
      {"nested", "10.0.0.0/8", 24, Ps({"10.0.0.0/22", "10.0.1.0/24", "10.0.3.0/25"}),
       "10.0.4.0/24"},
      {"a /16 around the start", "10.0.0.0/8", 16, Ps({"10.0.5.0/24"}), "10.1.0.0/16"},
      {"length equal to the pool", "172.20.0.0/16", 16, {}, "172.20.0.0/16"},
      {"length equal to the pool, taken", "172.20.0.0/16", 16, Ps({"172.20.9.0/24"}), "none"},
      {"last one", "10.0.0.0/22", 24, Ps({"10.0.0.0/23", "10.0.2.0/24"}), "10.0.3.0/24"},
      {"full", "10.0.0.0/22", 24, Ps({"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"}),
       "none"},
      {"pool inside a taken one", "10.0.0.0/22", 24, Ps({"10.0.0.0/8"}), "none"},
      {"everything taken", "10.0.0.0/8", 24, Ps({"0.0.0.0/0"}), "none"},
      {"top of the address space", "255.255.255.0/24", 25, Ps({"255.255.255.0/25"}),
       "255.255.255.128/25"},
      {"top of the address space, full", "255.255.255.0/24", 25,
       Ps({"255.255.255.64/26", "255.255.255.192/26"}), "none"},
      {"whole address space", "0.0.0.0/0", 1, Ps({"0.0.0.0/1"}), "128.0.0.0/1"},
      {"/32 subnets", "192.168.1.0/30", 32, Ps({"192.168.1.0/31", "192.168.1.3/32"}),
       "192.168.1.2/32"},
  };
  for (const Row& row : rows) {
    INFO(row.name);
    CHECK(next_str(row.pool, row.length, row.taken) == std::string(row.expected));
  }
}

TEST_CASE("next_free_subnet rejects lengths that do not fit the pool") {
  for (unsigned length : {7u, 33u}) {
    INFO(length);
    try {
      next_free_subnet(P("10.0.0.0/8"), length, {});
      FAIL("no throw");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      CHECK_THAT(e.what(),
                 Catch::Contains("10.0.0.0/8") && Catch::Contains("/" + std::to_string(length)));
    }
  }
}

TEST_CASE("next_free_subnet with thousands of taken subnets is fast") {
  // 10.0.0.0/24 .. 10.39.255.0/24 taken, shuffled, plus one gap at 10.17.3.0.
  std::vector<Ipv4Prefix> taken;
  const uint32_t base = Ipv4Address::parse("10.0.0.0").value();
  for (uint32_t i = 0; i < 40 * 256; ++i) taken.emplace_back(Ipv4Address(base + (i << 8)), 24);
  std::mt19937 rng(7);
  std::shuffle(taken.begin(), taken.end(), rng);

  const auto start = std::chrono::steady_clock::now();
  CHECK(next_free_subnet(default_address_pool(), 24, taken) == P("10.40.0.0/24"));
  std::erase(taken, P("10.17.3.0/24"));
  CHECK(next_free_subnet(default_address_pool(), 24, taken) == P("10.17.3.0/24"));
  // A /16 must not overlap any of them: 10.40.0.0/16 is the first clean one.
  CHECK(next_free_subnet(default_address_pool(), 16, taken) == P("10.40.0.0/16"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
}

TEST_CASE("next_free_subnet agrees with a brute force search") {
  std::mt19937 rng(99);
  const Ipv4Prefix pool = P("10.0.0.0/20");
  for (int round = 0; round < 300; ++round) {
    const unsigned length = 22 + rng() % 5;  // /22 .. /26
    std::vector<Ipv4Prefix> taken;
    const int count = rng() % 24;
    for (int i = 0; i < count; ++i) {
      const unsigned len = 19 + rng() % 10;  // /19 .. /28, some larger than the pool
      const uint32_t addr = pool.network().value() - (1u << 12) + rng() % (1u << 14);
      taken.emplace_back(Ipv4Address(addr), len);
    }
    std::optional<Ipv4Prefix> expected;
    for (uint64_t a = pool.network().value(); a <= pool.broadcast().value();
         a += uint64_t{1} << (32 - length)) {
      const Ipv4Prefix candidate(Ipv4Address(static_cast<uint32_t>(a)), length);
      if (std::none_of(taken.begin(), taken.end(), [&](const Ipv4Prefix& t) {
            return Ipv4Prefix(t.network(), t.length()).overlaps(candidate);
          })) {
        expected = candidate;
        break;
      }
    }
    INFO("round " << round << " length " << length);
    REQUIRE(next_free_subnet(pool, length, taken) == expected);
  }
}

namespace {

swarmnet::ipam::AddressPools Pools(std::initializer_list<const char*> pools, unsigned mask_length) {
  swarmnet::ipam::AddressPools p;
  for (const char* t : pools) p.pools.push_back(P(t));
  p.mask_length = mask_length;
  return p;
}

std::string refusal(const swarmnet::ipam::AddressPools& p) {
  return swarmnet::ipam::address_pools_refusal(p).value_or("accepted");
}

}  // namespace

TEST_CASE("swarm's default pools") {
  CHECK(swarmnet::ipam::default_address_pools() == Pools({"10.0.0.0/8"}, 24));
  CHECK(refusal(swarmnet::ipam::default_address_pools()) == "accepted");
}

TEST_CASE("several pools: the first with room is used, with the mask length") {
  const auto pools = Pools({"172.30.0.0/24", "192.168.100.0/23"}, 26);
  std::vector<Ipv4Prefix> taken;
  std::vector<std::string> picked;
  while (auto s = next_free_subnet(pools, taken)) {
    picked.push_back(s->str());
    taken.push_back(*s);
  }
  CHECK(picked == std::vector<std::string>{"172.30.0.0/26", "172.30.0.64/26", "172.30.0.128/26",
                                           "172.30.0.192/26", "192.168.100.0/26", "192.168.100.64/26",
                                           "192.168.100.128/26", "192.168.100.192/26", "192.168.101.0/26",
                                           "192.168.101.64/26", "192.168.101.128/26", "192.168.101.192/26"});
  // A subnet freed in the first pool is used again before the second's.
  std::erase(taken, P("172.30.0.64/26"));
  taken.pop_back();
  CHECK(next_free_subnet(pools, taken) == P("172.30.0.64/26"));
  // Anything else in use (a network given --subnet, a host route) is skipped.
  CHECK(next_free_subnet(pools, Ps({"172.30.0.0/25"})) == P("172.30.0.128/26"));
  CHECK(next_free_subnet(pools, Ps({"172.30.0.0/16"})) == P("192.168.100.0/26"));
}

TEST_CASE("address pools are refused with the reason") {
  struct Row {
    swarmnet::ipam::AddressPools pools;
    const char* says;  // "accepted", or a piece of the refusal
  };
  const Row rows[] = {
      {Pools({"10.20.0.0/16", "10.30.0.0/16"}, 26), "accepted"},
      {Pools({"10.20.0.0/16"}, 16), "accepted"},
      {Pools({"10.20.0.0/16"}, 30), "accepted"},
      {Pools({}, 24), "no default address pool"},
      {Pools({"10.20.0.0/16"}, 31), "/31 is too long: a network needs at least a /30"},
      {Pools({"10.20.0.0/16"}, 32), "/32 is too long"},
      {Pools({"10.20.0.0/16"}, 8), "10.20.0.0/16 cannot hold one /8 subnet: the mask length must be at least 16"},
      {Pools({"10.0.0.0/8", "172.16.0.0/12"}, 10), "172.16.0.0/12 cannot hold one /10 subnet"},
      {Pools({"10.20.0.1/16"}, 24), "host bits set (did you mean 10.20.0.0/16?)"},
      {Pools({"0.0.0.0/0"}, 24), "would hold every IPv4 address"},
      {Pools({"0.0.0.0/8"}, 24), "overlaps 0.0.0.0/8"},
      {Pools({"127.0.0.0/16"}, 24), "overlaps 127.0.0.0/8 (loopback)"},
      {Pools({"169.254.0.0/16"}, 24), "link-local"},
      {Pools({"224.0.0.0/8"}, 24), "multicast"},
      {Pools({"240.0.0.0/8"}, 24), "overlaps 240.0.0.0/4"},
      {Pools({"10.0.0.0/8", "10.1.0.0/16"}, 24), "pools 10.0.0.0/8 and 10.1.0.0/16 overlap"},
      {Pools({"10.1.0.0/16", "10.1.0.0/16"}, 24), "overlap"},
  };
  for (const Row& row : rows) {
    std::string pools;
    for (const auto& p : row.pools.pools) pools += p.str() + " ";
    INFO(pools << "/" << row.pools.mask_length);
    if (std::string(row.says) == "accepted") {
      CHECK(refusal(row.pools) == "accepted");
    } else {
      CHECK_THAT(refusal(row.pools), Catch::Contains(row.says));
    }
  }
  swarmnet::ipam::AddressPools too_many;  // 11.0.0.0/8, 12.0.0.0/8, ...: each valid alone
  for (uint32_t i = 0; i <= swarmnet::ipam::kMaxAddressPools; ++i) {
    too_many.pools.emplace_back(Ipv4Address((11 + i) << 24), 8);
  }
  CHECK_THAT(refusal(too_many), Catch::Contains("at most 32"));
}
