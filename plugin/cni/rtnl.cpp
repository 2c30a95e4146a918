#include "plugin/cni/rtnl.hpp"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/error.hpp"

namespace swarmnet::cni {
namespace {

// How many times a dump is restarted after a concurrent change interrupted
// it, before giving up.
constexpr int kDumpAttempts = 5;
// Replies of one command (a link, a container's few addresses and routes)
// fit many times over; a longer datagram is reported, never cut silently.
constexpr size_t kReceiveBuffer = 64 * 1024;

// One request, built front to back; nested attributes get their length
// when closed.
class Message {
 public:
  Message(uint16_t type, uint16_t flags) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    append(&h, sizeof(h));
  }
  template <class Fixed>
  void put(const Fixed& fixed) {
    append(&fixed, sizeof(fixed));
  }
  void attr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    a.rta_type = type;
    buf_.append(reinterpret_cast<const char*>(&a), sizeof(a));
    append(data, len);
  }
  void attr_string(uint16_t type, const std::string& s) { attr(type, s.c_str(), s.size() + 1); }
  void attr_u32(uint16_t type, uint32_t v) { attr(type, &v, sizeof(v)); }
  size_t begin_nest(uint16_t type) {
    const size_t at = buf_.size();
    attr(type, nullptr, 0);
    return at;
  }
  void end_nest(size_t at) {
    const auto len = static_cast<unsigned short>(buf_.size() - at);
    std::memcpy(buf_.data() + at + offsetof(rtattr, rta_len), &len, sizeof(len));
  }
  std::string take() { return std::move(buf_); }

 private:
  void append(const void* data, size_t len) {
    if (len > 0) buf_.append(static_cast<const char*>(data), len);
    buf_.resize(NLMSG_ALIGN(buf_.size()), '\0');
  }
  std::string buf_;
};

Errc errc_for(int err) {
  switch (err) {
    case EEXIST:
    case EBUSY:
      return Errc::conflict;
    case ENODEV:
      return Errc::not_found;
    case EINVAL:
    case ERANGE:
      return Errc::invalid_argument;
    default:
      return Errc::internal;
  }
}

[[noreturn]] void fail(int err, const std::string& what, const std::string& kernel_message) {
  throw Error(errc_for(err), what + ": " + (kernel_message.empty() ? std::strerror(err) : kernel_message));
}

// Calls f(type, payload, length) for each attribute in [data, data + len).
template <class F>
void for_each_attr(const void* data, size_t len, F&& f) {
  auto rem = static_cast<int>(len);
  for (auto* a = static_cast<const rtattr*>(data); RTA_OK(a, rem); a = RTA_NEXT(a, rem)) {
    f(a->rta_type, RTA_DATA(a), RTA_PAYLOAD(a));
  }
}

template <class Fixed, class F>
void for_each_attr(const nlmsghdr& h, F&& f) {
  if (h.nlmsg_len < NLMSG_LENGTH(sizeof(Fixed))) return;
  const char* start = static_cast<const char*>(NLMSG_DATA(&h)) + NLMSG_ALIGN(sizeof(Fixed));
  for_each_attr(start, h.nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(Fixed))), f);
}

template <class Fixed>
const Fixed* fixed_header(const nlmsghdr& h) {
  if (h.nlmsg_len < NLMSG_LENGTH(sizeof(Fixed))) return nullptr;
  return static_cast<const Fixed*>(NLMSG_DATA(&h));
}

// The text of NLMSGERR_ATTR_MSG in an error reply (extended acks).
std::string extack_message(const nlmsghdr& h) {
  if (!(h.nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(&h));
  // Capped acks (NETLINK_CAP_ACK) carry the request's header only.
  size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if (!(h.nlmsg_flags & NLM_F_CAPPED)) offset += e->msg.nlmsg_len - NLMSG_HDRLEN;
  offset = NLMSG_ALIGN(offset);
  if (offset >= h.nlmsg_len) return "";
  std::string out;
  for_each_attr(reinterpret_cast<const char*>(&h) + offset, h.nlmsg_len - offset,
                [&](unsigned type, const void* data, size_t len) {
                  if (type == NLMSGERR_ATTR_MSG && len > 0) {
                    out.assign(static_cast<const char*>(data), strnlen(static_cast<const char*>(data), len));
                  }
                });
  return out;
}

std::string format_mac(const unsigned char* b, size_t len) {
  if (len != 6) return "";
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return text;
}

void parse_mac(const std::string& text, unsigned char out[6]) {
  unsigned v[6];
  char end;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6) {
    throw Error(Errc::invalid_argument, "invalid MAC address \"" + text + "\"");
  }
  for (int i = 0; i < 6; ++i) out[i] = static_cast<unsigned char>(v[i]);
}

