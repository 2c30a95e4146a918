// The DNS wire format (RFC 1035, EDNS0 from RFC 6891), only as much of it as
// a network-scoped resolver needs: parse one query, write one response.
//
// Both sides work on caller-owned buffers and never allocate for names of
// ordinary length, because this is the per-packet path of the DNS server.
// Untrusted input: every length and pointer is checked against the packet,
// compression pointers may only point backwards (so loops are impossible),
// and a name longer than 255 bytes is malformed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/ipv4.hpp"

namespace swarmnet::dns {

namespace type {
inline constexpr uint16_t A = 1;
inline constexpr uint16_t NS = 2;
inline constexpr uint16_t CNAME = 5;
inline constexpr uint16_t SOA = 6;
inline constexpr uint16_t PTR = 12;
inline constexpr uint16_t MX = 15;
inline constexpr uint16_t TXT = 16;
inline constexpr uint16_t AAAA = 28;
inline constexpr uint16_t SRV = 33;
inline constexpr uint16_t OPT = 41;
inline constexpr uint16_t ANY = 255;
}  // namespace type

inline constexpr uint16_t kClassIn = 1;
inline constexpr uint16_t kClassAny = 255;

enum class Rcode : uint8_t {
  no_error = 0,
  format_error = 1,
  server_failure = 2,
  name_error = 3,  // NXDOMAIN
  not_implemented = 4,
  refused = 5,
};

// Sizes: the classic UDP limit, what we advertise in EDNS (the DNS flag day
// 2020 value, which avoids IP fragmentation), and the TCP maximum.
inline constexpr size_t kClassicUdpSize = 512;
inline constexpr size_t kEdnsUdpSize = 1232;
inline constexpr size_t kMaxMessageSize = 65535;

// A domain name in presentation form: labels joined by '.', no trailing dot,
// ASCII letters as sent (compare with iequals). Bytes that cannot appear in
// a hostname ('.', '\\', controls, non-ASCII) are kept as \DDD escapes, so
// such a name never matches one of ours by accident. The root is "".
class Name {
 public:
  std::string_view view() const { return {text_.data(), size_}; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Appends text; false if the result would exceed the capacity.
  bool append(std::string_view s);

 private:
  // 255 wire bytes, each at most 4 presentation bytes (\DDD), are the upper
  // bound; real names are far shorter, and the space is on the stack.
  std::array<char, 1024> text_{};
  size_t size_ = 0;
};

// Case-insensitive ASCII comparison, as DNS names compare (RFC 4343).
bool iequals(std::string_view a, std::string_view b);

struct Query {
  uint16_t id = 0;
  uint16_t flags = 0;  // the header's second 16 bits as received
  bool recursion_desired = false;
  Name name;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  // The question exactly as it came (name bytes, type, class), so answers
  // echo the client's letter case, which resolvers that randomise case
  // (0x20 encoding) check.
  std::span<const uint8_t> raw_question;
  bool has_edns = false;
  uint16_t edns_udp_size = 0;  // the requester's advertised payload size
  uint8_t edns_version = 0;
  bool dnssec_ok = false;

  // The largest UDP answer this query allows (RFC 6891 6.2.5: at least 512).
  size_t max_udp_answer() const;
};

enum class ParseStatus {
  ok,
  // Not worth an answer: shorter than a header, or a response (QR set),
  // which answering could turn into a loop between two servers.
  drop,
  // The header is readable but the rest is not: answer FORMERR with the id.
  format_error,
  // An opcode other than QUERY: answer NOTIMP.
  not_implemented,
  // An EDNS version above 0: answer BADVERS (RFC 6891 6.1.3).
  bad_version,
};

struct ParseResult {
  ParseStatus status = ParseStatus::drop;
  const char* error = "";  // why, for debug logs (a static string)
};

// Parses one query of exactly one question. `query.raw_question` points into
// `packet`, which must outlive its use.
ParseResult parse_query(std::span<const uint8_t> packet, Query& query);

enum class Section { answer, authority };

// Writes one response into a caller's buffer, at most `limit` bytes. The
// header and question come from the query (id, opcode, RD; QR and RA set).
// A record that does not fit sets TC and is left out with every record after
// it, as RFC 2181 9 asks: the client retries over TCP. An EDNS query gets an
// OPT record in reply (its room is reserved up front, so it always fits).
class ResponseWriter {
 public:
  // `buffer` must hold at least 12 bytes plus the question (a response to
  // a parsed query always does within 512).
  ResponseWriter(std::span<uint8_t> buffer, const Query& query, size_t limit);

  void set_rcode(Rcode rcode) { rcode_ = rcode; }
  void set_authoritative(bool aa) { authoritative_ = aa; }
  // For BADVERS: the extended rcode's upper 8 bits go in the OPT record.
  void set_extended_rcode(uint8_t upper) { extended_rcode_ = upper; }

  // Owner "" means the question's name (written as a 2-byte pointer to it).
  // Each returns false once the message is full (TC set).
  bool add_a(Section section, std::string_view owner, uint32_t ttl, Ipv4Address address);
  bool add_ptr(Section section, std::string_view owner, uint32_t ttl, std::string_view target);
  bool add_srv(Section section, std::string_view owner, uint32_t ttl, uint16_t priority,
               uint16_t weight, uint16_t port, std::string_view target);
  // An SOA for negative answers (RFC 2308): `minimum` is the negative TTL.
  bool add_soa(Section section, std::string_view owner, uint32_t ttl, std::string_view mname,
               std::string_view rname, uint32_t serial, uint32_t minimum);

  bool truncated() const { return truncated_; }
  uint16_t answer_count() const { return counts_[0]; }
  // Writes the counts (and the OPT record); returns the message's length.
  size_t finish();

 private:
  bool begin_record(Section section, std::string_view owner, uint16_t rtype, uint32_t ttl,
                    size_t& rdlength_at);
  bool end_record(Section section, size_t rdlength_at);
  bool put_name(std::string_view name);
  bool put_u16(uint16_t v);
  bool put_u32(uint32_t v);
  bool put_bytes(std::span<const uint8_t> bytes);

  std::span<uint8_t> buffer_;
  const Query& query_;
  size_t limit_;      // bytes usable for header, question and records
  size_t size_ = 0;   // bytes written
  Rcode rcode_ = Rcode::no_error;
  uint8_t extended_rcode_ = 0;
  bool authoritative_ = false;
  bool truncated_ = false;
  bool sealed_section_ = false;  // a record did not fit: write nothing more
  uint16_t counts_[2] = {0, 0};  // answer, authority
};

// Writes a header-only reply (no question: qdcount 0) to a query whose
// header could be read but whose question could not (FORMERR, NOTIMP).
// Replies to parsed queries use ResponseWriter, which echoes the question.
// Returns the length (0 if `packet` has no full header).
size_t write_error_reply(std::span<const uint8_t> packet, Rcode rcode, std::span<uint8_t> out);

// "7.0.0.10.in-addr.arpa" -> 10.0.0.7; nullopt for any other name.
std::optional<Ipv4Address> parse_reverse_name(std::string_view name);
// 10.0.0.7 -> "7.0.0.10.in-addr.arpa".
std::string reverse_name(Ipv4Address address);

}  // namespace swarmnet::dns
