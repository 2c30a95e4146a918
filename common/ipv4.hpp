// IPv4 addresses and prefixes as plain values (host byte order inside).
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace swarmnet {

class Ipv4Address {
 public:
  constexpr Ipv4Address() = default;
  constexpr explicit Ipv4Address(uint32_t host_order) : value_(host_order) {}

  // Throws Error(invalid_argument) with the offending text.
  static Ipv4Address parse(std::string_view text);
  static std::optional<Ipv4Address> try_parse(std::string_view text);

  constexpr uint32_t value() const { return value_; }
  uint32_t network_order() const;
  std::string str() const;

  constexpr auto operator<=>(const Ipv4Address&) const = default;

 private:
  uint32_t value_ = 0;
};

class Ipv4Prefix {
 public:
  constexpr Ipv4Prefix() = default;
  // Keeps the address as given (10.0.0.5/24 is an interface address); use
  // network() for the masked form.
  Ipv4Prefix(Ipv4Address address, unsigned length);

  // "10.1.0.0/24". Throws Error(invalid_argument).
  static Ipv4Prefix parse(std::string_view text);
  // Like parse, and also requires that no host bits are set.
  static Ipv4Prefix parse_network(std::string_view text);

  Ipv4Address address() const { return address_; }
  unsigned length() const { return length_; }
  uint32_t mask() const;
  Ipv4Address network() const;
  Ipv4Address broadcast() const;
  uint64_t size() const { return uint64_t{1} << (32 - length_); }
  bool contains(Ipv4Address a) const;
  bool contains(const Ipv4Prefix& other) const;
  bool overlaps(const Ipv4Prefix& other) const;
  bool is_network() const { return address_ == network(); }
  std::string str() const;

  auto operator<=>(const Ipv4Prefix&) const = default;

 private:
  Ipv4Address address_;
  unsigned length_ = 0;
};

// A TCP/UDP port written in decimal, 1 to 65535, nothing else ("80x", "0",
// "65536" and "" are nullopt).
std::optional<uint16_t> parse_port(std::string_view text);

}  // namespace swarmnet
