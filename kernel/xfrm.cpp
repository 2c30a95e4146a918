#include "kernel/xfrm.hpp"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "kernel/netns.hpp"

namespace swarmnet::kernel {
namespace {

constexpr const char* kAead = "rfc4106(gcm(aes))";
constexpr uint32_t kReplayWindow = 128;  // packets; the ESN bitmap holds it in 4 words

// A netlink message under construction: header, fixed part, attributes.
class Message {
 public:
  Message(uint16_t type, uint16_t flags, size_t fixed_size) : buf_(NLMSG_LENGTH(fixed_size), 0) {
    header()->nlmsg_type = type;
    header()->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  }
  template <class T>
  T* fixed() { return reinterpret_cast<T*>(buf_.data() + NLMSG_HDRLEN); }
  void attribute(uint16_t type, const void* data, size_t size) {
    const size_t at = NLMSG_ALIGN(buf_.size());
    buf_.resize(at + NLA_ALIGN(NLA_HDRLEN + size), 0);
    auto* a = reinterpret_cast<nlattr*>(buf_.data() + at);
    a->nla_type = type;
    a->nla_len = static_cast<uint16_t>(NLA_HDRLEN + size);
    std::memcpy(buf_.data() + at + NLA_HDRLEN, data, size);
  }
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  void* data() {
    header()->nlmsg_len = static_cast<uint32_t>(buf_.size());
    return buf_.data();
  }
  size_t size() const { return buf_.size(); }

 private:
  std::vector<char> buf_;
};

uint32_t to_be(Ipv4Address a) { return htonl(a.value()); }
Ipv4Address from_be(uint32_t be) { return Ipv4Address(ntohl(be)); }

// The attributes after a message's fixed part, by type.
template <class F>
void for_each_attribute(const nlmsghdr* h, size_t fixed_size, F&& each) {
  const char* p = reinterpret_cast<const char*>(h) + NLMSG_HDRLEN + NLMSG_ALIGN(fixed_size);
  const char* end = reinterpret_cast<const char*>(h) + h->nlmsg_len;
  while (p + NLA_HDRLEN <= end) {
    const auto* a = reinterpret_cast<const nlattr*>(p);
    if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) break;
    each(a->nla_type & NLA_TYPE_MASK, p + NLA_HDRLEN, static_cast<size_t>(a->nla_len - NLA_HDRLEN));
    p += NLA_ALIGN(a->nla_len);
  }
}

xfrm_selector policy_selector(const EspPolicy& p) {
  xfrm_selector sel{};
  sel.family = AF_INET;
  sel.saddr.a4 = to_be(p.src);
  sel.daddr.a4 = to_be(p.dst);
  sel.prefixlen_s = 32;
  sel.prefixlen_d = 32;
  sel.proto = IPPROTO_UDP;
  sel.dport = htons(p.dport);
  sel.dport_mask = 0xffff;
  sel.sport = htons(p.sport);
  sel.sport_mask = htons(p.sport_mask);
  return sel;
}

}  // namespace

XfrmSocket XfrmSocket::open() {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
  if (fd < 0) throw_errno(Errc::unavailable, "XFRM netlink socket (CONFIG_XFRM_USER, module xfrm_user)", errno);
  return XfrmSocket(fd);
}

XfrmSocket::XfrmSocket(XfrmSocket&& other) noexcept : fd_(other.fd_), seq_(other.seq_) { other.fd_ = -1; }

XfrmSocket& XfrmSocket::operator=(XfrmSocket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    seq_ = other.seq_;
    other.fd_ = -1;
  }
  return *this;
}

XfrmSocket::~XfrmSocket() {
  if (fd_ >= 0) ::close(fd_);
}

