#include <catch2/catch.hpp>
#include <chrono>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "ipam/address_space.hpp"

using swarmnet::Errc;
using swarmnet::Error;
using swarmnet::Ipv4Address;
using swarmnet::Ipv4Prefix;
using swarmnet::ipam::AddressSpace;
using swarmnet::ipam::default_block_length;

namespace {

Ipv4Address A(const char* text) {
  return Ipv4Address::parse(text);
}
Ipv4Prefix P(const char* text) {
  return Ipv4Prefix::parse(text);
}

// Runs f, expects an Error with that code, and returns its message.
template <typename F>
std::string error_of(Errc code, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(swarmnet::to_string(e.code()) == swarmnet::to_string(code));
    return e.what();
  }
  FAIL("no swarmnet::Error thrown");
  return {};
}

std::string next_str(AddressSpace& space) {
  auto a = space.allocate_next();
  return a ? a->str() : "none";
}

std::vector<std::string> next_n(AddressSpace& space, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(next_str(space));
  return out;
}

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("default_block_length follows min(30, max(24, length + 5))") {
  struct Row {
    const char* subnet;
    unsigned expected;
  };
  const Row rows[] = {
      {"0.0.0.0/0", 24},   {"10.0.0.0/8", 24},  {"10.1.0.0/16", 24}, {"10.0.0.0/19", 24},
      {"10.0.0.0/20", 25}, {"10.0.0.0/22", 27}, {"10.0.0.0/23", 28}, {"10.0.0.0/24", 29},
      {"10.0.0.0/25", 30}, {"10.0.0.0/26", 30}, {"10.0.0.0/28", 30}, {"10.0.0.0/29", 30},
      {"10.0.0.0/30", 30},
  };
  for (const Row& row : rows) {
    INFO(row.subnet);
    CHECK(default_block_length(P(row.subnet)) == row.expected);
    // Whatever it picks must be accepted by the constructor.
    const Ipv4Prefix subnet = P(row.subnet);
    AddressSpace space(subnet, Ipv4Address(subnet.network().value() + 1), row.expected);
    CHECK(space.block_length() == row.expected);
  }
  for (const char* tiny : {"10.0.0.0/31", "10.0.0.1/32"}) {
    INFO(tiny);
    auto msg = error_of(Errc::invalid_argument, [&] { default_block_length(P(tiny)); });
    CHECK_THAT(msg, Catch::Contains(tiny) && Catch::Contains("too small"));
  }
}

TEST_CASE("constructor rejects invalid arguments with clear messages") {
  struct Row {
    const char* subnet;
    const char* gateway;
    unsigned block_length;
    const char* message_part;
  };
  const Row rows[] = {
      {"10.0.0.1/24", "10.0.0.2", 24, "host bits"},
      {"10.0.0.0/31", "10.0.0.1", 31, "too small"},
      {"10.0.0.1/32", "10.0.0.1", 32, "too small"},
      {"10.0.0.0/24", "10.0.1.1", 24, "gateway 10.0.1.1"},
      {"10.0.0.0/24", "10.0.0.0", 24, "gateway 10.0.0.0"},
      {"10.0.0.0/24", "10.0.0.255", 24, "gateway 10.0.0.255"},
      {"10.0.0.0/24", "10.0.0.1", 23, "block length /23"},
      {"10.0.0.0/24", "10.0.0.1", 31, "block length /31"},
      {"10.0.0.0/24", "10.0.0.1", 32, "block length /32"},
  };
  for (const Row& row : rows) {
    INFO(row.subnet << " gw " << row.gateway << " /" << row.block_length);
    auto msg = error_of(Errc::invalid_argument,
                        [&] { AddressSpace(P(row.subnet), A(row.gateway), row.block_length); });
    CHECK_THAT(msg, Catch::Contains(row.message_part));
  }
  // The edges that are fine.
  CHECK_NOTHROW(AddressSpace(P("10.0.0.0/24"), A("10.0.0.254"), 24));
  CHECK_NOTHROW(AddressSpace(P("10.0.0.0/24"), A("10.0.0.1"), 30));
  CHECK_NOTHROW(AddressSpace(P("10.0.0.0/30"), A("10.0.0.2"), 30));
}

