// Fuzzes the DNS codec with what any container (or anyone who can reach a
// gateway's port 53) may send: arbitrary bytes go to parse_query and
// write_error_reply; a query that parses gets a response with records of
// every kind the server writes, in the buffer sizes the server uses (the
// query's UDP limit, the classic 512, TCP's 65535). Checked after each:
// the message never exceeds its limit, its header counts are the records
// written, its records end exactly at its end, TC is set exactly when a
// record was left out, and a record is never written after one was left out.
// The query is also answered from a name table holding every kind of name
// (containers, aliases, a name shared by 60 containers, services in both
// modes with SRV, PTRs), as a container and as the host, and the answer
// checked the same way: whole, within its limit, its counts true.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "dns/message.hpp"
#include "dns/name_table.hpp"

using namespace swarmnet;
using namespace swarmnet::dns;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

uint16_t get_u16(std::span<const uint8_t> m, size_t at) { return static_cast<uint16_t>(m[at] << 8 | m[at + 1]); }

// The offset just past the name at `pos` (a pointer ends a name), or 0.
size_t skip_name(std::span<const uint8_t> m, size_t pos) {
  for (int labels = 0; labels <= 128; ++labels) {
    if (pos >= m.size()) return 0;
    const uint8_t len = m[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 2 > m.size()) return 0;
      // Our writer only ever points at the question's name.
      require((get_u16(m, pos) & 0x3FFF) == 12);
      return pos + 2;
    }
    if ((len & 0xC0) != 0) return 0;
    if (len == 0) return pos + 1;
    pos += 1 + len;
  }
  return 0;
}

// The records the header counts end exactly at the message's end.
void require_whole(std::span<const uint8_t> m) {
  require(m.size() >= 12);
  size_t pos = 12;
  for (unsigned i = 0, n = get_u16(m, 4); i < n; ++i) {
    pos = skip_name(m, pos);
    require(pos != 0 && pos + 4 <= m.size());
    pos += 4;
  }
  const unsigned records = get_u16(m, 6) + get_u16(m, 8) + get_u16(m, 10);
  for (unsigned i = 0; i < records; ++i) {
    pos = skip_name(m, pos);
    require(pos != 0 && pos + 10 <= m.size());
    pos += 10 + get_u16(m, pos + 8);
    require(pos <= m.size());
  }
  require(pos == m.size());
}

struct Tally {
  unsigned answer = 0, authority = 0;
  bool left_out = false;
  // Once a record is left out (TC), none after it may be written.
  void note(bool written, Section section) {
    if (written) {
      require(!left_out);
      ++(section == Section::answer ? answer : authority);
    } else {
      left_out = true;
    }
  }
};

