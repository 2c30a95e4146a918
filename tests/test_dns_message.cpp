// The DNS wire codec: queries parsed (and malformed ones refused the right
// way), responses written within their size limit with TC when cut.
#include <catch2/catch.hpp>

#include "dns/message.hpp"
#include "support/dns_packets.hpp"

using namespace swarmnet;
using namespace swarmnet::dns;
using swarmnet::test::make_query;
using swarmnet::test::parse_answer;

namespace {
ParseStatus parse(const std::vector<uint8_t>& p, Query& q) { return parse_query(p, q).status; }
}  // namespace

TEST_CASE("a plain query parses: id, name as sent, type, RD, no EDNS") {
  auto p = make_query("Web.Front", type::A);
  Query q;
  REQUIRE(parse(p, q) == ParseStatus::ok);
  CHECK(q.id == 0x1234);
  CHECK(q.name.view() == "Web.Front");
  CHECK(q.qtype == type::A);
  CHECK(q.recursion_desired);
  CHECK_FALSE(q.has_edns);
  CHECK(q.max_udp_answer() == 512);
}

TEST_CASE("EDNS: the requester's size is honoured up to 1232, never below 512; version 1 is BADVERS") {
  Query q;
  auto p = make_query("a", type::A, {.edns = true, .edns_size = 4096});
  REQUIRE(parse(p, q) == ParseStatus::ok);
  CHECK(q.has_edns);
  CHECK(q.max_udp_answer() == 1232);
  p = make_query("a", type::A, {.edns = true, .edns_size = 100});
  REQUIRE(parse(p, q) == ParseStatus::ok);
  CHECK(q.max_udp_answer() == 512);
  p = make_query("a", type::A, {.edns = true, .edns_version = 1});
  CHECK(parse(p, q) == ParseStatus::bad_version);
}

TEST_CASE("malformed queries: dropped when no header or a response, FORMERR otherwise") {
  Query q;
  std::vector<uint8_t> tiny = {1, 2, 3};
  CHECK(parse(tiny, q) == ParseStatus::drop);
  auto response = make_query("a", type::A);
  response[2] |= 0x80;  // QR
  CHECK(parse(response, q) == ParseStatus::drop);
  auto cut = make_query("abc.def", type::A);
  cut.resize(cut.size() - 3);
  CHECK(parse(cut, q) == ParseStatus::format_error);
  auto two = make_query("a", type::A);
  two[5] = 2;  // qdcount 2
  CHECK(parse(two, q) == ParseStatus::format_error);
  auto opcode = make_query("a", type::A);
  opcode[2] |= 0x10;  // opcode 2 (STATUS)
  CHECK(parse(opcode, q) == ParseStatus::not_implemented);
}

TEST_CASE("compression pointers: a loop or a forward pointer is malformed, never followed forever") {
  Query q;
  // Header, then a name that is a pointer to itself (offset 12).
  std::vector<uint8_t> loop = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1};
  CHECK(parse(loop, q) == ParseStatus::format_error);
  std::vector<uint8_t> forward = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 16, 0, 1, 0, 1, 1, 'a', 0};
  CHECK(parse(forward, q) == ParseStatus::format_error);
  // A label longer than 63 (0x40 type bits) and a name over 255 bytes.
  std::vector<uint8_t> label = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 'a', 0, 0, 1, 0, 1};
  CHECK(parse(label, q) == ParseStatus::format_error);
  std::string huge;
  for (int i = 0; i < 5; ++i) huge += std::string(60, 'x') + ".";
  huge.pop_back();
  CHECK(parse(make_query(huge, type::A), q) == ParseStatus::format_error);
}

TEST_CASE("odd bytes in a label are escaped, so they never match a name of ours") {
  std::vector<uint8_t> p = make_query("ab", type::A);
  p[13] = '.';  // the label "a" becomes ".b" as bytes: "\046b"
  Query q;
  REQUIRE(parse(p, q) == ParseStatus::ok);
  CHECK(q.name.view() == "\\046b");
}