int XfrmSocket::request(void* message, size_t length) {
  auto* h = static_cast<nlmsghdr*>(message);
  h->nlmsg_flags |= NLM_F_ACK;
  h->nlmsg_seq = ++seq_;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_, message, length, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return errno;
  alignas(nlmsghdr) char reply[8192];
  for (;;) {
    const ssize_t n = ::recv(fd_, reply, sizeof(reply), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    unsigned left = static_cast<unsigned>(n);
    for (auto* r = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_seq != seq_ || r->nlmsg_type != NLMSG_ERROR) continue;
      return -static_cast<const nlmsgerr*>(NLMSG_DATA(r))->error;
    }
  }
}

template <class F>
void XfrmSocket::dump(uint16_t type, F&& each) {
  Message m(type, NLM_F_DUMP, type == XFRM_MSG_GETSA ? sizeof(xfrm_usersa_id) : sizeof(xfrm_userpolicy_id));
  m.header()->nlmsg_seq = ++seq_;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    throw_errno(Errc::internal, "XFRM dump request", errno);
  }
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::internal, "XFRM dump", errno);
    }
    unsigned left = static_cast<unsigned>(n);
    for (auto* r = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_seq != seq_) continue;
      if (r->nlmsg_type == NLMSG_DONE) return;
      if (r->nlmsg_type == NLMSG_ERROR) {
        const int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(r))->error;
        if (err == 0) return;
        throw_errno(Errc::internal, "XFRM dump", err);
      }
      each(r);
    }
  }
}

void XfrmSocket::update_state(const EspState& s) {
  // NEWSA adds; UPDSA only replaces an SA that exists (ESRCH otherwise).
  int err = add_or_update_state(s, XFRM_MSG_NEWSA);
  if (err == EEXIST) err = add_or_update_state(s, XFRM_MSG_UPDSA);
  if (err == EPROTONOSUPPORT) {
    throw Error(Errc::unavailable, "the kernel has no ESP (module esp4, CONFIG_INET_ESP): " + std::string(std::strerror(err)));
  }
  if (err == ENOSYS || err == ENOENT) {
    throw Error(Errc::unavailable, std::string("the kernel has no ") + kAead +
                                       " (modules gcm, ghash_generic, ctr, seqiv, and drbg for the default RNG; "
                                       "CONFIG_CRYPTO_GCM): " +
                                       std::strerror(err));
  }
  if (err != 0) throw_errno(Errc::internal, "adding ESP state spi " + std::to_string(s.spi) + " to " + s.dst.str(), err);
}

int XfrmSocket::add_or_update_state(const EspState& s, uint16_t type) {
  Message m(type, type == XFRM_MSG_NEWSA ? NLM_F_CREATE | NLM_F_EXCL : 0, sizeof(xfrm_usersa_info));
  auto* sa = m.fixed<xfrm_usersa_info>();
  sa->family = AF_INET;
  sa->saddr.a4 = to_be(s.src);
  sa->id.daddr.a4 = to_be(s.dst);
  sa->id.spi = htonl(s.spi);
  sa->id.proto = IPPROTO_ESP;
  sa->mode = XFRM_MODE_TRANSPORT;
  sa->reqid = s.reqid;
  sa->flags = XFRM_STATE_ESN;
  sa->lft.soft_byte_limit = sa->lft.hard_byte_limit = XFRM_INF;
  sa->lft.soft_packet_limit = sa->lft.hard_packet_limit = XFRM_INF;

  // Both attributes end in a flexible array: built as bytes.
  std::vector<char> alg(sizeof(xfrm_algo_aead) + sizeof(EspKey), 0);
  xfrm_algo_aead aead{};
  std::strncpy(aead.alg_name, kAead, sizeof(aead.alg_name) - 1);
  aead.alg_key_len = sizeof(EspKey) * 8;
  aead.alg_icv_len = 128;
  std::memcpy(alg.data(), &aead, sizeof(aead));
  std::memcpy(alg.data() + sizeof(aead), s.key.data(), s.key.size());
  m.attribute(XFRMA_ALG_AEAD, alg.data(), alg.size());

  // Extended (64-bit) sequence numbers: 2^64 packets never run out.
  std::vector<char> replay(sizeof(xfrm_replay_state_esn) + kReplayWindow / 8, 0);
  xfrm_replay_state_esn esn{};
  esn.bmp_len = kReplayWindow / 32;
  esn.replay_window = kReplayWindow;
  std::memcpy(replay.data(), &esn, sizeof(esn));
  m.attribute(XFRMA_REPLAY_ESN_VAL, replay.data(), replay.size());

  return request(m.data(), m.size());
}

