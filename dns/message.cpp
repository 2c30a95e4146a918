#include "dns/message.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace swarmnet::dns {
namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxWireName = 255;
constexpr size_t kOptRecordSize = 11;  // root name, type, class, ttl, rdlength
constexpr uint16_t kFlagQr = 0x8000;
constexpr uint16_t kFlagAa = 0x0400;
constexpr uint16_t kFlagTc = 0x0200;
constexpr uint16_t kFlagRd = 0x0100;
constexpr uint16_t kFlagRa = 0x0080;

uint16_t get_u16(std::span<const uint8_t> p, size_t at) {
  return static_cast<uint16_t>(p[at] << 8 | p[at + 1]);
}

bool plain_hostname_byte(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '*';
}

// Reads the name at `at`, following backward compression pointers.
// On success `end` is the offset just after the name as it appears at `at`.
bool read_name(std::span<const uint8_t> p, size_t at, Name* out, size_t& end) {
  size_t pos = at;
  size_t wire_length = 0;
  bool jumped = false;
  // A pointer must go below every place this name has jumped to (and not
  // into the header), so each jump lowers `floor` and a chain of pointers
  // ends; labels are bounded by the 255-byte limit: no cycles, no
  // unbounded work.
  size_t floor = at;
  while (true) {
    if (pos >= p.size()) return false;
    uint8_t len = p[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 1 >= p.size()) return false;
      size_t target = static_cast<size_t>(len & 0x3F) << 8 | p[pos + 1];
      if (!jumped) end = pos + 2;
      if (target < kHeaderSize || target >= floor) return false;
      floor = target;
      pos = target;
      jumped = true;
      continue;
    }
    if ((len & 0xC0) != 0) return false;  // 0x40 and 0x80: obsolete/unknown label types
    wire_length += 1 + len;
    if (wire_length > kMaxWireName) return false;
    if (len == 0) {
      if (!jumped) end = pos + 1;
      return true;
    }
    if (pos + 1 + len > p.size()) return false;
    if (out) {
      if (!out->empty() && !out->append(".")) return false;
      for (size_t i = 0; i < len; ++i) {
        uint8_t c = p[pos + 1 + i];
        if (plain_hostname_byte(c)) {
          char ch = static_cast<char>(c);
          if (!out->append({&ch, 1})) return false;
        } else {
          char esc[4] = {'\\', static_cast<char>('0' + c / 100), static_cast<char>('0' + c / 10 % 10),
                         static_cast<char>('0' + c % 10)};
          if (!out->append({esc, 4})) return false;
        }
      }
    }
    pos += 1 + len;
  }
}

}  // namespace

