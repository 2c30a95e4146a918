#include "lb/ipvs_netlink.hpp"

#include <linux/ip_vs.h>
#include <netinet/in.h>
#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>
#include <utility>

#include "common/error.hpp"
#include "kernel/libnl_util.hpp"
#include "kernel/netlink.hpp"

namespace swarmnet::lb {
namespace {

using kernel::libnl::CbPtr;
using kernel::libnl::MsgPtr;

// Building a message of a few dozen bytes cannot run out of room; a failure
// here is a bug, reported as such.
void check_put(int err) {
  if (err < 0) throw Error(Errc::internal, "IPVS netlink message too small");
}

MsgPtr new_message(int family, uint8_t command, int flags) {
  MsgPtr msg(nlmsg_alloc());
  if (!msg) throw Error(Errc::internal, "out of memory allocating a netlink message");
  if (!genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, flags, command,
                   IPVS_GENL_VERSION)) {
    throw Error(Errc::internal, "IPVS netlink message too small");
  }
  return msg;
}

// The service attributes that identify a fwmark service (AF + mark), and
// with `full` the ones the kernel requires to create or change one.
void put_service(nl_msg* msg, uint32_t fwmark, const IpvsService* full) {
  nlattr* nest = nla_nest_start(msg, IPVS_CMD_ATTR_SERVICE);
  if (!nest) check_put(-1);
  check_put(nla_put_u16(msg, IPVS_SVC_ATTR_AF, AF_INET));
  check_put(nla_put_u32(msg, IPVS_SVC_ATTR_FWMARK, fwmark));
  if (full) {
    check_put(nla_put_string(msg, IPVS_SVC_ATTR_SCHED_NAME, full->scheduler.c_str()));
    ip_vs_flags flags{};
    flags.flags = full->flags;
    flags.mask = ~0u;
    check_put(nla_put(msg, IPVS_SVC_ATTR_FLAGS, sizeof(flags), &flags));
    check_put(nla_put_u32(msg, IPVS_SVC_ATTR_TIMEOUT, 0));  // no persistence
    check_put(nla_put_u32(msg, IPVS_SVC_ATTR_NETMASK, 0xffffffff));
  }
  nla_nest_end(msg, nest);
}

void put_destination(nl_msg* msg, const IpvsDestination& dest, bool full) {
  nlattr* nest = nla_nest_start(msg, IPVS_CMD_ATTR_DEST);
  if (!nest) check_put(-1);
  uint32_t address = dest.address.network_order();
  // The kernel reads up to 16 bytes (union nf_inet_addr); 4 are an IPv4 one.
  check_put(nla_put(msg, IPVS_DEST_ATTR_ADDR, sizeof(address), &address));
  check_put(nla_put_u16(msg, IPVS_DEST_ATTR_PORT, htons(dest.port)));
  check_put(nla_put_u16(msg, IPVS_DEST_ATTR_ADDR_FAMILY, AF_INET));
  if (full) {
    check_put(nla_put_u32(msg, IPVS_DEST_ATTR_FWD_METHOD, dest.forwarding));
    check_put(nla_put_u32(msg, IPVS_DEST_ATTR_WEIGHT, static_cast<uint32_t>(dest.weight)));
    check_put(nla_put_u32(msg, IPVS_DEST_ATTR_U_THRESH, 0));
    check_put(nla_put_u32(msg, IPVS_DEST_ATTR_L_THRESH, 0));
  }
  nla_nest_end(msg, nest);
}

// Sends a request and waits for the kernel's ACK: 0 or a negative libnl code.
int transact(nl_sock* sock, nl_msg* msg) {
  int err = nl_send_auto(sock, msg);
  if (err < 0) return err;
  return nl_wait_for_ack(sock);
}

// Sends a request and hands every reply message's top-level attributes to
// `visit`. Returns 0 or a negative libnl code.
int request(nl_sock* sock, nl_msg* msg, const std::function<void(nlattr**)>& visit) {
  CbPtr cb(nl_cb_alloc(NL_CB_DEFAULT));
  if (!cb) throw Error(Errc::internal, "out of memory allocating a netlink callback");
  struct Context {
    const std::function<void(nlattr**)>* visit;
    std::exception_ptr error;
  } context{&visit, nullptr};
  nl_cb_set(
      cb.get(), NL_CB_VALID, NL_CB_CUSTOM,
      [](nl_msg* reply, void* arg) -> int {
        auto* ctx = static_cast<Context*>(arg);
        nlattr* attrs[IPVS_CMD_ATTR_MAX + 1] = {};
        if (genlmsg_parse(nlmsg_hdr(reply), 0, attrs, IPVS_CMD_ATTR_MAX, nullptr) < 0) {
          return NL_SKIP;
        }
        try {
          (*ctx->visit)(attrs);
        } catch (...) {
          ctx->error = std::current_exception();
          return NL_STOP;
        }
        return NL_OK;
      },
      &context);
  int err = nl_send_auto(sock, msg);
  if (err < 0) return err;
  err = nl_recvmsgs(sock, cb.get());
  if (context.error) std::rethrow_exception(context.error);
  if (err < 0) return err;
  // A dump ends with NLMSG_DONE, already consumed. A plain request's reply
  // is followed by the ACK nl_send_auto asked for, in its own datagram: read
  // it now, or the next request would take it for its own.
  bool dump = nlmsg_hdr(msg)->nlmsg_flags & NLM_F_DUMP;
  return dump ? 0 : nl_wait_for_ack(sock);
}

Ipv4Address address_of(nlattr* attr) {
  if (!attr || nla_len(attr) < 4) return Ipv4Address{};
  uint32_t raw = 0;
  std::memcpy(&raw, nla_data(attr), sizeof(raw));
  return Ipv4Address{ntohl(raw)};
}

}  // namespace

