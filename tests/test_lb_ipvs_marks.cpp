// The IPVS balancer's pure parts: marks from keys, key checks, sysctls per
// kernel release. The kernel side is tested in the VM
// (integration/test_lb_ipvs_vm.sh).
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "lb/ipvs_balancer.hpp"

using namespace swarmnet;
using namespace swarmnet::lb;

TEST_CASE("a key's mark is stable, carries the swarmnet prefix, and differs between keys",
          "[lb][ipvs]") {
  uint32_t web = preferred_mark("svc-web/net-a");
  CHECK(web == preferred_mark("svc-web/net-a"));
  CHECK(is_swarmnet_mark(web));
  CHECK(web != preferred_mark("svc-web/net-b"));
  CHECK_FALSE(is_swarmnet_mark(256));         // Docker's own marks
  CHECK_FALSE(is_swarmnet_mark(0x4000));      // kube-proxy's
  CHECK_FALSE(is_swarmnet_mark(kMarkPrefix));  // the prefix alone is no mark
}

TEST_CASE("a taken mark moves the key to the next free one", "[lb][ipvs]") {
  uint32_t first = preferred_mark("a");
  CHECK(allocate_mark("a", {}) == first);
  uint32_t second = allocate_mark("a", {first});
  CHECK(second == first + 1);
  CHECK(allocate_mark("a", {first, second}) == first + 2);
  CHECK(is_swarmnet_mark(second));
}

TEST_CASE("marks wrap inside the prefix", "[lb][ipvs]") {
  // Find a key whose preferred mark is not the last value; then fill up to
  // the last value and check the wrap lands on 1 after it.
  std::set<uint32_t> used;
  uint32_t start = preferred_mark("wrap");
  for (uint32_t m = start; m <= (kMarkPrefix | 0x00ffffff); ++m) used.insert(m);
  uint32_t wrapped = allocate_mark("wrap", used);
  CHECK(wrapped == (kMarkPrefix | 1));
}

TEST_CASE("VIP keys are checked before they reach nftables", "[lb][ipvs]") {
  CHECK_NOTHROW(check_vip_key("3f2a9c/net-7b1e"));
  CHECK_THROWS_AS(check_vip_key(""), Error);
  CHECK_THROWS_AS(check_vip_key(std::string(64, 'k')), Error);
  CHECK_THROWS_AS(check_vip_key("a\"b"), Error);
  CHECK_THROWS_AS(check_vip_key("a\\b"), Error);
  CHECK_THROWS_AS(check_vip_key("a\nb"), Error);
  try {
    check_vip_key("a\"b");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
}

TEST_CASE("conn_reuse_mode is 1 only where the kernel fixed its one-second delay",
          "[lb][ipvs]") {
  auto value_of = [](std::string_view release, const std::string& key) {
    for (const auto& [k, v] : ipvs_sysctls(release)) {
      if (k == key) return v;
    }
    return std::string("missing");
  };
  CHECK(value_of("6.1.0-56-amd64", "net/ipv4/vs/conn_reuse_mode") == "1");
  CHECK(value_of("5.9.0", "net/ipv4/vs/conn_reuse_mode") == "1");
  CHECK(value_of("5.4.0-150-generic", "net/ipv4/vs/conn_reuse_mode") == "0");
  CHECK(value_of("4.19.0", "net/ipv4/vs/conn_reuse_mode") == "0");
  CHECK(value_of("6.1.0", "net/ipv4/vs/sloppy_tcp") == "1");
  CHECK(value_of("6.1.0", "net/ipv4/vs/expire_nodest_conn") == "1");
  CHECK(value_of("6.1.0", "net/ipv4/vs/conntrack") == "1");
}
