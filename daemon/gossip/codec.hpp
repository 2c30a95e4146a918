// Wire format of gossip messages. Every packet is one message; a compound
// message carries several encoded messages (piggybacking) in one UDP packet.
//
// Encoding: a kind byte, then fixed fields in network byte order; strings are
// a u8 length + bytes, byte strings a u32 length + bytes. The decoder checks
// every length against what is left of the input before allocating, so a
// hostile packet can neither crash it nor make it allocate more than the
// packet's own size; anything malformed (including trailing bytes) yields
// std::nullopt.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "daemon/gossip/types.hpp"

namespace swarmnet::gossip {

inline constexpr size_t kMaxIdLength = 64;
inline constexpr size_t kMaxNameLength = 255;

enum class MessageKind : uint8_t {
  ping = 1,
  indirect_ping = 2,
  ack = 3,
  nack = 4,
  suspect = 5,
  alive = 6,
  dead = 7,  // from == node means "left"
  user = 8,
  compound = 9,
  push_pull = 10,
};

struct Ping {
  uint32_t seq = 0;
  std::string target_id;  // the node the sender means to reach (guards against stale addresses)
  std::string source_id;
  Address source;
  bool operator==(const Ping&) const = default;
};
// ping-req: "please ping target for me and send the ack back to source".
struct IndirectPing {
  uint32_t seq = 0;
  std::string target_id;
  Address target;
  std::string source_id;
  Address source;
  bool want_nack = false;
  bool operator==(const IndirectPing&) const = default;
};
struct Ack {
  uint32_t seq = 0;
  bool operator==(const Ack&) const = default;
};
struct Nack {
  uint32_t seq = 0;
  bool operator==(const Nack&) const = default;
};
struct Suspect {
  uint32_t incarnation = 0;
  std::string node_id;
  std::string from_id;
  bool operator==(const Suspect&) const = default;
};
struct Alive {
  uint32_t incarnation = 0;
  std::string node_id;
  std::string name;
  Address addr;
  bool operator==(const Alive&) const = default;
};
struct Dead {
  uint32_t incarnation = 0;
  std::string node_id;
  std::string from_id;
  bool operator==(const Dead&) const = default;
};
struct UserMsg {
  uint64_t msg_id = 0;  // random, for de-duplication while it spreads
  Bytes data;
  bool operator==(const UserMsg&) const = default;
};
struct Compound {
  std::vector<Bytes> parts;  // each an encoded non-compound message
  bool operator==(const Compound&) const = default;
};
struct PushPull {
  bool join = false;
  bool reply = false;
  std::vector<Member> members;
  Bytes user_state;
  bool operator==(const PushPull& o) const;
};

using Message =
    std::variant<Ping, IndirectPing, Ack, Nack, Suspect, Alive, Dead, UserMsg, Compound, PushPull>;

MessageKind kind_of(const Message& m);

// Throws Error(invalid_argument) if a field is out of range (id too long...),
// so we never emit what we would refuse to read.
Bytes encode(const Message& m);
std::optional<Message> decode(std::span<const uint8_t> data);

// Size of a compound packet holding parts of the given total size.
inline constexpr size_t kCompoundHeader = 3;   // kind + u16 count
inline constexpr size_t kCompoundPerPart = 2;  // u16 length
inline constexpr size_t kMaxCompoundParts = 255;
Bytes encode_compound(const std::vector<Bytes>& parts);

}  // namespace swarmnet::gossip