IpvsSocket IpvsSocket::open() {
  nl_sock* sock = nl_socket_alloc();
  if (!sock) throw Error(Errc::internal, "out of memory allocating a netlink socket");
  int err = genl_connect(sock);
  if (err < 0) {
    nl_socket_free(sock);
    kernel::throw_netlink_error(err, "connect a generic netlink socket");
  }
  int family = genl_ctrl_resolve(sock, IPVS_GENL_NAME);
  if (family < 0) {
    nl_socket_free(sock);
    throw Error(Errc::not_found,
                "this kernel has no IPVS (generic netlink family \"IPVS\" not found; "
                "modprobe ip_vs)");
  }
  // Dumps of thousands of services need more than the default 32 KiB.
  nl_socket_set_buffer_size(sock, 1 << 20, 1 << 20);
  return IpvsSocket(sock, family);
}

IpvsSocket::IpvsSocket(IpvsSocket&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)), family_(other.family_) {}

IpvsSocket& IpvsSocket::operator=(IpvsSocket&& other) noexcept {
  if (this != &other) {
    if (sock_) nl_socket_free(sock_);
    sock_ = std::exchange(other.sock_, nullptr);
    family_ = other.family_;
  }
  return *this;
}

IpvsSocket::~IpvsSocket() {
  if (sock_) nl_socket_free(sock_);
}