TEST_CASE("blocks: all_blocks, block_of, ownership checks") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 26);
  CHECK(space.subnet() == P("10.0.0.0/24"));
  CHECK(space.gateway() == A("10.0.0.1"));
  CHECK(space.all_blocks() == std::vector<Ipv4Prefix>{P("10.0.0.0/26"), P("10.0.0.64/26"),
                                                      P("10.0.0.128/26"), P("10.0.0.192/26")});
  CHECK(space.block_of(A("10.0.0.0")) == P("10.0.0.0/26"));
  CHECK(space.block_of(A("10.0.0.63")) == P("10.0.0.0/26"));
  CHECK(space.block_of(A("10.0.0.130")) == P("10.0.0.128/26"));
  CHECK(space.block_of(A("10.0.0.255")) == P("10.0.0.192/26"));
  auto msg = error_of(Errc::invalid_argument, [&] { space.block_of(A("10.0.1.0")); });
  CHECK_THAT(msg, Catch::Contains("10.0.1.0") && Catch::Contains("10.0.0.0/24"));

  for (const char* bad :
       {"10.0.0.0/25", "10.0.0.0/27", "10.0.0.65/26", "10.0.1.0/26", "10.0.0.0/24"}) {
    INFO(bad);
    auto m = error_of(Errc::invalid_argument, [&] { space.own_block(P(bad)); });
    CHECK_THAT(m, Catch::Contains(bad));
    CHECK_THROWS_AS(space.disown_block(P(bad)), Error);
    CHECK_THROWS_AS(space.used_in_block(P(bad)), Error);
    CHECK_FALSE(space.owns_block(P(bad)));
  }
  CHECK(space.owned_blocks().empty());

  space.own_block(P("10.0.0.128/26"));
  space.own_block(P("10.0.0.0/26"));
  space.own_block(P("10.0.0.128/26"));  // again: no-op
  CHECK(space.owned_blocks() == std::vector<Ipv4Prefix>{P("10.0.0.0/26"), P("10.0.0.128/26")});
  CHECK(space.owns_block(P("10.0.0.0/26")));
  CHECK_FALSE(space.owns_block(P("10.0.0.64/26")));
  CHECK(space.owns(A("10.0.0.130")));
  CHECK_FALSE(space.owns(A("10.0.0.64")));
  CHECK_FALSE(space.owns(A("10.0.1.130")));
  space.disown_block(P("10.0.0.64/26"));  // not owned: no-op
  space.disown_block(P("10.0.0.0/26"));
  CHECK(space.owned_blocks() == std::vector<Ipv4Prefix>{P("10.0.0.128/26")});
}

TEST_CASE("reserved addresses are never handed out") {
  struct Row {
    const char* subnet;
    const char* gateway;
    unsigned block_length;
  };
  const Row rows[] = {
      {"10.0.0.0/24", "10.0.0.1", 24},   {"10.0.0.0/24", "10.0.0.100", 24},
      {"10.0.0.0/24", "10.0.0.254", 26}, {"10.0.0.0/24", "10.0.0.1", 30},
      {"10.0.0.0/28", "10.0.0.7", 30},   {"10.0.0.0/30", "10.0.0.1", 30},
  };
  for (const Row& row : rows) {
    INFO(row.subnet << " gw " << row.gateway << " /" << row.block_length);
    AddressSpace space(P(row.subnet), A(row.gateway), row.block_length);
    for (const auto& b : space.all_blocks()) space.own_block(b);
    const uint64_t capacity = P(row.subnet).size() - 3;
    CHECK(space.capacity() == capacity);
    CHECK(space.free_in_owned() == capacity);
    std::set<Ipv4Address> seen;
    while (auto a = space.allocate_next()) {
      CHECK_FALSE(space.is_reserved(*a));
      CHECK(P(row.subnet).contains(*a));
      CHECK(seen.insert(*a).second);
    }
    CHECK(seen.size() == capacity);
    CHECK(space.used() == capacity);
    CHECK(space.free_in_owned() == 0);
    CHECK(space.is_reserved(A(row.gateway)));
    CHECK(space.is_reserved(P(row.subnet).network()));
    CHECK(space.is_reserved(P(row.subnet).broadcast()));
    CHECK_FALSE(space.in_use(A(row.gateway)));
  }
}

TEST_CASE("allocation order skips the gateway wherever it is") {
  AddressSpace space(P("192.168.5.0/29"), A("192.168.5.3"), 29);
  space.own_block(P("192.168.5.0/29"));
  CHECK(next_n(space, 6) ==
        Strings{"192.168.5.1", "192.168.5.2", "192.168.5.4", "192.168.5.5", "192.168.5.6", "none"});
}