bool Name::append(std::string_view s) {
  if (size_ + s.size() > text_.size()) return false;
  std::memcpy(text_.data() + size_, s.data(), s.size());
  size_ += s.size();
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

size_t Query::max_udp_answer() const {
  if (!has_edns) return kClassicUdpSize;
  size_t wanted = std::max<size_t>(edns_udp_size, kClassicUdpSize);
  return std::min(wanted, kEdnsUdpSize);
}

ParseResult parse_query(std::span<const uint8_t> p, Query& q) {
  if (p.size() < kHeaderSize) return {ParseStatus::drop, "shorter than a DNS header"};
  q = Query{};
  q.id = get_u16(p, 0);
  q.flags = get_u16(p, 2);
  if (q.flags & kFlagQr) return {ParseStatus::drop, "a response, not a query"};
  q.recursion_desired = (q.flags & kFlagRd) != 0;
  if (((q.flags >> 11) & 0xF) != 0) return {ParseStatus::not_implemented, "opcode is not QUERY"};
  uint16_t qdcount = get_u16(p, 4), ancount = get_u16(p, 6), nscount = get_u16(p, 8),
           arcount = get_u16(p, 10);
  if (qdcount != 1) return {ParseStatus::format_error, "not exactly one question"};
  if (ancount != 0 || nscount != 0) return {ParseStatus::format_error, "a query with answers"};

  size_t pos = kHeaderSize;
  size_t end = 0;
  if (!read_name(p, pos, &q.name, end)) return {ParseStatus::format_error, "malformed question name"};
  if (end + 4 > p.size()) return {ParseStatus::format_error, "question cut short"};
  q.qtype = get_u16(p, end);
  q.qclass = get_u16(p, end + 2);
  q.raw_question = p.subspan(kHeaderSize, end + 4 - kHeaderSize);
  pos = end + 4;

  // Additional records: find the OPT (at most one), skip the rest (TSIG...).
  for (uint16_t i = 0; i < arcount; ++i) {
    size_t name_start = pos;
    if (!read_name(p, pos, nullptr, end)) return {ParseStatus::format_error, "malformed additional record"};
    if (end + 10 > p.size()) return {ParseStatus::format_error, "additional record cut short"};
    uint16_t rtype = get_u16(p, end);
    uint16_t rclass = get_u16(p, end + 2);
    uint32_t ttl = static_cast<uint32_t>(get_u16(p, end + 4)) << 16 | get_u16(p, end + 6);
    uint16_t rdlength = get_u16(p, end + 8);
    if (end + 10 + rdlength > p.size()) return {ParseStatus::format_error, "additional record cut short"};
    if (rtype == type::OPT) {
      if (q.has_edns) return {ParseStatus::format_error, "more than one OPT record"};
      if (p[name_start] != 0) return {ParseStatus::format_error, "OPT record not owned by the root"};
      q.has_edns = true;
      q.edns_udp_size = rclass;
      q.edns_version = static_cast<uint8_t>(ttl >> 16);
      q.dnssec_ok = (ttl & 0x8000) != 0;
    }
    pos = end + 10 + rdlength;
  }
  if (q.has_edns && q.edns_version > 0) return {ParseStatus::bad_version, "EDNS version above 0"};
  return {ParseStatus::ok, ""};
}

// ---- ResponseWriter ---------------------------------------------------------

ResponseWriter::ResponseWriter(std::span<uint8_t> buffer, const Query& query, size_t limit)
    : buffer_(buffer), query_(query) {
  limit_ = std::min(limit, buffer.size());
  if (query.has_edns) limit_ = limit_ > kOptRecordSize ? limit_ - kOptRecordSize : 0;
  size_ = kHeaderSize;
  if (size_ + query.raw_question.size() <= buffer_.size()) {
    std::memcpy(buffer_.data() + size_, query.raw_question.data(), query.raw_question.size());
    size_ += query.raw_question.size();
  }
}

bool ResponseWriter::put_u16(uint16_t v) {
  if (size_ + 2 > limit_) return false;
  buffer_[size_++] = static_cast<uint8_t>(v >> 8);
  buffer_[size_++] = static_cast<uint8_t>(v);
  return true;
}

bool ResponseWriter::put_u32(uint32_t v) {
  return put_u16(static_cast<uint16_t>(v >> 16)) && put_u16(static_cast<uint16_t>(v));
}

bool ResponseWriter::put_bytes(std::span<const uint8_t> bytes) {
  if (size_ + bytes.size() > limit_) return false;
  std::memcpy(buffer_.data() + size_, bytes.data(), bytes.size());
  size_ += bytes.size();
  return true;
}

// Our own names only (plain hostnames): labels split at '.', uncompressed
// except for the question's name, which is a pointer to offset 12.
bool ResponseWriter::put_name(std::string_view name) {
  if (name.empty()) {
    // The question's own name: a pointer, as long as there is a question.
    if (query_.raw_question.empty()) return false;
    return put_u16(0xC000 | kHeaderSize);
  }
  if (name.size() + 2 > kMaxWireName) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    size_t len = dot - start;
    if (len == 0 || len > 63) return false;
    if (size_ + 1 + len > limit_) return false;
    buffer_[size_++] = static_cast<uint8_t>(len);
    std::memcpy(buffer_.data() + size_, name.data() + start, len);
    size_ += len;
    start = dot + 1;
    if (dot == name.size()) break;
  }
  if (size_ + 1 > limit_) return false;
  buffer_[size_++] = 0;
  return true;
}

bool ResponseWriter::begin_record(Section, std::string_view owner, uint16_t rtype, uint32_t ttl,
                                  size_t& rdlength_at) {
  if (sealed_section_) return false;
  if (!put_name(owner) || !put_u16(rtype) || !put_u16(kClassIn) || !put_u32(ttl)) return false;
  rdlength_at = size_;
  return put_u16(0);
}

bool ResponseWriter::end_record(Section section, size_t rdlength_at) {
  size_t rdlength = size_ - rdlength_at - 2;
  buffer_[rdlength_at] = static_cast<uint8_t>(rdlength >> 8);
  buffer_[rdlength_at + 1] = static_cast<uint8_t>(rdlength);
  ++counts_[section == Section::answer ? 0 : 1];
  return true;
}

namespace {
// Restores the writer's size when a record does not fit, and marks the
// message truncated: what was written so far stays whole.
struct RecordScope {
  size_t& size;
  size_t start;
  bool& truncated;
  bool& sealed;
  bool fail() {
    size = start;
    truncated = true;
    sealed = true;
    return false;
  }
};
}  // namespace

bool ResponseWriter::add_a(Section section, std::string_view owner, uint32_t ttl, Ipv4Address address) {
  RecordScope scope{size_, size_, truncated_, sealed_section_};
  if (sealed_section_) return false;
  size_t at = 0;
  if (!begin_record(section, owner, type::A, ttl, at) || !put_u32(address.value())) return scope.fail();
  return end_record(section, at);
}

bool ResponseWriter::add_ptr(Section section, std::string_view owner, uint32_t ttl,
                             std::string_view target) {
  RecordScope scope{size_, size_, truncated_, sealed_section_};
  if (sealed_section_) return false;
  size_t at = 0;
  if (!begin_record(section, owner, type::PTR, ttl, at) || !put_name(target)) return scope.fail();
  return end_record(section, at);
}

