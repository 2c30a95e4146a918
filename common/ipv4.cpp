#include "common/ipv4.hpp"

#include <arpa/inet.h>

#include <charconv>

#include "common/error.hpp"

namespace swarmnet {

std::optional<Ipv4Address> Ipv4Address::try_parse(std::string_view text) {
  // inet_pton accepts exactly dotted quads, which is what we want (no "10.1").
  if (text.size() > 15) return std::nullopt;
  char buf[16] = {};
  text.copy(buf, text.size());
  in_addr a{};
  if (inet_pton(AF_INET, buf, &a) != 1) return std::nullopt;
  return Ipv4Address(ntohl(a.s_addr));
}

Ipv4Address Ipv4Address::parse(std::string_view text) {
  auto a = try_parse(text);
  if (!a) throw Error(Errc::invalid_argument, "invalid IPv4 address \"" + std::string(text) + "\"");
  return *a;
}

uint32_t Ipv4Address::network_order() const { return htonl(value_); }

std::string Ipv4Address::str() const {
  return std::to_string(value_ >> 24) + "." + std::to_string((value_ >> 16) & 0xff) + "." +
         std::to_string((value_ >> 8) & 0xff) + "." + std::to_string(value_ & 0xff);
}

Ipv4Prefix::Ipv4Prefix(Ipv4Address address, unsigned length) : address_(address), length_(length) {
  if (length > 32) throw Error(Errc::invalid_argument, "prefix length above 32");
}

Ipv4Prefix Ipv4Prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    throw Error(Errc::invalid_argument, "invalid CIDR \"" + std::string(text) + "\": missing /LEN");
  }
  auto addr = Ipv4Address::try_parse(text.substr(0, slash));
  auto len_text = text.substr(slash + 1);
  unsigned len = 0;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (!addr || ec != std::errc() || end != len_text.data() + len_text.size() || len_text.empty() ||
      len > 32) {
    throw Error(Errc::invalid_argument, "invalid CIDR \"" + std::string(text) + "\"");
  }
  return Ipv4Prefix(*addr, len);
}

Ipv4Prefix Ipv4Prefix::parse_network(std::string_view text) {
  Ipv4Prefix p = parse(text);
  if (!p.is_network()) {
    throw Error(Errc::invalid_argument, "invalid subnet \"" + std::string(text) +
                                            "\": host bits set (did you mean " +
                                            Ipv4Prefix(p.network(), p.length()).str() + "?)");
  }
  return p;
}

uint32_t Ipv4Prefix::mask() const { return length_ == 0 ? 0 : ~uint32_t{0} << (32 - length_); }
Ipv4Address Ipv4Prefix::network() const { return Ipv4Address(address_.value() & mask()); }
Ipv4Address Ipv4Prefix::broadcast() const { return Ipv4Address(address_.value() | ~mask()); }

bool Ipv4Prefix::contains(Ipv4Address a) const { return (a.value() & mask()) == network().value(); }

bool Ipv4Prefix::contains(const Ipv4Prefix& other) const {
  return other.length_ >= length_ && contains(other.address_);
}

bool Ipv4Prefix::overlaps(const Ipv4Prefix& other) const {
  return contains(other) || other.contains(*this);
}

std::string Ipv4Prefix::str() const { return address_.str() + "/" + std::to_string(length_); }

std::optional<uint16_t> parse_port(std::string_view text) {
  unsigned port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc{} || end != text.data() + text.size() || port == 0 || port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

}  // namespace swarmnet