// Whether the writer takes `name` as an owner: a hostname in presentation
// form (our names are; the asked name may hold \DDD escapes or long labels).
bool writable_name(std::string_view name) {
  if (name.empty() || name.size() + 2 > 255 || name.find('\\') != std::string_view::npos) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    const size_t len = (dot == std::string_view::npos ? name.size() : dot) - start;
    if (len == 0 || len > 63) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

void respond(const Query& query, size_t limit, unsigned records, std::span<const uint8_t> input) {
  static std::vector<uint8_t> buffer(kMaxMessageSize);
  std::span<uint8_t> out(buffer.data(), limit);
  ResponseWriter writer(out, query, limit);
  Tally tally;
  // The asked name written out in full (not as a pointer), when it can be.
  const std::string_view asked = writable_name(query.name.view()) ? query.name.view() : "";
  for (unsigned i = 0; i < records; ++i) {
    const uint8_t pick = input[i % input.size()];
    const Section section = (pick & 0x80) ? Section::authority : Section::answer;
    const uint32_t ttl = pick;
    bool written = false;
    switch (pick % 5) {
      case 0:
        written = writer.add_a(section, "", ttl, Ipv4Address(0x0a000000u + i));
        break;
      case 1:
        written = writer.add_ptr(section, "", ttl, "web-" + std::to_string(i) + ".frontend");
        break;
      case 2:
        written = writer.add_srv(section, "", ttl, 0, 10, static_cast<uint16_t>(8000 + i),
                                 "task-" + std::to_string(i) + ".web.frontend");
        break;
      case 3:
        written = writer.add_soa(section, "frontend", ttl, "ns.swarmnet", "hostmaster.swarmnet", 1, 2);
        break;
      default:
        written = writer.add_a(section, asked, ttl, Ipv4Address(0xc0000207));
        break;
    }
    tally.note(written, section);
  }
  const bool truncated = writer.truncated();
  require(truncated == tally.left_out);
  require(writer.answer_count() == tally.answer);
  const size_t length = writer.finish();
  require(length >= 12 && length <= limit);
  const std::span<const uint8_t> m(out.data(), length);
  require(get_u16(m, 0) == query.id);
  const uint16_t flags = get_u16(m, 2);
  require((flags & 0x8000) != 0);                       // QR
  require(((flags & 0x0200) != 0) == truncated);        // TC
  require(((flags & 0x0100) != 0) == query.recursion_desired);
  require(get_u16(m, 4) == 1);
  require(get_u16(m, 6) == tally.answer);
  require(get_u16(m, 8) == tally.authority);
  require(get_u16(m, 10) == (query.has_edns ? 1 : 0));
  require_whole(m);
}

constexpr Ipv4Address kGateway(0x0a010001);  // 10.1.0.1
constexpr Ipv4Address kClient(0x0a010005);   // 10.1.0.5, a local container

const NameTable& table() {
  // Built once for the whole run (a name table cannot be copied); globally
  // reachable, so not a leak.
  static NameTable* t = [] {
    auto* n = new NameTable(2);
    n->upsert_network({"net-front", "front", kGateway});
    n->upsert_network({"net-back", "back", Ipv4Address(0x0a020001)});
    auto add = [&](std::string key, std::string net, std::string name, uint32_t ip, bool local,
                   std::string service, std::vector<std::string> aliases) {
      n->upsert_endpoint({key, net, "c-" + key, name, aliases, Ipv4Address(ip), local, service, true});
    };
    add("e1", "net-front", "web", kClient.value(), true, "", {"www", "WEB-alias"});
    add("e1b", "net-back", "web", 0x0a020005, true, "", {});
    add("e2", "net-front", std::string(63, 'x'), 0x0a010006, false, "", {std::string(63, 'y') + ".z"});
    for (uint32_t i = 0; i < 60; ++i) add("big" + std::to_string(i), "net-front", "big", 0x0a010100 + i, false, "", {});
    add("t1", "net-front", "api-1", 0x0a010011, false, "api", {});
    add("t2", "net-front", "api-2", 0x0a010012, false, "api", {});
    add("t3", "net-front", "rr-1", 0x0a010013, false, "rr", {});
    n->upsert_service({"s1", "api", false, {{"net-front", Ipv4Address(0x0a0100c8)}}, {{80, "tcp"}, {53, "udp"}}});
    n->upsert_service({"s2", "rr", true, {}, {{8080, "tcp"}}});
    return n;
  }();
  return *t;
}

void answer_from_table(const Query& query, Ipv4Address source, size_t limit) {
  static std::vector<uint8_t> buffer(kMaxMessageSize);
  std::span<uint8_t> out(buffer.data(), limit);
  ResponseWriter writer(out, query, limit);
  table().respond(query, source, kGateway, writer);
  const uint16_t answers = writer.answer_count();
  const size_t length = writer.finish();
  require(length >= 12 && length <= limit);
  const std::span<const uint8_t> m(out.data(), length);
  require(get_u16(m, 0) == query.id);
  require(get_u16(m, 6) == answers);
  require_whole(m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> packet(data, size);

  uint8_t error_reply[kClassicUdpSize];
  const size_t error_length = write_error_reply(packet, Rcode::format_error, error_reply);
  require(error_length == 0 ? size < 12 : error_length >= 12 && error_length <= sizeof error_reply);

  Query query;
  const ParseResult result = parse_query(packet, query);
  if (result.status != ParseStatus::ok) return 0;

  // What the parse hands out lies inside the packet and within the limits.
  require(!query.raw_question.empty());
  require(query.raw_question.data() == data + 12);
  require(12 + query.raw_question.size() <= size);
  require(query.raw_question.size() <= 255 + 4);
  require(query.name.size() <= 4 * 255);
  const size_t udp_limit = query.max_udp_answer();
  require(udp_limit >= kClassicUdpSize && udp_limit <= kEdnsUdpSize);

  // Enough records to overflow every UDP size now and then, and TCP's too.
  const unsigned records = size > 0 ? data[size - 1] % 80 + (data[0] & 1 ? 3000 : 0) : 0;
  for (size_t limit : {udp_limit, kClassicUdpSize, kMaxMessageSize}) respond(query, limit, records, packet);
  for (Ipv4Address source : {kClient, Ipv4Address(0x7f000001)})
    for (size_t limit : {udp_limit, kMaxMessageSize}) answer_from_table(query, source, limit);
  return 0;
}