void XfrmSocket::delete_state(Ipv4Address dst, uint32_t spi) {
  Message m(XFRM_MSG_DELSA, 0, sizeof(xfrm_usersa_id));
  auto* id = m.fixed<xfrm_usersa_id>();
  id->daddr.a4 = to_be(dst);
  id->spi = htonl(spi);
  id->family = AF_INET;
  id->proto = IPPROTO_ESP;
  const int err = request(m.data(), m.size());
  if (err != 0 && err != ESRCH && err != ENOENT) {
    throw_errno(Errc::internal, "deleting ESP state spi " + std::to_string(spi) + " to " + dst.str(), err);
  }
}

std::vector<EspStateInfo> XfrmSocket::list_states() {
  std::vector<EspStateInfo> out;
  dump(XFRM_MSG_GETSA, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != XFRM_MSG_NEWSA || h->nlmsg_len < NLMSG_LENGTH(sizeof(xfrm_usersa_info))) return;
    const auto* sa = static_cast<const xfrm_usersa_info*>(NLMSG_DATA(h));
    if (sa->family != AF_INET || sa->id.proto != IPPROTO_ESP) return;
    out.push_back({from_be(sa->saddr.a4), from_be(sa->id.daddr.a4), ntohl(sa->id.spi), sa->reqid});
  });
  return out;
}

void XfrmSocket::update_policy(const EspPolicy& p) {
  Message m(XFRM_MSG_UPDPOLICY, 0, sizeof(xfrm_userpolicy_info));
  auto* info = m.fixed<xfrm_userpolicy_info>();
  info->sel = policy_selector(p);
  info->lft.soft_byte_limit = info->lft.hard_byte_limit = XFRM_INF;
  info->lft.soft_packet_limit = info->lft.hard_packet_limit = XFRM_INF;
  info->dir = XFRM_POLICY_OUT;
  info->action = XFRM_POLICY_ALLOW;
  info->share = XFRM_SHARE_ANY;

  xfrm_user_tmpl tmpl{};
  tmpl.id.daddr.a4 = to_be(p.dst);
  tmpl.id.proto = IPPROTO_ESP;
  tmpl.family = AF_INET;
  tmpl.saddr.a4 = to_be(p.src);
  tmpl.reqid = p.reqid;
  tmpl.mode = XFRM_MODE_TRANSPORT;
  tmpl.aalgos = tmpl.ealgos = tmpl.calgos = ~0u;
  m.attribute(XFRMA_TMPL, &tmpl, sizeof(tmpl));
  if (p.mark) {
    xfrm_mark mark{p.mark, 0xffffffffu};
    m.attribute(XFRMA_MARK, &mark, sizeof(mark));
  }

  const int err = request(m.data(), m.size());
  if (err != 0) throw_errno(Errc::internal, "adding ESP policy to " + p.dst.str(), err);
}

void XfrmSocket::delete_policy(const EspPolicy& p) {
  Message m(XFRM_MSG_DELPOLICY, 0, sizeof(xfrm_userpolicy_id));
  auto* id = m.fixed<xfrm_userpolicy_id>();
  id->sel = policy_selector(p);
  id->dir = XFRM_POLICY_OUT;
  if (p.mark) {
    xfrm_mark mark{p.mark, 0xffffffffu};
    m.attribute(XFRMA_MARK, &mark, sizeof(mark));
  }
  const int err = request(m.data(), m.size());
  if (err != 0 && err != ENOENT && err != ESRCH) throw_errno(Errc::internal, "deleting ESP policy to " + p.dst.str(), err);
}