TEST_CASE("round robin: a released address comes back only after the rest") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 24);
  space.own_block(P("10.0.0.0/24"));
  CHECK_FALSE(space.cursor().has_value());
  CHECK(next_n(space, 3) == Strings{"10.0.0.2", "10.0.0.3", "10.0.0.4"});
  CHECK(space.cursor() == A("10.0.0.4"));
  space.release(A("10.0.0.3"));
  CHECK_FALSE(space.in_use(A("10.0.0.3")));
  CHECK(next_n(space, 2) == Strings{"10.0.0.5", "10.0.0.6"});

  // Run through the rest of the range; .3 is the last one left and comes
  // back only then, after the wrap.
  for (int i = 7; i <= 254; ++i) REQUIRE(next_str(space) == "10.0.0." + std::to_string(i));
  CHECK(next_str(space) == "10.0.0.3");
  CHECK(next_str(space) == "none");
  CHECK(space.cursor() == A("10.0.0.3"));
}

TEST_CASE("wrap-around resumes at the start of the owned range") {
  AddressSpace space(P("10.0.0.0/29"), A("10.0.0.1"), 29);
  space.own_block(P("10.0.0.0/29"));
  CHECK(next_n(space, 5) == Strings{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"});
  space.release(A("10.0.0.2"));
  space.release(A("10.0.0.5"));
  space.release(A("10.0.0.4"));
  // Cursor at .6, the last usable address: wraps, then takes .4 and .5 in order.
  CHECK(next_n(space, 4) == Strings{"10.0.0.2", "10.0.0.4", "10.0.0.5", "none"});
  CHECK(space.cursor() == A("10.0.0.5"));

  space.release(A("10.0.0.3"));
  space.release(A("10.0.0.6"));
  // After .5: .6 first, then wrap to .3.
  CHECK(next_n(space, 3) == Strings{"10.0.0.6", "10.0.0.3", "none"});
}

TEST_CASE("wrap-around across blocks goes to the lowest owned block") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 26);
  space.own_block(P("10.0.0.64/26"));
  space.own_block(P("10.0.0.192/26"));
  space.set_cursor(A("10.0.0.250"));
  CHECK(next_n(space, 6) ==
        Strings{"10.0.0.251", "10.0.0.252", "10.0.0.253", "10.0.0.254", "10.0.0.64", "10.0.0.65"});
  // A cursor in an unowned block moves on to the next owned one.
  space.set_cursor(A("10.0.0.130"));
  CHECK(next_str(space) == "10.0.0.192");
}

TEST_CASE("cursor outside the subnet or at its end starts from the beginning") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 24);
  space.own_block(P("10.0.0.0/24"));
  space.set_cursor(A("172.16.0.9"));
  CHECK(next_str(space) == "10.0.0.2");
  space.set_cursor(A("10.0.0.255"));
  CHECK(next_str(space) == "10.0.0.3");
  space.set_cursor(A("10.0.0.253"));
  CHECK(next_str(space) == "10.0.0.254");
  space.set_cursor(A("10.0.0.254"));  // the next one would be the broadcast
  CHECK(next_str(space) == "10.0.0.4");
  space.set_cursor(std::nullopt);
  CHECK(next_str(space) == "10.0.0.5");
}

TEST_CASE("cursor save and restore continues where it left off") {
  const Ipv4Prefix subnet = P("10.20.0.0/22");
  AddressSpace first(subnet, A("10.20.0.1"), 24);
  first.own_block(P("10.20.0.0/24"));
  first.own_block(P("10.20.2.0/24"));
  std::vector<Ipv4Address> live;
  for (int i = 0; i < 300; ++i) live.push_back(*first.allocate_next());
  // Free a few before and after the cursor so both orders matter.
  for (int i : {5, 17, 100, 299}) first.release(live[i]);
  live.erase(live.begin() + 299);
  live.erase(live.begin() + 100);
  live.erase(live.begin() + 17);
  live.erase(live.begin() + 5);
  const auto saved = first.cursor();
  REQUIRE(saved == A("10.20.2.45"));

  // Rebuild as the daemon does at start: addresses first, then blocks.
  AddressSpace second(subnet, A("10.20.0.1"), 24);
  for (Ipv4Address a : live) second.mark_used(a);
  second.own_block(P("10.20.0.0/24"));
  second.own_block(P("10.20.2.0/24"));
  second.set_cursor(saved);
  CHECK(second.used() == first.used());
  CHECK(second.free_in_owned() == first.free_in_owned());
  for (int i = 0; i < 300; ++i) {
    auto a = first.allocate_next();
    auto b = second.allocate_next();
    REQUIRE(a == b);
  }
  CHECK(first.used() == second.used());

  // Without restoring the cursor the rebuilt space would start over at .2.
  AddressSpace third(subnet, A("10.20.0.1"), 24);
  for (Ipv4Address a : live) third.mark_used(a);
  third.own_block(P("10.20.0.0/24"));
  CHECK(next_str(third) == "10.20.0.7");  // live[5] was .7
}

