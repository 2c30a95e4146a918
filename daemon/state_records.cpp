#include "daemon/state_records.hpp"

#include <boost/crc.hpp>
#include <cmath>
#include <cstdio>

namespace swarmnet::daemon::state_records {

namespace {

constexpr size_t kCrcDigits = 8;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::optional<uint32_t> parse_crc(std::string_view digits) {
  uint32_t v = 0;
  for (char c : digits) {
    int d = hex_digit(c);
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint32_t>(d);
  }
  return v;
}

std::string crc_text(uint32_t crc) {
  char buf[kCrcDigits + 1];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

// Boost.JSON reads a number beyond a double's range (1e999) as infinity and
// writes infinity back as "Infinity", which is not JSON: such a record would
// load, then make the next snapshot line unreadable. The daemon never writes
// one, so it is damage.
bool has_non_finite_number(const json::value& v) {
  if (v.is_double()) return !std::isfinite(v.get_double());
  if (v.is_array()) {
    for (const auto& e : v.get_array())
      if (has_non_finite_number(e)) return true;
  }
  if (v.is_object()) {
    for (const auto& kv : v.get_object())
      if (has_non_finite_number(kv.value())) return true;
  }
  return false;
}

std::optional<json::value> parse_json(std::string_view text, std::string& error) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    error = ec.message();
    return std::nullopt;
  }
  if (has_non_finite_number(v)) {
    error = "a number out of range";
    return std::nullopt;
  }
  return v;
}

}  // namespace

uint32_t crc32c(std::string_view data) {
  // Castagnoli, reflected: the CRC of iSCSI, ext4 and btrfs metadata.
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

std::string encode(const json::value& record) {
  std::string body = json::serialize(record);
  std::string line = crc_text(crc32c(body));
  line += ' ';
  line += body;
  line += '\n';
  return line;
}

FileContents read(std::string_view text, std::string_view header) {
  FileContents out;
  size_t pos = 0;
  size_t number = 0;
  while (pos < text.size()) {
    ++number;
    const size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      out.torn_tail = Dropped{number, "last line cut short (" + std::to_string(text.size() - pos) +
                                          " bytes without a newline)"};
      break;
    }
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    out.intact_size = pos;
    if (number == 1 && line == header) {
      out.has_header = true;
      continue;
    }
    if (line.empty()) continue;
    auto drop = [&](std::string reason) { out.dropped.push_back(Dropped{number, std::move(reason)}); };
    std::string error;
    if (line.front() == '{') {
      // Format 1: no checksum to check, so only a line that is not JSON
      // is known to be damaged.
      if (out.has_header) {
        drop("a record without a checksum in a checksummed file");
      } else if (auto v = parse_json(line, error)) {
        out.records.push_back(Record{number, std::move(*v)});
      } else {
        drop("not JSON: " + error);
      }
      continue;
    }
    if (line.size() <= kCrcDigits + 1 || line[kCrcDigits] != ' ') {
      drop("not a record (no checksum)");
      continue;
    }
    const auto want = parse_crc(line.substr(0, kCrcDigits));
    if (!want) {
      drop("not a record (the checksum is not 8 hex digits)");
      continue;
    }
    const std::string_view body = line.substr(kCrcDigits + 1);
    const uint32_t got = crc32c(body);
    if (got != *want) {
      drop("checksum mismatch: the line says " + crc_text(*want) + ", its content gives " + crc_text(got));
      continue;
    }
    if (auto v = parse_json(body, error)) {
      out.records.push_back(Record{number, std::move(*v)});
    } else {
      drop("checksum matches but the record is not JSON: " + error);
    }
  }
  return out;
}

}  // namespace swarmnet::daemon::state_records