Ipv4Address ipv4_of(const void* data, size_t len) {
  if (len != 4) return Ipv4Address{};
  uint32_t raw;
  std::memcpy(&raw, data, sizeof(raw));
  return Ipv4Address(ntohl(raw));
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    throw Error(Errc::invalid_argument, "invalid interface name \"" + name + "\"");
  }
}

Message link_request(uint16_t type, uint16_t flags, const std::string& name) {
  check_name(name);
  Message m(type, flags);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  m.put(ifi);
  m.attr_string(IFLA_IFNAME, name);
  return m;
}

}  // namespace

Rtnl Rtnl::open() {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw_errno(Errc::internal, "open rtnetlink socket", errno);
  Rtnl r(fd);
  // The kernel's reason in errors ("Nexthop has invalid gateway"), without
  // the request echoed back. Both only improve messages: kernels without
  // them still work.
  const int on = 1;
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
  return r;
}

Rtnl Rtnl::open_in(const kernel::Netns& ns) {
  // A socket stays in the namespace it was made in.
  kernel::NetnsGuard guard(ns);
  return open();
}

Rtnl::Rtnl(Rtnl&& other) noexcept : fd_(std::exchange(other.fd_, -1)), seq_(other.seq_) {}

Rtnl::~Rtnl() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<int> Rtnl::transact(std::vector<std::string>& requests, const Visit& visit,
                                std::string* kernel_message) {
  const unsigned first = seq_ + 1;
  std::string datagram;
  for (auto& r : requests) {
    nlmsghdr h;
    std::memcpy(&h, r.data(), sizeof(h));
    h.nlmsg_len = static_cast<uint32_t>(r.size());
    h.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    h.nlmsg_seq = ++seq_;
    std::memcpy(r.data(), &h, sizeof(h));
    datagram += r;
  }
  while (::send(fd_, datagram.data(), datagram.size(), 0) < 0) {
    if (errno != EINTR) throw_errno(Errc::internal, "send to rtnetlink", errno);
  }

  std::vector<int> result(requests.size(), -1);  // -1: no ack yet
  size_t pending = requests.size();
  alignas(nlmsghdr) static char buf[kReceiveBuffer];
  while (pending > 0) {
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::internal, "receive from rtnetlink", errno);
    }
    if (static_cast<size_t>(n) > sizeof(buf)) throw Error(Errc::internal, "rtnetlink reply too long");
    auto rem = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, rem); h = NLMSG_NEXT(h, rem)) {
      if (h->nlmsg_seq < first || h->nlmsg_seq > seq_) continue;  // not an answer to these
      const size_t i = h->nlmsg_seq - first;
      if (h->nlmsg_type != NLMSG_ERROR) {
        if (visit) visit(*h);
        continue;
      }
      const auto* e = fixed_header<nlmsgerr>(*h);
      if (!e || result[i] != -1) continue;
      result[i] = -e->error;
      --pending;
      if (e->error != 0 && kernel_message && kernel_message->empty()) *kernel_message = extack_message(*h);
    }
  }
  return result;
}

void Rtnl::dump(std::string request, const std::string& what, const std::function<void()>& restart,
                const Visit& visit) {
  for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
    restart();
    nlmsghdr h;
    std::memcpy(&h, request.data(), sizeof(h));
    h.nlmsg_len = static_cast<uint32_t>(request.size());
    h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    h.nlmsg_seq = ++seq_;
    std::memcpy(request.data(), &h, sizeof(h));
    while (::send(fd_, request.data(), request.size(), 0) < 0) {
      if (errno != EINTR) throw_errno(Errc::internal, what, errno);
    }
    bool done = false, interrupted = false;
    alignas(nlmsghdr) static char buf[kReceiveBuffer];
    while (!done) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_TRUNC);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno(Errc::internal, what, errno);
      }
      if (static_cast<size_t>(n) > sizeof(buf)) throw Error(Errc::internal, what + ": reply too long");
      auto rem = static_cast<int>(n);
      for (auto* m = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(m, rem); m = NLMSG_NEXT(m, rem)) {
        if (m->nlmsg_seq != seq_) continue;
        if (m->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m->nlmsg_type == NLMSG_DONE) {
          done = true;
        } else if (m->nlmsg_type == NLMSG_ERROR) {
          const auto* e = fixed_header<nlmsgerr>(*m);
          if (e && e->error != 0) fail(-e->error, what, extack_message(*m));
        } else {
          visit(*m);
        }
      }
    }
    if (!interrupted) return;
  }
  throw Error(Errc::unavailable, what + ": interrupted by concurrent changes " + std::to_string(kDumpAttempts) +
                                     " times");
}