TEST_CASE("static allocation") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 26);
  space.own_block(P("10.0.0.0/26"));

  space.allocate(A("10.0.0.10"));
  CHECK(space.in_use(A("10.0.0.10")));
  CHECK(space.used() == 1);
  CHECK_FALSE(space.cursor().has_value());  // a static request does not move it
  CHECK(next_str(space) == "10.0.0.2");
  space.allocate(A("10.0.0.3"));
  CHECK(space.cursor() == A("10.0.0.2"));
  // The round robin steps over statically taken addresses.
  CHECK(next_n(space, 2) == Strings{"10.0.0.4", "10.0.0.5"});

  SECTION("outside the subnet") {
    auto msg = error_of(Errc::invalid_argument, [&] { space.allocate(A("10.0.1.10")); });
    CHECK_THAT(msg, Catch::Contains("10.0.1.10") && Catch::Contains("10.0.0.0/24") &&
                        Catch::Contains("outside"));
  }
  SECTION("reserved") {
    struct Row {
      const char* address;
      const char* why;
    };
    for (const Row& row :
         {Row{"10.0.0.0", "network"}, Row{"10.0.0.1", "gateway"}, Row{"10.0.0.255", "broadcast"}}) {
      INFO(row.address);
      if (std::string(row.address) == "10.0.0.255") space.own_block(P("10.0.0.192/26"));
      auto msg = error_of(Errc::invalid_argument, [&] { space.allocate(A(row.address)); });
      CHECK_THAT(msg, Catch::Contains(row.address) && Catch::Contains("10.0.0.0/24") &&
                          Catch::Contains("reserved") && Catch::Contains(row.why));
    }
  }
  SECTION("already in use") {
    auto msg = error_of(Errc::conflict, [&] { space.allocate(A("10.0.0.10")); });
    CHECK_THAT(msg, Catch::Contains("10.0.0.10") && Catch::Contains("in use"));
    msg = error_of(Errc::conflict, [&] { space.allocate(A("10.0.0.4")); });
    CHECK_THAT(msg, Catch::Contains("10.0.0.4"));
    CHECK(space.used() == 5);
  }
  SECTION("in a block this node does not own") {
    auto msg = error_of(Errc::conflict, [&] { space.allocate(A("10.0.0.70")); });
    CHECK_THAT(msg, Catch::Contains("10.0.0.70") && Catch::Contains("10.0.0.64/26") &&
                        Catch::Contains("not owned"));
    CHECK_FALSE(space.in_use(A("10.0.0.70")));
    space.own_block(P("10.0.0.64/26"));
    space.allocate(A("10.0.0.70"));
    CHECK(space.in_use(A("10.0.0.70")));
  }
}

TEST_CASE("exhaustion and counts") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 26);
  CHECK(space.capacity() == 253);
  CHECK(space.free_in_owned() == 0);
  CHECK_FALSE(space.allocate_next().has_value());  // nothing owned

  space.own_block(P("10.0.0.0/26"));
  CHECK(space.free_in_owned() == 62);  // minus network and gateway
  for (int i = 2; i <= 63; ++i) REQUIRE(next_str(space) == "10.0.0." + std::to_string(i));
  CHECK_FALSE(space.allocate_next().has_value());
  CHECK(space.used() == 62);
  CHECK(space.used_in_block(P("10.0.0.0/26")) == 62);
  CHECK(space.used_in_block(P("10.0.0.64/26")) == 0);
  CHECK(space.free_in_owned() == 0);
  CHECK(space.cursor() == A("10.0.0.63"));

  space.own_block(P("10.0.0.192/26"));
  CHECK(space.free_in_owned() == 63);  // minus broadcast
  CHECK(next_str(space) == "10.0.0.192");
  CHECK(space.free_in_owned() == 62);

  space.release(A("10.0.0.30"));
  CHECK(space.free_in_owned() == 63);
  CHECK(space.used_in_block(P("10.0.0.0/26")) == 61);
  CHECK(space.used() == 62);
  CHECK(space.capacity() == 253);  // independent of ownership and use
}

