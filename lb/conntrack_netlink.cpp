#include "lb/conntrack_netlink.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

#include "common/error.hpp"

namespace swarmnet::lb::conntrack {
namespace {

// The kernel's tuple-filter flags (net/netfilter/nf_internals.h, not in
// the uapi headers): one bit per attribute of CTA_TUPLE_IP / _PROTO.
constexpr uint32_t kFilterIpDestination = 1u << 1;
constexpr uint32_t kFilterProtocolNumber = 1u << 3;
constexpr uint32_t kFilterProtocolDestinationPort = 1u << 5;

nlmsghdr* put_header(char* buf, uint16_t type, uint16_t flags, uint32_t seq) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = static_cast<uint16_t>((NFNL_SUBSYS_CTNETLINK << 8) | type);
  nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  nlh->nlmsg_seq = seq;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_INET;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  return nlh;
}

// CTA_TUPLE_* { CTA_TUPLE_IP { src?, dst }, CTA_TUPLE_PROTO { num, ports? } }.
void put_tuple(nlmsghdr* nlh, uint16_t which, const Ipv4Address* source, Ipv4Address destination,
               uint8_t protocol, const uint16_t* source_port, const uint16_t* destination_port) {
  nlattr* tuple = mnl_attr_nest_start(nlh, which);
  nlattr* ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
  if (source) mnl_attr_put_u32(nlh, CTA_IP_V4_SRC, source->network_order());
  mnl_attr_put_u32(nlh, CTA_IP_V4_DST, destination.network_order());
  mnl_attr_nest_end(nlh, ip);
  nlattr* proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
  mnl_attr_put_u8(nlh, CTA_PROTO_NUM, protocol);
  if (source_port) mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(*source_port));
  if (destination_port) mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(*destination_port));
  mnl_attr_nest_end(nlh, proto);
  mnl_attr_nest_end(nlh, tuple);
}

// Collects the attributes of one nest by type; ignores types above `max`.
struct Attributes {
  explicit Attributes(int max) : max(max), table(static_cast<size_t>(max) + 1, nullptr) {}
  int max;
  std::vector<const nlattr*> table;
  const nlattr* operator[](int type) const {
    return type <= max ? table[static_cast<size_t>(type)] : nullptr;
  }
};

int collect(const nlattr* attr, void* data) {
  auto* out = static_cast<Attributes*>(data);
  int type = mnl_attr_get_type(attr);
  if (type <= out->max) out->table[static_cast<size_t>(type)] = attr;
  return MNL_CB_OK;
}

bool nested(const nlattr* attr, Attributes& out) {
  return attr && mnl_attr_parse_nested(attr, collect, &out) == MNL_CB_OK;
}

// A tuple's addresses and ports; false if one is missing or malformed
// (not IPv4, not a port protocol).
struct Tuple {
  Ipv4Address source, destination;
  uint8_t protocol = 0;
  uint16_t source_port = 0, destination_port = 0;
};

bool read_tuple(const nlattr* attr, Tuple& out) {
  Attributes tuple(CTA_TUPLE_MAX), ip(CTA_IP_MAX), proto(CTA_PROTO_MAX);
  if (!nested(attr, tuple) || !nested(tuple[CTA_TUPLE_IP], ip) ||
      !nested(tuple[CTA_TUPLE_PROTO], proto)) {
    return false;
  }
  const nlattr* src = ip[CTA_IP_V4_SRC];
  const nlattr* dst = ip[CTA_IP_V4_DST];
  const nlattr* num = proto[CTA_PROTO_NUM];
  const nlattr* sport = proto[CTA_PROTO_SRC_PORT];
  const nlattr* dport = proto[CTA_PROTO_DST_PORT];
  if (!src || !dst || !num || !sport || !dport || mnl_attr_validate(src, MNL_TYPE_U32) < 0 ||
      mnl_attr_validate(dst, MNL_TYPE_U32) < 0 || mnl_attr_validate(num, MNL_TYPE_U8) < 0 ||
      mnl_attr_validate(sport, MNL_TYPE_U16) < 0 || mnl_attr_validate(dport, MNL_TYPE_U16) < 0) {
    return false;
  }
  out.source = Ipv4Address(ntohl(mnl_attr_get_u32(src)));
  out.destination = Ipv4Address(ntohl(mnl_attr_get_u32(dst)));
  out.protocol = mnl_attr_get_u8(num);
  out.source_port = ntohs(mnl_attr_get_u16(sport));
  out.destination_port = ntohs(mnl_attr_get_u16(dport));
  return true;
}

struct DumpResult {
  std::optional<Ipv4Address> to;
  std::optional<uint16_t> to_port;
  std::vector<Flow> flows;
};

