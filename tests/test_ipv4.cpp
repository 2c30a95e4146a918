// Text forms of addresses and ports (common/ipv4.hpp).
#include <catch2/catch.hpp>

#include "common/ipv4.hpp"

using namespace swarmnet;

TEST_CASE("parse_port takes 1-65535 in decimal and nothing else") {
  CHECK(parse_port("80") == uint16_t{80});
  CHECK(parse_port("65535") == uint16_t{65535});
  CHECK_FALSE(parse_port("0"));
  CHECK_FALSE(parse_port("65536"));
  CHECK_FALSE(parse_port("80x"));
  CHECK_FALSE(parse_port("-1"));
  CHECK_FALSE(parse_port(" 80"));
  CHECK_FALSE(parse_port(""));
}