std::optional<RtnlLink> Rtnl::find_link(const std::string& name) {
  std::vector<std::string> req{link_request(RTM_GETLINK, 0, name).take()};
  std::optional<RtnlLink> found;
  std::string message;
  const int err = transact(req, [&](const nlmsghdr& h) {
    const auto* ifi = fixed_header<ifinfomsg>(h);
    if (h.nlmsg_type != RTM_NEWLINK || !ifi) return;
    RtnlLink link;
    link.index = ifi->ifi_index;
    for_each_attr<ifinfomsg>(h, [&](unsigned type, const void* data, size_t len) {
      if (type == IFLA_ADDRESS) link.mac = format_mac(static_cast<const unsigned char*>(data), len);
    });
    found = link;
  }, &message)[0];
  if (err == ENODEV) return std::nullopt;
  if (err != 0) fail(err, "look up interface " + name, message);
  return found;
}

void Rtnl::create_veth(const VethRequest& req, const kernel::Netns& peer_ns) {
  check_name(req.peer_name);
  unsigned char host_mac[6], peer_mac[6];
  parse_mac(req.host_mac, host_mac);
  parse_mac(req.peer_mac, peer_mac);

  check_name(req.host_name);
  // The host end is made up and enslaved at once; the peer is born in the
  // container's namespace under its final name (no move, no rename), down:
  // the kernel opens neither end before the pair is joined (ENOTCONN).
  ifinfomsg up{};
  up.ifi_family = AF_UNSPEC;
  up.ifi_flags = IFF_UP;
  up.ifi_change = IFF_UP;
  Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  m.put(up);
  m.attr_string(IFLA_IFNAME, req.host_name);
  if (req.mtu) m.attr_u32(IFLA_MTU, req.mtu);
  m.attr(IFLA_ADDRESS, host_mac, sizeof(host_mac));
  m.attr_u32(IFLA_MASTER, static_cast<uint32_t>(req.master_index));
  const size_t linkinfo = m.begin_nest(IFLA_LINKINFO);
  m.attr_string(IFLA_INFO_KIND, "veth");
  const size_t data = m.begin_nest(IFLA_INFO_DATA);
  const size_t peer = m.begin_nest(VETH_INFO_PEER);
  ifinfomsg down{};
  down.ifi_family = AF_UNSPEC;
  m.put(down);
  m.attr_string(IFLA_IFNAME, req.peer_name);
  if (req.mtu) m.attr_u32(IFLA_MTU, req.mtu);
  m.attr(IFLA_ADDRESS, peer_mac, sizeof(peer_mac));
  m.attr_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(peer_ns.fd()));
  m.end_nest(peer);
  m.end_nest(data);
  m.end_nest(linkinfo);

  std::vector<std::string> reqs{m.take()};
  std::string message;
  const int err = transact(reqs, {}, &message)[0];
  if (err == EEXIST) {
    // One errno for both ends; ask which one clashed (error path only).
    if (find_link(req.host_name)) throw Error(Errc::conflict, "interface " + req.host_name + " already exists");
    throw Error(Errc::conflict, "interface " + req.peer_name + " already exists in network namespace " +
                                    peer_ns.path());
  }
  if (err != 0) fail(err, "create veth " + req.host_name + " (peer " + req.peer_name + ")", message);
}

void Rtnl::set_hairpin(const std::string& port) {
  Message m = link_request(RTM_NEWLINK, 0, port);
  const size_t linkinfo = m.begin_nest(IFLA_LINKINFO);
  m.attr_string(IFLA_INFO_SLAVE_KIND, "bridge");
  const size_t slave = m.begin_nest(IFLA_INFO_SLAVE_DATA);
  const uint8_t on = 1;
  m.attr(IFLA_BRPORT_MODE, &on, sizeof(on));
  m.end_nest(slave);
  m.end_nest(linkinfo);
  std::vector<std::string> reqs{m.take()};
  std::string message;
  const int err = transact(reqs, {}, &message)[0];
  if (err != 0) fail(err, "turn on hairpin mode of bridge port " + port, message);
}