TEST_CASE("release is idempotent and checks the subnet") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 24);
  space.own_block(P("10.0.0.0/24"));
  auto a = space.allocate_next();
  REQUIRE(a == A("10.0.0.2"));
  space.release(*a);
  space.release(*a);
  space.release(A("10.0.0.77"));  // never used
  space.release(A("10.0.0.1"));   // reserved: never in use
  space.release(A("10.0.0.0"));
  CHECK(space.used() == 0);
  CHECK(space.free_in_owned() == 253);
  auto msg = error_of(Errc::invalid_argument, [&] { space.release(A("10.0.9.2")); });
  CHECK_THAT(msg, Catch::Contains("10.0.9.2") && Catch::Contains("10.0.0.0/24"));
}

TEST_CASE("ownership changes: disown needs an empty block") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 26);
  space.own_block(P("10.0.0.0/26"));
  space.own_block(P("10.0.0.128/26"));
  CHECK(space.free_in_owned() == 62 + 64);

  // Filling block .0/26 moves on to .128/26, skipping the unowned .64/26.
  for (int i = 0; i < 62; ++i) REQUIRE(space.allocate_next());
  CHECK(next_str(space) == "10.0.0.128");

  auto msg = error_of(Errc::conflict, [&] { space.disown_block(P("10.0.0.128/26")); });
  CHECK_THAT(msg, Catch::Contains("10.0.0.128/26") && Catch::Contains("1 address"));
  CHECK(space.owns_block(P("10.0.0.128/26")));

  space.release(A("10.0.0.128"));
  space.disown_block(P("10.0.0.128/26"));
  CHECK_FALSE(space.owns_block(P("10.0.0.128/26")));
  CHECK(space.free_in_owned() == 0);
  CHECK_FALSE(space.allocate_next().has_value());
  CHECK_THROWS_AS(space.allocate(A("10.0.0.130")), Error);

  // Re-owning gives a fresh, empty block.
  space.own_block(P("10.0.0.128/26"));
  CHECK(space.free_in_owned() == 64);
  CHECK(next_str(space) == "10.0.0.129");  // round robin: after the cursor .128
}

TEST_CASE("mark_used before own_block (rebuilding from saved state)") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 26);
  space.mark_used(A("10.0.0.70"));
  space.mark_used(A("10.0.0.70"));  // a replay may repeat
  space.mark_used(A("10.0.0.64"));
  CHECK(space.in_use(A("10.0.0.70")));
  CHECK(space.used() == 2);
  CHECK(space.used_in_block(P("10.0.0.64/26")) == 2);
  CHECK(space.free_in_owned() == 0);
  CHECK_FALSE(space.owns(A("10.0.0.70")));
  CHECK_FALSE(space.allocate_next().has_value());

  SECTION("the block is then owned: its used addresses stay used") {
    space.own_block(P("10.0.0.64/26"));
    CHECK(space.free_in_owned() == 62);
    CHECK_THROWS_AS(space.allocate(A("10.0.0.70")), Error);
    CHECK_THROWS_AS(space.disown_block(P("10.0.0.64/26")), Error);
    std::set<Ipv4Address> got;
    while (auto a = space.allocate_next()) got.insert(*a);
    CHECK(got.size() == 62);
    CHECK_FALSE(got.contains(A("10.0.0.64")));
    CHECK_FALSE(got.contains(A("10.0.0.70")));
    CHECK(space.used_in_block(P("10.0.0.64/26")) == 64);
  }
  SECTION("released before the block is owned") {
    space.release(A("10.0.0.70"));
    space.release(A("10.0.0.64"));
    CHECK(space.used() == 0);
    CHECK(space.used_in_block(P("10.0.0.64/26")) == 0);
    space.own_block(P("10.0.0.64/26"));
    CHECK(space.free_in_owned() == 64);
    CHECK(next_str(space) == "10.0.0.64");
  }
  SECTION("inside an owned block") {
    space.own_block(P("10.0.0.0/26"));
    space.mark_used(A("10.0.0.2"));
    CHECK(space.free_in_owned() == 61);
    CHECK(next_str(space) == "10.0.0.3");
  }
  SECTION("same range checks as allocate") {
    auto msg = error_of(Errc::invalid_argument, [&] { space.mark_used(A("10.0.2.5")); });
    CHECK_THAT(msg, Catch::Contains("10.0.2.5") && Catch::Contains("10.0.0.0/24"));
    for (const char* reserved : {"10.0.0.0", "10.0.0.1", "10.0.0.255"}) {
      INFO(reserved);
      msg = error_of(Errc::invalid_argument, [&] { space.mark_used(A(reserved)); });
      CHECK_THAT(msg, Catch::Contains(reserved) && Catch::Contains("reserved"));
    }
    CHECK(space.used() == 2);
  }
}