std::vector<EspPolicy> XfrmSocket::list_policies(uint32_t wanted_mark) {
  std::vector<EspPolicy> out;
  dump(XFRM_MSG_GETPOLICY, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != XFRM_MSG_NEWPOLICY || h->nlmsg_len < NLMSG_LENGTH(sizeof(xfrm_userpolicy_info))) return;
    const auto* info = static_cast<const xfrm_userpolicy_info*>(NLMSG_DATA(h));
    if (info->dir != XFRM_POLICY_OUT || info->sel.family != AF_INET) return;
    EspPolicy p;
    p.src = from_be(info->sel.saddr.a4);
    p.dst = from_be(info->sel.daddr.a4);
    p.dport = ntohs(info->sel.dport);
    p.sport = ntohs(info->sel.sport);
    p.sport_mask = ntohs(info->sel.sport_mask);
    for_each_attribute(h, sizeof(xfrm_userpolicy_info), [&](uint16_t type, const char* data, size_t size) {
      if (type == XFRMA_MARK && size >= sizeof(xfrm_mark)) {
        xfrm_mark mark;
        std::memcpy(&mark, data, sizeof(mark));
        p.mark = mark.v;
      } else if (type == XFRMA_TMPL && size >= sizeof(xfrm_user_tmpl)) {
        xfrm_user_tmpl tmpl;
        std::memcpy(&tmpl, data, sizeof(tmpl));
        p.reqid = tmpl.reqid;
      }
    });
    if (p.mark == wanted_mark) out.push_back(p);
  });
  return out;
}

int XfrmSocket::try_null_esp() {
  Message m(XFRM_MSG_NEWSA, NLM_F_CREATE | NLM_F_EXCL, sizeof(xfrm_usersa_info));
  auto* sa = m.fixed<xfrm_usersa_info>();
  sa->family = AF_INET;
  sa->saddr.a4 = htonl(0xc0000201);
  sa->id.daddr.a4 = htonl(0xc0000202);
  sa->id.spi = htonl(0x101);
  sa->id.proto = IPPROTO_ESP;
  sa->mode = XFRM_MODE_TRANSPORT;
  sa->lft.soft_byte_limit = sa->lft.hard_byte_limit = XFRM_INF;
  sa->lft.soft_packet_limit = sa->lft.hard_packet_limit = XFRM_INF;
  xfrm_algo null{};
  std::strncpy(null.alg_name, "ecb(cipher_null)", sizeof(null.alg_name) - 1);
  m.attribute(XFRMA_ALG_CRYPT, &null, sizeof(null));
  return request(m.data(), m.size());
}

std::optional<std::string> esp_missing() {
  try {
    Netns scratch = Netns::create("ESP probe");
    XfrmSocket xfrm = [&] {
      NetnsGuard in(scratch);
      return XfrmSocket::open();
    }();
    EspState probe;
    probe.src = Ipv4Address(0xc0000201);  // 192.0.2.1, documentation range
    probe.dst = Ipv4Address(0xc0000202);
    probe.spi = 0x100;
    probe.reqid = 1;
    try {
      xfrm.update_state(probe);
      return std::nullopt;  // gone with the namespace
    } catch (const Error& e) {
      // The kernel checks the algorithm before the protocol: an SA with
      // the null cipher says whether ESP itself is there.
      const int err = xfrm.try_null_esp();
      if (err == EPROTONOSUPPORT) {
        return std::string("the kernel has no ESP (module esp4, CONFIG_INET_ESP)") +
               (e.code() == Errc::unavailable && std::string(e.what()).find(kAead) != std::string::npos
                    ? std::string(", nor ") + kAead + " (modules gcm, ghash_generic, ctr, seqiv)"
                    : "");
      }
      return std::string(e.what());
    }
  } catch (const Error& e) {
    return std::string(e.what());
  }
}

}  // namespace swarmnet::kernel