TEST_CASE("a response echoes the question as sent (0x20 case) and carries the records") {
  auto p = make_query("WeB", type::A, {.edns = true});
  Query q;
  REQUIRE(parse(p, q) == ParseStatus::ok);
  uint8_t buf[512];
  ResponseWriter w(buf, q, sizeof buf);
  w.set_authoritative(true);
  REQUIRE(w.add_a(Section::answer, "", 5, Ipv4Address::parse("10.0.0.7")));
  REQUIRE(w.add_a(Section::answer, "", 5, Ipv4Address::parse("10.0.0.8")));
  size_t n = w.finish();
  auto a = parse_answer({buf, buf + n});
  REQUIRE(a.ok);
  CHECK(a.id == 0x1234);
  CHECK(a.aa());
  CHECK(a.rcode == 0);
  REQUIRE(a.answers.size() == 2);
  CHECK(a.answers[0].name == "WeB");
  CHECK(a.answers[0].data == "10.0.0.7");
  CHECK(a.answers[0].ttl == 5);
  CHECK(a.has_opt);
}

TEST_CASE("records beyond the limit are left out whole and TC is set") {
  auto p = make_query("many", type::A);
  Query q;
  REQUIRE(parse(p, q) == ParseStatus::ok);
  std::vector<uint8_t> buf(65535);
  ResponseWriter w(buf, q, q.max_udp_answer());
  int added = 0;
  for (uint32_t i = 0; i < 100; ++i)
    if (w.add_a(Section::answer, "", 5, Ipv4Address(0x0A000000 + i))) ++added;
  size_t n = w.finish();
  CHECK(n <= 512);
  CHECK(w.truncated());
  auto a = parse_answer({buf.begin(), buf.begin() + n});
  REQUIRE(a.ok);
  CHECK(a.tc());
  CHECK(static_cast<int>(a.answers.size()) == added);
  CHECK(added == (512 - 12 - 9) / 16);  // header, question "many", 16 bytes per compressed A record
}

TEST_CASE("PTR, SRV and SOA records round-trip; an error reply keeps the id") {
  auto p = make_query("7.0.0.10.in-addr.arpa", type::PTR);
  Query q;
  REQUIRE(parse(p, q) == ParseStatus::ok);
  uint8_t buf[512];
  ResponseWriter w(buf, q, sizeof buf);
  w.add_ptr(Section::answer, "", 5, "web.front");
  w.add_srv(Section::answer, "_80._tcp.web", 5, 0, 10, 80, "web.front");
  w.add_soa(Section::authority, "front", 5, "ns.swarmnet", "hostmaster.swarmnet", 1, 5);
  auto a = parse_answer({buf, buf + w.finish()});
  REQUIRE(a.ok);
  REQUIRE(a.answers.size() == 2);
  CHECK(a.answers[0].data == "web.front");
  CHECK(a.answers[1].data == "0 10 80 web.front");
  REQUIRE(a.authority.size() == 1);
  CHECK(a.authority[0].name == "front");

  uint8_t err[12];
  std::vector<uint8_t> garbage = {0xAB, 0xCD, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0, 0xFF};
  REQUIRE(write_error_reply(garbage, Rcode::format_error, err) == 12);
  auto e = parse_answer({err, err + 12});
  CHECK(e.id == 0xABCD);
  CHECK(e.rcode == 1);
  CHECK(e.flags & 0x8000);
}

TEST_CASE("reverse names parse only as four decimal octets under in-addr.arpa") {
  CHECK(parse_reverse_name("7.0.0.10.in-addr.arpa") == Ipv4Address::parse("10.0.0.7"));
  CHECK(parse_reverse_name("7.0.0.10.IN-ADDR.ARPA") == Ipv4Address::parse("10.0.0.7"));
  CHECK_FALSE(parse_reverse_name("0.0.10.in-addr.arpa"));
  CHECK_FALSE(parse_reverse_name("256.0.0.10.in-addr.arpa"));
  CHECK_FALSE(parse_reverse_name("07.0.0.10.in-addr.arpa"));
  CHECK_FALSE(parse_reverse_name("web.front"));
  CHECK(reverse_name(Ipv4Address::parse("10.1.2.3")) == "3.2.1.10.in-addr.arpa");
}