std::vector<IpvsService> IpvsSocket::fwmark_services() {
  std::vector<IpvsService> services;
  MsgPtr msg = new_message(family_, IPVS_CMD_GET_SERVICE, NLM_F_DUMP);
  int err = request(sock_, msg.get(), [&](nlattr** attrs) {
    if (!attrs[IPVS_CMD_ATTR_SERVICE]) return;
    nlattr* svc[IPVS_SVC_ATTR_MAX + 1] = {};
    if (nla_parse_nested(svc, IPVS_SVC_ATTR_MAX, attrs[IPVS_CMD_ATTR_SERVICE], nullptr) < 0) {
      return;
    }
    if (!svc[IPVS_SVC_ATTR_FWMARK] || !svc[IPVS_SVC_ATTR_AF]) return;
    uint32_t fwmark = nla_get_u32(svc[IPVS_SVC_ATTR_FWMARK]);
    if (fwmark == 0 || nla_get_u16(svc[IPVS_SVC_ATTR_AF]) != AF_INET) return;
    IpvsService service;
    service.fwmark = fwmark;
    if (svc[IPVS_SVC_ATTR_SCHED_NAME]) service.scheduler = nla_get_string(svc[IPVS_SVC_ATTR_SCHED_NAME]);
    if (svc[IPVS_SVC_ATTR_FLAGS] && nla_len(svc[IPVS_SVC_ATTR_FLAGS]) >= 4) {
      ip_vs_flags flags{};
      std::memcpy(&flags, nla_data(svc[IPVS_SVC_ATTR_FLAGS]),
                  std::min<size_t>(sizeof(flags), nla_len(svc[IPVS_SVC_ATTR_FLAGS])));
      // The kernel reports its own HASHED bit too; it is not a setting.
      service.flags = flags.flags & ~static_cast<uint32_t>(IP_VS_SVC_F_HASHED);
    }
    services.push_back(std::move(service));
  });
  if (err < 0) kernel::throw_netlink_error(err, "list IPVS services");
  return services;
}

void IpvsSocket::add_service(const IpvsService& service) {
  MsgPtr msg = new_message(family_, IPVS_CMD_NEW_SERVICE, 0);
  put_service(msg.get(), service.fwmark, &service);
  int err = transact(sock_, msg.get());
  if (err < 0) {
    kernel::throw_netlink_error(err, "add IPVS service fwmark " + std::to_string(service.fwmark) +
                                         " (scheduler " + service.scheduler + ")");
  }
}

void IpvsSocket::update_service(const IpvsService& service) {
  MsgPtr msg = new_message(family_, IPVS_CMD_SET_SERVICE, 0);
  put_service(msg.get(), service.fwmark, &service);
  int err = transact(sock_, msg.get());
  if (err < 0) {
    kernel::throw_netlink_error(err, "change IPVS service fwmark " + std::to_string(service.fwmark));
  }
}

bool IpvsSocket::delete_service(uint32_t fwmark) {
  MsgPtr msg = new_message(family_, IPVS_CMD_DEL_SERVICE, 0);
  put_service(msg.get(), fwmark, nullptr);
  int err = transact(sock_, msg.get());
  // A missing service is ESRCH, which libnl maps to NLE_OBJ_NOTFOUND.
  if (err == -NLE_OBJ_NOTFOUND) return false;
  if (err < 0) kernel::throw_netlink_error(err, "delete IPVS service fwmark " + std::to_string(fwmark));
  return true;
}

