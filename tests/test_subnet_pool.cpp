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
