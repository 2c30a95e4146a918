#include "daemon/gossip/codec.hpp"

#include <cstring>

#include "common/error.hpp"

namespace swarmnet::gossip {

namespace {

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
  void u64(uint64_t v) {
    u32(static_cast<uint32_t>(v >> 32));
    u32(static_cast<uint32_t>(v));
  }
  void str(const std::string& s, size_t max, const char* what) {
    if (s.size() > max)
      throw Error(Errc::invalid_argument, std::string("gossip: ") + what + " longer than " +
                                              std::to_string(max) + " bytes");
    u8(static_cast<uint8_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void bytes(std::span<const uint8_t> b) {
    if (b.size() > UINT32_MAX) throw Error(Errc::invalid_argument, "gossip: payload too large");
    u32(static_cast<uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void addr(const Address& a) {
    u32(a.ip.value());
    u16(a.port);
  }

 private:
  Bytes& out_;
};

// Every read checks what is left; after the first failure all reads return
// zero values and ok() stays false, so decoders can read straight through
// and check once at the end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  size_t left() const { return in_.size() - pos_; }
  void fail() { ok_ = false; }

  uint8_t u8() {
    if (!need(1)) return 0;
    return in_[pos_++];
  }
  uint16_t u16() {
    uint16_t hi = u8();
    return static_cast<uint16_t>((hi << 8) | u8());
  }
  uint32_t u32() {
    uint32_t hi = u16();
    return (hi << 16) | u16();
  }
  uint64_t u64() {
    uint64_t hi = u32();
    return (hi << 32) | u32();
  }
  std::string str(size_t max) {
    size_t n = u8();
    if (n > max || !need(n)) {
      fail();
      return {};
    }
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  Bytes bytes() {
    uint32_t n = u32();
    if (!need(n)) return {};  // length is checked against the input before allocating
    Bytes b(in_.begin() + static_cast<ptrdiff_t>(pos_),
            in_.begin() + static_cast<ptrdiff_t>(pos_ + n));
    pos_ += n;
    return b;
  }
  std::span<const uint8_t> raw(size_t n) {
    if (!need(n)) return {};
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  Address addr() {
    Address a;
    a.ip = Ipv4Address(u32());
    a.port = u16();
    return a;
  }
  bool boolean() {
    uint8_t v = u8();
    if (v > 1) fail();
    return v == 1;
  }

 private:
  bool need(size_t n) {
    if (!ok_ || n > left()) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Smallest encoding of one member in a push/pull (empty strings).
constexpr size_t kMinMemberSize = 1 + 1 + 6 + 4 + 1;

void encode_into(Writer& w, const Message& msg) {
  w.u8(static_cast<uint8_t>(kind_of(msg)));
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, Ping>) {
          w.u32(m.seq);
          w.str(m.target_id, kMaxIdLength, "node id");
          w.str(m.source_id, kMaxIdLength, "node id");
          w.addr(m.source);
        } else if constexpr (std::is_same_v<T, IndirectPing>) {
          w.u32(m.seq);
          w.str(m.target_id, kMaxIdLength, "node id");
          w.addr(m.target);
          w.str(m.source_id, kMaxIdLength, "node id");
          w.addr(m.source);
          w.u8(m.want_nack ? 1 : 0);
        } else if constexpr (std::is_same_v<T, Ack> || std::is_same_v<T, Nack>) {
          w.u32(m.seq);
        } else if constexpr (std::is_same_v<T, Suspect> || std::is_same_v<T, Dead>) {
          w.u32(m.incarnation);
          w.str(m.node_id, kMaxIdLength, "node id");
          w.str(m.from_id, kMaxIdLength, "node id");
        } else if constexpr (std::is_same_v<T, Alive>) {
          w.u32(m.incarnation);
          w.str(m.node_id, kMaxIdLength, "node id");
          w.str(m.name, kMaxNameLength, "node name");
          w.addr(m.addr);
        } else if constexpr (std::is_same_v<T, UserMsg>) {
          w.u64(m.msg_id);
          w.bytes(m.data);
        } else if constexpr (std::is_same_v<T, Compound>) {
          if (m.parts.size() > kMaxCompoundParts)
            throw Error(Errc::invalid_argument, "gossip: too many parts in a compound message");
          w.u16(static_cast<uint16_t>(m.parts.size()));
          for (const auto& p : m.parts) {
            if (p.size() > UINT16_MAX)
              throw Error(Errc::invalid_argument, "gossip: compound part too large");
            w.u16(static_cast<uint16_t>(p.size()));
          }
          // Lengths first, then bodies: the decoder can check the sum before
          // looking at any body.
          for (const auto& p : m.parts)
            for (uint8_t b : p) w.u8(b);
        } else if constexpr (std::is_same_v<T, PushPull>) {
          w.u8(static_cast<uint8_t>((m.join ? 1 : 0) | (m.reply ? 2 : 0)));
          w.u32(static_cast<uint32_t>(m.members.size()));
          for (const auto& mem : m.members) {
            w.str(mem.id, kMaxIdLength, "node id");
            w.str(mem.name, kMaxNameLength, "node name");
            w.addr(mem.addr);
            w.u32(mem.incarnation);
            w.u8(static_cast<uint8_t>(mem.status));
          }
          w.bytes(m.user_state);
        }
      },
      msg);
}

std::optional<Message> decode_one(std::span<const uint8_t> data, bool allow_compound) {
  Reader r(data);
  auto kind = static_cast<MessageKind>(r.u8());
  if (!r.ok()) return std::nullopt;
  Message out;
  switch (kind) {
    case MessageKind::ping: {
      Ping m;
      m.seq = r.u32();
      m.target_id = r.str(kMaxIdLength);
      m.source_id = r.str(kMaxIdLength);
      m.source = r.addr();
      out = std::move(m);
      break;
    }
    case MessageKind::indirect_ping: {
      IndirectPing m;
      m.seq = r.u32();
      m.target_id = r.str(kMaxIdLength);
      m.target = r.addr();
      m.source_id = r.str(kMaxIdLength);
      m.source = r.addr();
      m.want_nack = r.boolean();
      out = std::move(m);
      break;
    }
    case MessageKind::ack:
      out = Ack{r.u32()};
      break;
    case MessageKind::nack:
      out = Nack{r.u32()};
      break;
    case MessageKind::suspect:
    case MessageKind::dead: {
      uint32_t inc = r.u32();
      std::string node = r.str(kMaxIdLength);
      std::string from = r.str(kMaxIdLength);
      if (kind == MessageKind::suspect)
        out = Suspect{inc, std::move(node), std::move(from)};
      else
        out = Dead{inc, std::move(node), std::move(from)};
      break;
    }
    case MessageKind::alive: {
      Alive m;
      m.incarnation = r.u32();
      m.node_id = r.str(kMaxIdLength);
      m.name = r.str(kMaxNameLength);
      m.addr = r.addr();
      out = std::move(m);
      break;
    }
    case MessageKind::user: {
      UserMsg m;
      m.msg_id = r.u64();
      m.data = r.bytes();
      out = std::move(m);
      break;
    }
    case MessageKind::compound: {
      // Nested compounds are refused: no recursion driven by the input.
      if (!allow_compound) return std::nullopt;
      size_t count = r.u16();
      if (count > kMaxCompoundParts || count * kCompoundPerPart > r.left()) return std::nullopt;
      std::vector<size_t> lengths(count);
      size_t total = 0;
      for (auto& len : lengths) {
        len = r.u16();
        total += len;
      }
      if (!r.ok() || total != r.left()) return std::nullopt;
      Compound m;
      m.parts.reserve(count);
      for (size_t len : lengths) {
        auto part = r.raw(len);
        // Parts are decoded later, one by one; refuse empty and nested
        // compound parts here already.
        if (part.empty() || part[0] == static_cast<uint8_t>(MessageKind::compound))
          return std::nullopt;
        m.parts.emplace_back(part.begin(), part.end());
      }
      out = std::move(m);
      break;
    }
    case MessageKind::push_pull: {
      PushPull m;
      uint8_t flags = r.u8();
      if (flags > 3) return std::nullopt;
      m.join = flags & 1;
      m.reply = flags & 2;
      uint32_t count = r.u32();
      // The count must be plausible for the bytes that follow before we
      // reserve anything.
      if (!r.ok() || count > r.left() / kMinMemberSize) return std::nullopt;
      m.members.reserve(count);
      for (uint32_t i = 0; i < count && r.ok(); ++i) {
        Member mem;
        mem.id = r.str(kMaxIdLength);
        mem.name = r.str(kMaxNameLength);
        mem.addr = r.addr();
        mem.incarnation = r.u32();
        uint8_t st = r.u8();
        if (st > static_cast<uint8_t>(MemberStatus::left)) r.fail();
        mem.status = static_cast<MemberStatus>(st);
        m.members.push_back(std::move(mem));
      }
      m.user_state = r.bytes();
      out = std::move(m);
      break;
    }
    default:
      return std::nullopt;
  }
  if (!r.ok() || !r.at_end()) return std::nullopt;
  return out;
}

}  // namespace

bool PushPull::operator==(const PushPull& o) const {
  if (join != o.join || reply != o.reply || user_state != o.user_state ||
      members.size() != o.members.size())
    return false;
  for (size_t i = 0; i < members.size(); ++i) {
    const auto &a = members[i], &b = o.members[i];
    if (a.id != b.id || a.name != b.name || a.addr != b.addr || a.incarnation != b.incarnation ||
        a.status != b.status)
      return false;
  }
  return true;
}

MessageKind kind_of(const Message& m) {
  static constexpr MessageKind kinds[] = {
      MessageKind::ping,     MessageKind::indirect_ping, MessageKind::ack,  MessageKind::nack,
      MessageKind::suspect,  MessageKind::alive,         MessageKind::dead, MessageKind::user,
      MessageKind::compound, MessageKind::push_pull};
  return kinds[m.index()];
}

Bytes encode(const Message& m) {
  Bytes out;
  Writer w(out);
  encode_into(w, m);
  return out;
}

Bytes encode_compound(const std::vector<Bytes>& parts) {
  // Same bytes as encode(Compound{parts}), without copying the parts into a
  // Compound first: this is the gossip hot path.
  if (parts.size() > kMaxCompoundParts)
    throw Error(Errc::invalid_argument, "gossip: too many parts in a compound message");
  size_t total = kCompoundHeader + kCompoundPerPart * parts.size();
  for (const auto& p : parts) total += p.size();
  Bytes out;
  out.reserve(total);
  Writer w(out);
  w.u8(static_cast<uint8_t>(MessageKind::compound));
  w.u16(static_cast<uint16_t>(parts.size()));
  for (const auto& p : parts) {
    if (p.size() > UINT16_MAX)
      throw Error(Errc::invalid_argument, "gossip: compound part too large");
    w.u16(static_cast<uint16_t>(p.size()));
  }
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::optional<Message> decode(std::span<const uint8_t> data) {
  return decode_one(data, true);
}

}  // namespace swarmnet::gossip