TEST_CASE("/30 subnet: one address besides the gateway") {
  AddressSpace space(P("172.30.0.4/30"), A("172.30.0.5"), default_block_length(P("172.30.0.4/30")));
  CHECK(space.all_blocks() == std::vector<Ipv4Prefix>{P("172.30.0.4/30")});
  CHECK(space.capacity() == 1);
  space.own_block(P("172.30.0.4/30"));
  CHECK(space.free_in_owned() == 1);
  CHECK(next_n(space, 2) == Strings{"172.30.0.6", "none"});
  space.release(A("172.30.0.6"));
  CHECK(next_str(space) == "172.30.0.6");
}

TEST_CASE("/30 blocks in a /24") {
  AddressSpace space(P("10.0.0.0/24"), A("10.0.0.1"), 30);
  CHECK(space.all_blocks().size() == 64);
  space.own_block(P("10.0.0.0/30"));
  space.own_block(P("10.0.0.252/30"));
  CHECK(space.free_in_owned() == 2 + 3);
  CHECK(next_n(space, 6) ==
        Strings{"10.0.0.2", "10.0.0.3", "10.0.0.252", "10.0.0.253", "10.0.0.254", "none"});
}

TEST_CASE("a /16 with /24 blocks allocates 10,000 addresses quickly") {
  AddressSpace space(P("10.1.0.0/16"), A("10.1.0.1"), default_block_length(P("10.1.0.0/16")));
  REQUIRE(space.block_length() == 24);
  const auto blocks = space.all_blocks();
  REQUIRE(blocks.size() == 256);
  size_t next_block = 0;
  std::set<Ipv4Address> seen;
  Ipv4Address last;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10000; ++i) {
    auto a = space.allocate_next();
    if (!a) {
      space.own_block(blocks.at(next_block++));  // as the daemon claims a block when full
      a = space.allocate_next();
    }
    REQUIRE(a);
    REQUIRE(seen.insert(*a).second);
    last = *a;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < std::chrono::seconds(2));
  // 254 in the first block (network and gateway reserved), then 256 a block:
  // 9746 = 38 * 256 + 18.
  CHECK(*seen.begin() == A("10.1.0.2"));
  CHECK(last == A("10.1.39.17"));
  CHECK(next_block == 40);
  CHECK(space.used() == 10000);
  CHECK(space.free_in_owned() == 256 - 18);
}

TEST_CASE("a /8 in /24 blocks: only owned blocks are looked at") {
  AddressSpace space(P("10.0.0.0/8"), A("10.0.0.1"), default_block_length(P("10.0.0.0/8")));
  CHECK(space.capacity() == (uint64_t{1} << 24) - 3);
  CHECK(space.all_blocks().size() == 65536);
  space.own_block(P("10.200.3.0/24"));
  space.own_block(P("10.255.255.0/24"));
  space.set_cursor(A("10.0.0.9"));
  CHECK(next_str(space) == "10.200.3.0");
  space.set_cursor(A("10.200.3.255"));
  CHECK(next_str(space) == "10.255.255.0");
  space.set_cursor(A("10.255.255.254"));  // last usable: wraps to the lowest owned block
  CHECK(next_str(space) == "10.200.3.1");
  CHECK(space.free_in_owned() == 256 + 255 - 3);
}