int on_flow(const nlmsghdr* nlh, void* data) {
  auto* result = static_cast<DumpResult*>(data);
  Attributes top(CTA_MAX);
  if (mnl_attr_parse(nlh, sizeof(nfgenmsg), collect, &top) != MNL_CB_OK) return MNL_CB_OK;
  Tuple orig, reply;
  if (!read_tuple(top[CTA_TUPLE_ORIG], orig) || !read_tuple(top[CTA_TUPLE_REPLY], reply))
    return MNL_CB_OK;
  // The kernel filtered already; a kernel that ignores the filter sends
  // everything, so check again.
  if (orig.protocol != IPPROTO_UDP || (result->to && orig.destination != *result->to) ||
      (result->to_port && orig.destination_port != *result->to_port)) {
    return MNL_CB_OK;
  }
  Flow flow;
  flow.protocol = orig.protocol;
  flow.source = orig.source;
  flow.destination = orig.destination;
  flow.source_port = orig.source_port;
  flow.destination_port = orig.destination_port;
  flow.reply_source = reply.source;
  if (const nlattr* zone = top[CTA_ZONE]; zone && mnl_attr_validate(zone, MNL_TYPE_U16) == 0) {
    flow.zone = ntohs(mnl_attr_get_u16(zone));
  }
  result->flows.push_back(flow);
  return MNL_CB_OK;
}

}  // namespace

bool sent_to_left_backend(const Flow& flow, const LeftBackends& left) {
  if (flow.protocol != IPPROTO_UDP) return false;
  auto it = left.find(flow.destination);
  return it != left.end() &&
         std::binary_search(it->second.begin(), it->second.end(), flow.reply_source);
}

bool sent_to_left_direct_target(const Flow& flow, const LeftDirectTargets& left) {
  // Not NATed (sent to the task's own address, as a client on this host
  // may): not the port's DNAT's doing.
  if (flow.reply_source == flow.destination) return false;
  auto it = left.find(PublishedPort{flow.protocol, flow.destination_port});
  return it != left.end() &&
         std::binary_search(it->second.begin(), it->second.end(), flow.reply_source);
}

ConntrackSocket::ConntrackSocket() : receive_buffer_(MNL_SOCKET_BUFFER_SIZE) {
  sock_ = mnl_socket_open(NETLINK_NETFILTER);
  if (!sock_) throw_errno(Errc::unavailable, "open conntrack netlink socket", errno);
  if (mnl_socket_bind(sock_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(sock_);
    throw_errno(Errc::unavailable, "bind conntrack netlink socket", err);
  }
  portid_ = mnl_socket_get_portid(sock_);
  seq_ = static_cast<uint32_t>(::time(nullptr));
}

ConntrackSocket::~ConntrackSocket() {
  if (sock_) mnl_socket_close(sock_);
}

void ConntrackSocket::request(const char* what, nlmsghdr* message,
                              int (*callback)(const nlmsghdr*, void*), void* data) {
  if (mnl_socket_sendto(sock_, message, message->nlmsg_len) < 0)
    throw_errno(Errc::internal, what, errno);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_, receive_buffer_.data(), receive_buffer_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::internal, what, errno);
    }
    int ret = mnl_cb_run(receive_buffer_.data(), static_cast<size_t>(n), message->nlmsg_seq,
                         portid_, callback, data);
    if (ret < 0) {
      int err = errno;
      throw Error(err == ENOENT ? Errc::not_found : Errc::internal,
                  std::string(what) + ": " + std::strerror(err));
    }
    if (ret == MNL_CB_STOP) return;
  }
}

std::vector<Flow> ConntrackSocket::udp_flows(std::optional<Ipv4Address> to,
                                             std::optional<uint16_t> to_port) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = put_header(buf.data(), IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq_++);
  put_tuple(nlh, CTA_TUPLE_ORIG, nullptr, to.value_or(Ipv4Address()), IPPROTO_UDP, nullptr,
            to_port ? &*to_port : nullptr);
  nlattr* filter = mnl_attr_nest_start(nlh, CTA_FILTER);
  mnl_attr_put_u32(nlh, CTA_FILTER_ORIG_FLAGS,
                   kFilterProtocolNumber | (to ? kFilterIpDestination : 0) |
                       (to_port ? kFilterProtocolDestinationPort : 0));
  mnl_attr_put_u32(nlh, CTA_FILTER_REPLY_FLAGS, 0);
  mnl_attr_nest_end(nlh, filter);
  DumpResult result{to, to_port, {}};
  request("list conntrack flows", nlh, on_flow, &result);
  return std::move(result.flows);
}

size_t ConntrackSocket::forget(const Left& left) {
  if (left.empty()) return 0;
  size_t deleted = 0;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  // One VIP or one port: the kernel filters by it; more: one dump of all
  // UDP flows.
  std::optional<Ipv4Address> to;
  std::optional<uint16_t> to_port;
  if (left.vips.size() == 1 && left.published.empty()) to = left.vips.begin()->first;
  if (left.published.size() == 1 && left.vips.empty()) to_port = left.published.begin()->first.port;
  for (const Flow& flow : udp_flows(to, to_port)) {
    if (!sent_to_left_backend(flow, left.vips) &&
        !sent_to_left_direct_target(flow, left.published)) {
      continue;
    }
    nlmsghdr* nlh = put_header(buf.data(), IPCTNL_MSG_CT_DELETE, NLM_F_ACK, seq_++);
    put_tuple(nlh, CTA_TUPLE_ORIG, &flow.source, flow.destination, flow.protocol, &flow.source_port,
              &flow.destination_port);
    if (flow.zone) mnl_attr_put_u16(nlh, CTA_ZONE, htons(flow.zone));
    try {
      request("delete conntrack flow", nlh, nullptr, nullptr);
      ++deleted;
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) throw;  // expired meanwhile: nothing to do
    }
  }
  return deleted;
}

}  // namespace swarmnet::lb::conntrack