void Rtnl::bring_up(int index, const Ipv4Prefix& address, Ipv4Address gateway) {
  Message up(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  up.put(ifi);

  // Without NLM_F_EXCL the kernel answers EEXIST only when the link already
  // has exactly this address: the idempotent case.
  Message addr(RTM_NEWADDR, NLM_F_CREATE);
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET;
  ifa.ifa_prefixlen = static_cast<unsigned char>(address.length());
  ifa.ifa_index = static_cast<unsigned>(index);
  addr.put(ifa);
  const uint32_t local = address.address().network_order();
  addr.attr(IFA_LOCAL, &local, sizeof(local));
  addr.attr(IFA_ADDRESS, &local, sizeof(local));
  // Same default as `ip addr add ... brd +` and the reference plugins.
  if (address.length() < 31) {
    const uint32_t brd = address.broadcast().network_order();
    addr.attr(IFA_BROADCAST, &brd, sizeof(brd));
  }

  // NLM_F_EXCL: a route already there to this destination is an EEXIST,
  // not a second nexthop beside it; then we look whether it is ours.
  const Ipv4Prefix destination(Ipv4Address(0), 0);
  Message route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  rtmsg rt{};
  rt.rtm_family = AF_INET;
  rt.rtm_dst_len = static_cast<unsigned char>(destination.length());
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = RTPROT_STATIC;
  rt.rtm_scope = RT_SCOPE_UNIVERSE;
  rt.rtm_type = RTN_UNICAST;
  route.put(rt);
  const uint32_t dst = destination.network().network_order();
  route.attr(RTA_DST, &dst, sizeof(dst));
  const uint32_t gw = gateway.network_order();
  route.attr(RTA_GATEWAY, &gw, sizeof(gw));
  route.attr_u32(RTA_OIF, static_cast<uint32_t>(index));

  // In this order, in one datagram: the address's own route appears when
  // the link is up, and the gateway is reachable through it.
  std::vector<std::string> reqs{up.take(), addr.take(), route.take()};
  std::string message;
  const std::vector<int> err = transact(reqs, {}, &message);
  if (err[0] != 0) fail(err[0], "bring up interface " + std::to_string(index), message);
  if (err[1] != 0 && err[1] != EEXIST) fail(err[1], "add address " + address.str(), message);
  const std::string what = "add route " + destination.str() + " via " + gateway.str();
  if (err[2] == EEXIST) {
    const Ipv4Prefix wanted(destination.network(), destination.length());
    for (const auto& r : routes()) {
      if (r.destination == wanted && r.oif_index == index && r.gateway == gateway) return;
    }
    throw Error(Errc::conflict, what + ": a different route to " + wanted.str() + " exists");
  }
  if (err[2] != 0) fail(err[2], what, message);
}

bool Rtnl::delete_link(const std::string& name) {
  std::vector<std::string> req{link_request(RTM_DELLINK, 0, name).take()};
  std::string message;
  const int err = transact(req, {}, &message)[0];
  if (err == ENODEV) return false;
  if (err != 0) fail(err, "delete interface " + name, message);
  return true;
}

std::vector<Ipv4Prefix> Rtnl::addresses(int index) {
  Message m(RTM_GETADDR, 0);
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET;
  m.put(ifa);
  std::vector<Ipv4Prefix> out;
  dump(m.take(), "list addresses", [&] { out.clear(); }, [&](const nlmsghdr& h) {
    const auto* a = fixed_header<ifaddrmsg>(h);
    if (h.nlmsg_type != RTM_NEWADDR || !a || a->ifa_family != AF_INET ||
        static_cast<int>(a->ifa_index) != index) {
      return;
    }
    std::optional<Ipv4Address> local, address;
    for_each_attr<ifaddrmsg>(h, [&](unsigned type, const void* data, size_t len) {
      if (type == IFA_LOCAL) local = ipv4_of(data, len);
      if (type == IFA_ADDRESS) address = ipv4_of(data, len);
    });
    if (local || address) out.emplace_back(local ? *local : *address, a->ifa_prefixlen);
  });
  return out;
}

std::vector<RtnlRoute> Rtnl::routes() {
  Message m(RTM_GETROUTE, 0);
  rtmsg rt{};
  rt.rtm_family = AF_INET;
  m.put(rt);
  std::vector<RtnlRoute> out;
  dump(m.take(), "list routes", [&] { out.clear(); }, [&](const nlmsghdr& h) {
    const auto* r = fixed_header<rtmsg>(h);
    if (h.nlmsg_type != RTM_NEWROUTE || !r || r->rtm_family != AF_INET || r->rtm_type != RTN_UNICAST) return;
    uint32_t table = r->rtm_table;
    RtnlRoute route;
    Ipv4Address dst;
    for_each_attr<rtmsg>(h, [&](unsigned type, const void* data, size_t len) {
      if (type == RTA_TABLE && len == 4) std::memcpy(&table, data, 4);
      if (type == RTA_DST) dst = ipv4_of(data, len);
      if (type == RTA_GATEWAY) route.gateway = ipv4_of(data, len);
      if (type == RTA_OIF && len == 4) std::memcpy(&route.oif_index, data, 4);
    });
    if (table != RT_TABLE_MAIN) return;
    route.destination = Ipv4Prefix(dst, r->rtm_dst_len);
    out.push_back(route);
  });
  return out;
}

std::string random_veth_mac() {
  unsigned char b[6];
  if (::getrandom(b, sizeof(b), 0) != static_cast<ssize_t>(sizeof(b))) {
    throw_errno(Errc::internal, "getrandom", errno);
  }
  b[0] = static_cast<unsigned char>((b[0] & 0xfe) | 0x02);  // unicast, locally administered
  return format_mac(b, sizeof(b));
}

}  // namespace swarmnet::cni
