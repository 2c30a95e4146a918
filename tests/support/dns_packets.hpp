// Builds DNS query packets and reads answers, for tests only: written
// independently of dns/message.cpp so the tests do not check the codec
// against itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace swarmnet::test {

struct QueryOptions {
  uint16_t id = 0x1234;
  bool edns = false;
  uint16_t edns_size = 1232;
  uint8_t edns_version = 0;
  uint16_t qclass = 1;
  bool rd = true;
};

inline void put16(std::vector<uint8_t>& p, uint16_t v) {
  p.push_back(static_cast<uint8_t>(v >> 8));
  p.push_back(static_cast<uint8_t>(v));
}

inline std::vector<uint8_t> make_query(std::string_view name, uint16_t qtype, QueryOptions o = {}) {
  std::vector<uint8_t> p;
  put16(p, o.id);
  put16(p, o.rd ? 0x0100 : 0);
  put16(p, 1);
  put16(p, 0);
  put16(p, 0);
  put16(p, o.edns ? 1 : 0);
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    p.push_back(static_cast<uint8_t>(dot - start));
    p.insert(p.end(), name.begin() + start, name.begin() + dot);
    start = dot + 1;
  }
  p.push_back(0);
  put16(p, qtype);
  put16(p, o.qclass);
  if (o.edns) {
    p.push_back(0);
    put16(p, 41);
    put16(p, o.edns_size);
    p.push_back(0);
    p.push_back(o.edns_version);
    put16(p, 0);
    put16(p, 0);
  }
  return p;
}

struct Record {
  std::string name;
  uint16_t type = 0;
  uint32_t ttl = 0;
  std::string data;  // A: "10.0.0.1"; PTR: target; SRV: "prio weight port target"; SOA: mname
};

struct Answer {
  bool ok = false;
  uint16_t id = 0;
  uint16_t flags = 0;
  unsigned rcode = 0;
  bool tc() const { return flags & 0x0200; }
  bool aa() const { return flags & 0x0400; }
  uint16_t qdcount = 0;
  std::vector<Record> answers, authority;
  bool has_opt = false;
  uint8_t opt_ext_rcode = 0;
};

inline uint16_t get16(const std::vector<uint8_t>& p, size_t at) { return static_cast<uint16_t>(p[at] << 8 | p[at + 1]); }

inline bool read_name(const std::vector<uint8_t>& p, size_t& pos, std::string& out) {
  size_t at = pos;
  bool jumped = false;
  int hops = 0;
  out.clear();
  while (at < p.size()) {
    uint8_t len = p[at];
    if ((len & 0xC0) == 0xC0) {
      if (at + 1 >= p.size() || ++hops > 20) return false;
      if (!jumped) pos = at + 2;
      at = static_cast<size_t>(len & 0x3F) << 8 | p[at + 1];
      jumped = true;
      continue;
    }
    if (len == 0) {
      if (!jumped) pos = at + 1;
      return true;
    }
    if (at + 1 + len > p.size()) return false;
    if (!out.empty()) out += '.';
    out.append(reinterpret_cast<const char*>(&p[at + 1]), len);
    at += 1 + len;
  }
  return false;
}

inline Answer parse_answer(const std::vector<uint8_t>& p) {
  Answer a;
  if (p.size() < 12) return a;
  a.id = get16(p, 0);
  a.flags = get16(p, 2);
  a.rcode = a.flags & 0xF;
  a.qdcount = get16(p, 4);
  uint16_t an = get16(p, 6), ns = get16(p, 8), ar = get16(p, 10);
  size_t pos = 12;
  std::string name;
  for (int i = 0; i < a.qdcount; ++i) {
    if (!read_name(p, pos, name) || pos + 4 > p.size()) return a;
    pos += 4;
  }
  auto read_rr = [&](std::vector<Record>* into) -> bool {
    Record r;
    if (!read_name(p, pos, r.name) || pos + 10 > p.size()) return false;
    r.type = get16(p, pos);
    r.ttl = static_cast<uint32_t>(get16(p, pos + 4)) << 16 | get16(p, pos + 6);
    uint16_t rdlen = get16(p, pos + 8);
    size_t rd = pos + 10;
    if (rd + rdlen > p.size()) return false;
    if (r.type == 1 && rdlen == 4) {
      r.data = std::to_string(p[rd]) + "." + std::to_string(p[rd + 1]) + "." + std::to_string(p[rd + 2]) + "." +
               std::to_string(p[rd + 3]);
    } else if (r.type == 12 || r.type == 6) {
      size_t x = rd;
      if (!read_name(p, x, r.data)) return false;
    } else if (r.type == 33) {
      size_t x = rd + 6;
      std::string target;
      if (!read_name(p, x, target)) return false;
      r.data = std::to_string(get16(p, rd)) + " " + std::to_string(get16(p, rd + 2)) + " " +
               std::to_string(get16(p, rd + 4)) + " " + target;
    } else if (r.type == 41) {
      a.has_opt = true;
      a.opt_ext_rcode = static_cast<uint8_t>(r.ttl >> 24);
    }
    pos = rd + rdlen;
    if (into) into->push_back(r);
    return true;
  };
  for (int i = 0; i < an; ++i)
    if (!read_rr(&a.answers)) return a;
  for (int i = 0; i < ns; ++i)
    if (!read_rr(&a.authority)) return a;
  for (int i = 0; i < ar; ++i)
    if (!read_rr(nullptr)) return a;
  a.ok = pos == p.size();
  return a;
}

}  // namespace swarmnet::test