bool ResponseWriter::add_srv(Section section, std::string_view owner, uint32_t ttl, uint16_t priority,
                             uint16_t weight, uint16_t port, std::string_view target) {
  RecordScope scope{size_, size_, truncated_, sealed_section_};
  if (sealed_section_) return false;
  size_t at = 0;
  if (!begin_record(section, owner, type::SRV, ttl, at) || !put_u16(priority) || !put_u16(weight) ||
      !put_u16(port) || !put_name(target))
    return scope.fail();
  return end_record(section, at);
}

bool ResponseWriter::add_soa(Section section, std::string_view owner, uint32_t ttl,
                             std::string_view mname, std::string_view rname, uint32_t serial,
                             uint32_t minimum) {
  RecordScope scope{size_, size_, truncated_, sealed_section_};
  if (sealed_section_) return false;
  size_t at = 0;
  // refresh, retry, expire: meaningless without zone transfers; RFC 1912 values.
  if (!begin_record(section, owner, type::SOA, ttl, at) || !put_name(mname) || !put_name(rname) ||
      !put_u32(serial) || !put_u32(3600) || !put_u32(600) || !put_u32(86400) || !put_u32(minimum))
    return scope.fail();
  return end_record(section, at);
}

size_t ResponseWriter::finish() {
  uint16_t flags = kFlagQr | (query_.flags & 0x7800) /* opcode */ | kFlagRa |
                   static_cast<uint16_t>(static_cast<uint8_t>(rcode_) & 0xF);
  if (query_.recursion_desired) flags |= kFlagRd;
  if (authoritative_) flags |= kFlagAa;
  if (truncated_) flags |= kFlagTc;
  uint16_t header[6] = {query_.id, flags, static_cast<uint16_t>(query_.raw_question.empty() ? 0 : 1),
                        counts_[0], counts_[1], static_cast<uint16_t>(query_.has_edns ? 1 : 0)};
  for (size_t i = 0; i < 6; ++i) {
    buffer_[2 * i] = static_cast<uint8_t>(header[i] >> 8);
    buffer_[2 * i + 1] = static_cast<uint8_t>(header[i]);
  }
  if (query_.has_edns && size_ + kOptRecordSize <= buffer_.size()) {
    uint8_t opt[kOptRecordSize] = {0,  // root
                                   0, static_cast<uint8_t>(type::OPT),
                                   static_cast<uint8_t>(kEdnsUdpSize >> 8),
                                   static_cast<uint8_t>(kEdnsUdpSize & 0xFF),
                                   extended_rcode_, 0 /* version */, 0, 0, /* DO clear, Z */
                                   0, 0 /* rdlength */};
    std::memcpy(buffer_.data() + size_, opt, kOptRecordSize);
    size_ += kOptRecordSize;
  }
  return size_;
}

size_t write_error_reply(std::span<const uint8_t> packet, Rcode rcode, std::span<uint8_t> out) {
  if (packet.size() < kHeaderSize || out.size() < kHeaderSize) return 0;
  uint16_t flags = get_u16(packet, 2);
  uint16_t reply = kFlagQr | (flags & (0x7800 | kFlagRd)) | kFlagRa |
                   static_cast<uint16_t>(static_cast<uint8_t>(rcode) & 0xF);
  std::memset(out.data(), 0, kHeaderSize);
  out[0] = packet[0];
  out[1] = packet[1];
  out[2] = static_cast<uint8_t>(reply >> 8);
  out[3] = static_cast<uint8_t>(reply);
  return kHeaderSize;
}

std::optional<Ipv4Address> parse_reverse_name(std::string_view name) {
  constexpr std::string_view suffix = ".in-addr.arpa";
  if (name.size() <= suffix.size() || !iequals(name.substr(name.size() - suffix.size()), suffix))
    return std::nullopt;
  std::string_view octets = name.substr(0, name.size() - suffix.size());
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = octets.find('.');
    std::string_view part = octets.substr(0, dot);
    if (i < 3 && dot == std::string_view::npos) return std::nullopt;
    if (i == 3 && dot != std::string_view::npos) return std::nullopt;
    unsigned octet = 0;
    if (part.empty() || part.size() > 3 || (part.size() > 1 && part[0] == '0')) return std::nullopt;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), octet);
    if (ec != std::errc{} || ptr != part.data() + part.size() || octet > 255) return std::nullopt;
    value |= octet << (8 * i);  // the first label is the last octet
    octets = dot == std::string_view::npos ? std::string_view{} : octets.substr(dot + 1);
  }
  return Ipv4Address(value);
}

std::string reverse_name(Ipv4Address address) {
  uint32_t v = address.value();
  return std::to_string(v & 0xFF) + "." + std::to_string(v >> 8 & 0xFF) + "." +
         std::to_string(v >> 16 & 0xFF) + "." + std::to_string(v >> 24) + ".in-addr.arpa";
}

}  // namespace swarmnet::dns