std::vector<IpvsDestination> IpvsSocket::destinations(uint32_t fwmark) {
  std::vector<IpvsDestination> dests;
  MsgPtr msg = new_message(family_, IPVS_CMD_GET_DEST, NLM_F_DUMP);
  put_service(msg.get(), fwmark, nullptr);
  int err = request(sock_, msg.get(), [&](nlattr** attrs) {
    if (!attrs[IPVS_CMD_ATTR_DEST]) return;
    nlattr* d[IPVS_DEST_ATTR_MAX + 1] = {};
    if (nla_parse_nested(d, IPVS_DEST_ATTR_MAX, attrs[IPVS_CMD_ATTR_DEST], nullptr) < 0) return;
    if (d[IPVS_DEST_ATTR_ADDR_FAMILY] && nla_get_u16(d[IPVS_DEST_ATTR_ADDR_FAMILY]) != AF_INET) {
      return;
    }
    IpvsDestination dest;
    dest.address = address_of(d[IPVS_DEST_ATTR_ADDR]);
    if (d[IPVS_DEST_ATTR_PORT]) dest.port = ntohs(nla_get_u16(d[IPVS_DEST_ATTR_PORT]));
    if (d[IPVS_DEST_ATTR_FWD_METHOD]) {
      dest.forwarding = nla_get_u32(d[IPVS_DEST_ATTR_FWD_METHOD]) & IP_VS_CONN_F_FWD_MASK;
    }
    if (d[IPVS_DEST_ATTR_WEIGHT]) dest.weight = static_cast<int>(nla_get_u32(d[IPVS_DEST_ATTR_WEIGHT]));
    if (d[IPVS_DEST_ATTR_ACTIVE_CONNS]) dest.active_connections = nla_get_u32(d[IPVS_DEST_ATTR_ACTIVE_CONNS]);
    if (d[IPVS_DEST_ATTR_INACT_CONNS]) dest.inactive_connections = nla_get_u32(d[IPVS_DEST_ATTR_INACT_CONNS]);
    dests.push_back(dest);
  });
  if (err == -NLE_OBJ_NOTFOUND) {
    throw Error(Errc::not_found, "IPVS service fwmark " + std::to_string(fwmark) + " does not exist");
  }
  if (err < 0) kernel::throw_netlink_error(err, "list IPVS destinations of fwmark " + std::to_string(fwmark));
  return dests;
}

void IpvsSocket::add_destination(uint32_t fwmark, const IpvsDestination& destination) {
  MsgPtr msg = new_message(family_, IPVS_CMD_NEW_DEST, 0);
  put_service(msg.get(), fwmark, nullptr);
  put_destination(msg.get(), destination, true);
  int err = transact(sock_, msg.get());
  if (err < 0) {
    kernel::throw_netlink_error(err, "add IPVS destination " + destination.address.str() +
                                         " to fwmark " + std::to_string(fwmark));
  }
}

bool IpvsSocket::delete_destination(uint32_t fwmark, const IpvsDestination& destination) {
  MsgPtr msg = new_message(family_, IPVS_CMD_DEL_DEST, 0);
  put_service(msg.get(), fwmark, nullptr);
  put_destination(msg.get(), destination, false);
  int err = transact(sock_, msg.get());
  if (err == -NLE_OBJ_NOTFOUND) return false;
  if (err < 0) {
    kernel::throw_netlink_error(err, "delete IPVS destination " + destination.address.str() +
                                         " of fwmark " + std::to_string(fwmark));
  }
  return true;
}

IpvsTimeouts IpvsSocket::timeouts() {
  IpvsTimeouts result;
  MsgPtr msg = new_message(family_, IPVS_CMD_GET_CONFIG, 0);
  int err = request(sock_, msg.get(), [&](nlattr** attrs) {
    if (attrs[IPVS_CMD_ATTR_TIMEOUT_TCP]) result.tcp = nla_get_u32(attrs[IPVS_CMD_ATTR_TIMEOUT_TCP]);
    if (attrs[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN]) {
      result.tcp_fin = nla_get_u32(attrs[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN]);
    }
    if (attrs[IPVS_CMD_ATTR_TIMEOUT_UDP]) result.udp = nla_get_u32(attrs[IPVS_CMD_ATTR_TIMEOUT_UDP]);
  });
  if (err < 0) kernel::throw_netlink_error(err, "read IPVS timeouts");
  return result;
}

void IpvsSocket::set_timeouts(const IpvsTimeouts& timeouts) {
  MsgPtr msg = new_message(family_, IPVS_CMD_SET_CONFIG, 0);
  check_put(nla_put_u32(msg.get(), IPVS_CMD_ATTR_TIMEOUT_TCP, timeouts.tcp));
  check_put(nla_put_u32(msg.get(), IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, timeouts.tcp_fin));
  check_put(nla_put_u32(msg.get(), IPVS_CMD_ATTR_TIMEOUT_UDP, timeouts.udp));
  int err = transact(sock_, msg.get());
  if (err < 0) kernel::throw_netlink_error(err, "set IPVS timeouts");
}

}  // namespace swarmnet::lb