TEST_CASE("a large block: the search skips full words") {
  // One /14 block: 262,144 addresses, 4096 bitmap words.
  AddressSpace space(P("10.4.0.0/14"), A("10.4.0.1"), 14);
  space.own_block(P("10.4.0.0/14"));
  const uint32_t base = A("10.4.0.0").value();
  const uint32_t hole = A("10.6.3.77").value();
  for (uint32_t v = base + 2; v < base + (1u << 18) - 1; ++v) {
    if (v != hole) space.mark_used(Ipv4Address(v));
  }
  CHECK(space.free_in_owned() == 1);
  space.set_cursor(A("10.4.0.5"));
  CHECK(next_str(space) == "10.6.3.77");
  CHECK(next_str(space) == "none");
  // Past the hole it must wrap to find the only free address, before the cursor.
  space.release(A("10.4.0.3"));
  CHECK(next_str(space) == "10.4.0.3");
  space.release(A("10.7.255.254"));
  space.set_cursor(A("10.7.255.200"));
  CHECK(next_str(space) == "10.7.255.254");
}

namespace {

// The obvious, slow version of the rules, to check AddressSpace against.
struct Model {
  Ipv4Prefix subnet;
  Ipv4Address gateway;
  unsigned block_length;
  std::set<uint32_t> owned;  // block network values
  std::set<Ipv4Address> used;
  std::optional<Ipv4Address> cursor;

  uint32_t block_of(Ipv4Address a) const { return Ipv4Prefix(a, block_length).network().value(); }
  bool reserved(Ipv4Address a) const {
    return a == subnet.network() || a == subnet.broadcast() || a == gateway;
  }
  std::optional<Ipv4Address> allocate_next() {
    const uint64_t size = subnet.size();
    uint64_t start = 0;
    if (cursor && subnet.contains(*cursor)) {
      start = (cursor->value() - subnet.network().value() + 1) % size;
    }
    for (uint64_t i = 0; i < size; ++i) {
      Ipv4Address a(static_cast<uint32_t>(subnet.network().value() + (start + i) % size));
      if (!reserved(a) && !used.contains(a) && owned.contains(block_of(a))) {
        used.insert(a);
        cursor = a;
        return a;
      }
    }
    return std::nullopt;
  }
};

}  // namespace

TEST_CASE("random operations agree with a simple model") {
  struct Row {
    const char* subnet;
    const char* gateway;
    unsigned block_length;
  };
  const Row rows[] = {
      {"10.9.0.0/24", "10.9.0.1", 28},
      {"10.9.0.0/23", "10.9.1.7", 26},
      {"10.9.0.0/22", "10.9.3.254", 24},
      {"10.9.0.0/26", "10.9.0.33", 30},
  };
  std::mt19937 rng(12345);
  for (const Row& row : rows) {
    INFO(row.subnet << " gw " << row.gateway << " /" << row.block_length);
    AddressSpace space(P(row.subnet), A(row.gateway), row.block_length);
    Model model{P(row.subnet), A(row.gateway), row.block_length, {}, {}, {}};
    const auto blocks = space.all_blocks();
    auto any_address = [&] {
      return Ipv4Address(model.subnet.network().value() +
                         static_cast<uint32_t>(rng() % model.subnet.size()));
    };
    for (int step = 0; step < 6000; ++step) {
      INFO("step " << step);
      switch (rng() % 8) {
        case 0: {
          const auto& b = blocks[rng() % blocks.size()];
          space.own_block(b);
          model.owned.insert(b.network().value());
          break;
        }
        case 1: {
          const auto& b = blocks[rng() % blocks.size()];
          bool has_used = false;
          for (Ipv4Address a : model.used) has_used |= b.contains(a);
          // Disowning an unowned block is a no-op, even with addresses marked used.
          if (has_used && model.owned.contains(b.network().value())) {
            CHECK_THROWS_AS(space.disown_block(b), Error);
          } else {
            space.disown_block(b);
            model.owned.erase(b.network().value());
          }
          break;
        }
        case 2:
        case 3:
        case 4:
          REQUIRE(space.allocate_next() == model.allocate_next());
          break;
        case 5: {
          const Ipv4Address a = any_address();
          const bool ok = !model.reserved(a) && !model.used.contains(a) &&
                          model.owned.contains(model.block_of(a));
          if (ok) {
            space.allocate(a);
            model.used.insert(a);
          } else {
            CHECK_THROWS_AS(space.allocate(a), Error);
          }
          break;
        }
        case 6: {
          const Ipv4Address a = any_address();
          if (model.reserved(a)) {
            CHECK_THROWS_AS(space.mark_used(a), Error);
          } else {
            space.mark_used(a);
            model.used.insert(a);
          }
          break;
        }
        case 7: {
          // Mostly release something in use, sometimes something free.
          Ipv4Address a = any_address();
          if (!model.used.empty() && rng() % 4 != 0) {
            auto it = model.used.begin();
            std::advance(it, rng() % model.used.size());
            a = *it;
          }
          space.release(a);
          model.used.erase(a);
          break;
        }
      }
      REQUIRE(space.used() == model.used.size());
      REQUIRE(space.cursor() == model.cursor);
    }
    // Final full comparison of state.
    uint64_t free_owned = 0;
    for (uint64_t i = 0; i < model.subnet.size(); ++i) {
      Ipv4Address a(static_cast<uint32_t>(model.subnet.network().value() + i));
      REQUIRE(space.in_use(a) == model.used.contains(a));
      REQUIRE(space.owns(a) == model.owned.contains(model.block_of(a)));
      if (space.owns(a) && !model.reserved(a) && !model.used.contains(a)) ++free_owned;
    }
    CHECK(space.free_in_owned() == free_owned);
    for (const auto& b : blocks) {
      size_t n = 0;
      for (Ipv4Address a : model.used) n += b.contains(a);
      CHECK(space.used_in_block(b) == n);
    }
  }
}

TEST_CASE("an ip range: blocks cut so it holds four, allocation inside it, lowest first") {
  struct Row {
    const char* subnet;
    const char* range;
    unsigned expected;
  };
  // Never longer blocks than without the range; /30 at most.
  const Row rows[] = {
      {"10.1.0.0/16", "10.1.7.0/24", 26}, {"10.1.0.0/16", "10.1.0.0/17", 24},
      {"10.1.0.0/24", "10.1.0.64/27", 29}, {"10.1.0.0/24", "10.1.0.128/28", 30},
      {"10.1.0.0/24", "10.1.0.8/30", 30},
  };
  for (const Row& row : rows) {
    INFO(row.subnet << " " << row.range);
    CHECK(default_block_length(P(row.subnet), P(row.range)) == row.expected);
  }

  AddressSpace space(P("10.1.0.0/24"), A("10.1.0.1"), 29);
  const Ipv4Prefix range = P("10.1.0.64/27");
  CHECK(space.blocks_in(range) == std::vector<Ipv4Prefix>{P("10.1.0.64/29"), P("10.1.0.72/29"),
                                                         P("10.1.0.80/29"), P("10.1.0.88/29")});
  CHECK(space.blocks_in(P("10.1.0.4/30")) == std::vector<Ipv4Prefix>{P("10.1.0.0/29")});
  // Owned blocks outside the range are not used for it.
  space.own_block(P("10.1.0.0/29"));
  CHECK_FALSE(space.allocate_next_in(range));
  space.own_block(P("10.1.0.72/29"));
  space.own_block(P("10.1.0.88/29"));
  Strings got;
  for (int i = 0; i < 17; ++i) {
    auto a = space.allocate_next_in(range);
    got.push_back(a ? a->str() : "none");
  }
  CHECK(got == Strings{"10.1.0.72", "10.1.0.73", "10.1.0.74", "10.1.0.75", "10.1.0.76", "10.1.0.77",
                       "10.1.0.78", "10.1.0.79", "10.1.0.88", "10.1.0.89", "10.1.0.90", "10.1.0.91",
                       "10.1.0.92", "10.1.0.93", "10.1.0.94", "10.1.0.95", "none"});
  // A released address is the lowest free one again, as in Docker.
  space.release(A("10.1.0.90"));
  space.release(A("10.1.0.73"));
  CHECK(space.allocate_next_in(range)->str() == "10.1.0.73");
  CHECK(space.allocate_next_in(range)->str() == "10.1.0.90");
  // A range smaller than a block: only its addresses, the gateway skipped.
  CHECK(space.allocate_next_in(P("10.1.0.0/30"))->str() == "10.1.0.2");
  CHECK(space.allocate_next_in(P("10.1.0.0/30"))->str() == "10.1.0.3");
  CHECK_FALSE(space.allocate_next_in(P("10.1.0.0/30")));
  auto msg = error_of(Errc::invalid_argument, [&] { space.allocate_next_in(P("10.2.0.0/28")); });
  CHECK_THAT(msg, Catch::Contains("not inside"));
}
