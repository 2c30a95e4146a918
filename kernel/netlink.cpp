#include "kernel/netlink.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/error.hpp"
#include "common/random.hpp"
#include "kernel/libnl_util.hpp"

namespace swarmnet::kernel {
namespace {

using namespace libnl;

// How many times a dump is restarted after the kernel flagged it as
// inconsistent (a change raced with it) before giving up.
constexpr int kDumpAttempts = 5;
constexpr size_t kReceiveBuffer = 64 * 1024;

std::string nl_message(int err) {
  return nl_geterror(err < 0 ? -err : err);
}

Errc errc_for(int err) {
  switch (err < 0 ? -err : err) {
    case NLE_EXIST:
      return Errc::conflict;
    case NLE_NODEV:
    case NLE_OBJ_NOTFOUND:
      return Errc::not_found;
    case NLE_INVAL:
    case NLE_RANGE:
      return Errc::invalid_argument;
    case NLE_BUSY:
      return Errc::conflict;
    default:
      return Errc::internal;
  }
}

[[noreturn]] void throw_nl(int err, const std::string& what) {
  throw Error(errc_for(err), what + ": " + nl_message(err));
}

LinkPtr alloc_link() {
  LinkPtr link(rtnl_link_alloc());
  if (!link) throw Error(Errc::internal, "out of memory allocating a link object");
  return link;
}

NlAddrPtr make_ipv4(Ipv4Address address, unsigned prefix_length) {
  uint32_t raw = address.network_order();
  NlAddrPtr addr(nl_addr_build(AF_INET, &raw, sizeof(raw)));
  if (!addr) throw Error(Errc::internal, "out of memory allocating an address");
  nl_addr_set_prefixlen(addr.get(), static_cast<int>(prefix_length));
  return addr;
}

Ipv4Address to_ipv4(nl_addr* addr) {
  // The kernel omits RTA_DST for the default route; libnl then hands back a
  // zero-length address.
  if (!addr || nl_addr_get_family(addr) != AF_INET || nl_addr_get_len(addr) != 4) {
    return Ipv4Address{};
  }
  uint32_t raw = 0;
  std::memcpy(&raw, nl_addr_get_binary_addr(addr), sizeof(raw));
  return Ipv4Address(ntohl(raw));
}

NlAddrPtr parse_mac(const std::string& text) {
  unsigned char bytes[6];
  char tail = 0;
  if (std::sscanf(text.c_str(), "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx%c", &bytes[0], &bytes[1],
                  &bytes[2], &bytes[3], &bytes[4], &bytes[5], &tail) != 6 ||
      text.size() != 17) {
    throw Error(Errc::invalid_argument, "invalid MAC address \"" + text + "\"");
  }
  NlAddrPtr addr(nl_addr_build(AF_LLC, bytes, sizeof(bytes)));
  if (!addr) throw Error(Errc::internal, "out of memory allocating a MAC address");
  return addr;
}

// A random locally administered unicast MAC.
std::string random_local_mac() {
  std::string hex = random_hex(6);
  const unsigned first = (std::stoul(hex.substr(0, 2), nullptr, 16) & 0xfc) | 0x02;
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%s:%s:%s:%s:%s", first, hex.substr(2, 2).c_str(),
                hex.substr(4, 2).c_str(), hex.substr(6, 2).c_str(), hex.substr(8, 2).c_str(),
                hex.substr(10, 2).c_str());
  return text;
}

std::string format_mac(nl_addr* addr) {
  if (!addr || nl_addr_get_len(addr) == 0) return "";
  const auto* bytes = static_cast<const unsigned char*>(nl_addr_get_binary_addr(addr));
  std::string out;
  char buf[4];
  for (unsigned i = 0; i < nl_addr_get_len(addr); ++i) {
    std::snprintf(buf, sizeof(buf), i ? ":%02x" : "%02x", bytes[i]);
    out += buf;
  }
  return out;
}

LinkInfo to_info(rtnl_link* link) {
  LinkInfo info;
  info.index = rtnl_link_get_ifindex(link);
  if (const char* name = rtnl_link_get_name(link)) info.name = name;
  if (const char* kind = rtnl_link_get_type(link)) info.kind = kind;
  info.mac = format_mac(rtnl_link_get_addr(link));
  info.mtu = rtnl_link_get_mtu(link);
  info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
  info.master_index = rtnl_link_get_master(link);
  return info;
}

void collect_object(nl_object* obj, void* arg) {
  nl_object_get(obj);
  static_cast<std::vector<ObjectPtr>*>(arg)->emplace_back(obj);
}

int parse_valid(nl_msg* msg, void* arg) {
  // Messages of types libnl cannot parse are skipped, not fatal.
  nl_msg_parse(msg, collect_object, arg);
  return NL_OK;
}

// One RTM_GET* dump with a family-specific header, parsed into libnl objects.
// Not through a cache: caches dump all families and retry forever on
// NLE_DUMP_INTR.
std::vector<ObjectPtr> dump(nl_sock* sock, int type, const void* header, size_t header_len,
                            const std::string& what) {
  int err = 0;
  for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
    std::vector<ObjectPtr> objects;
    // A private copy of the socket's callbacks, so the dump's parser does
    // not stay installed for later requests on this socket.
    nl_cb* base = nl_socket_get_cb(sock);  // takes a reference
    CbPtr cb(nl_cb_clone(base));
    nl_cb_put(base);
    if (!cb) throw Error(Errc::internal, what + ": out of memory");
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, parse_valid, &objects);
    err = nl_send_simple(sock, type, NLM_F_DUMP, const_cast<void*>(header), header_len);
    if (err < 0) throw_nl(err, what);
    err = nl_recvmsgs(sock, cb.get());
    if (err >= 0) return objects;
    if (err != -NLE_DUMP_INTR) throw_nl(err, what);
  }
  throw Error(Errc::unavailable, what + ": interrupted by concurrent changes " +
                                     std::to_string(kDumpAttempts) + " times: " + nl_message(err));
}

}  // namespace

void throw_netlink_error(int err, const std::string& what) {
  throw_nl(err, what);
}

NetlinkSocket NetlinkSocket::open() {
  SockPtr sock(nl_socket_alloc());
  if (!sock) throw Error(Errc::internal, "out of memory allocating a netlink socket");
  int err = nl_connect(sock.get(), NETLINK_ROUTE);
  if (err < 0) throw_nl(err, "connect rtnetlink socket");
  // libnl peeks at every message before reading it, two syscalls per reply.
  // Kernel replies and dump batches stay under 32 KiB, so a 64 KiB buffer
  // read once is enough; a longer message fails with NLE_MSG_TRUNC rather
  // than being cut silently.
  nl_socket_disable_msg_peek(sock.get());
  err = nl_socket_set_msg_buf_size(sock.get(), kReceiveBuffer);
  if (err < 0) throw_nl(err, "size rtnetlink receive buffer");
  return NetlinkSocket(sock.release());
}

NetlinkSocket NetlinkSocket::open_in(const Netns& ns) {
  // The socket keeps the namespace it was created in, so the thread only
  // needs to be inside for the socket() call.
  NetnsGuard guard(ns);
  return open();
}

NetlinkSocket::NetlinkSocket(NetlinkSocket&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)) {}

NetlinkSocket& NetlinkSocket::operator=(NetlinkSocket&& other) noexcept {
  if (this != &other) {
    if (sock_) nl_socket_free(sock_);
    sock_ = std::exchange(other.sock_, nullptr);
  }
  return *this;
}

NetlinkSocket::~NetlinkSocket() {
  if (sock_) nl_socket_free(sock_);
}

namespace {

std::optional<LinkInfo> get_kernel(nl_sock* sock, int index, const char* name,
                                   const std::string& what) {
  rtnl_link* raw = nullptr;
  int err = rtnl_link_get_kernel(sock, index, name, &raw);
  LinkPtr link(raw);
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return std::nullopt;
  if (err < 0) throw_nl(err, "look up interface " + what);
  return to_info(link.get());
}

}  // namespace

std::optional<LinkInfo> NetlinkSocket::find_link(const std::string& name) {
  check_name(name);
  return get_kernel(sock_, 0, name.c_str(), name);
}

std::optional<LinkInfo> NetlinkSocket::find_link(int index) {
  if (index <= 0) return std::nullopt;
  // Not "#" + to_string(): GCC 12 at -O3 warns (-Wrestrict, a known false
  // positive) about that operator+.
  std::string what = std::to_string(index);
  what.insert(what.begin(), '#');
  return get_kernel(sock_, index, nullptr, what);
}

std::vector<LinkInfo> NetlinkSocket::links() {
  ifinfomsg header{};
  header.ifi_family = AF_UNSPEC;
  std::vector<LinkInfo> out;
  for (auto& obj : dump(sock_, RTM_GETLINK, &header, sizeof(header), "list links")) {
    out.push_back(to_info(reinterpret_cast<rtnl_link*>(obj.get())));
  }
  return out;
}

LinkInfo NetlinkSocket::get_link(const std::string& name) {
  auto link = find_link(name);
  if (!link) throw Error(Errc::not_found, "interface " + name + " does not exist");
  return *link;
}

int NetlinkSocket::link_index(const std::string& name) {
  return get_link(name).index;
}

void NetlinkSocket::create_veth(const std::string& name, const std::string& peer_name,
                                const Netns& peer_ns, unsigned mtu, const std::string& peer_mac) {
  check_name(name);
  check_name(peer_name);
  NlAddrPtr mac;
  if (!peer_mac.empty()) mac = parse_mac(peer_mac);

  LinkPtr link(rtnl_link_veth_alloc());
  if (!link) throw Error(Errc::internal, "out of memory allocating a veth");
  LinkPtr peer(rtnl_link_veth_get_peer(link.get()));
  rtnl_link_set_name(link.get(), name.c_str());
  rtnl_link_set_name(peer.get(), peer_name.c_str());
  if (mtu) {
    rtnl_link_set_mtu(link.get(), mtu);
    rtnl_link_set_mtu(peer.get(), mtu);
  }
  if (mac) rtnl_link_set_addr(peer.get(), mac.get());
  // The peer is born in the target namespace under its final name: no
  // temporary name, no move, no rename, and nothing to undo on failure.
  rtnl_link_set_ns_fd(peer.get(), peer_ns.fd());

  // NLM_F_EXCL: without it an existing `name` would be modified in place.
  int err = rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err == -NLE_EXIST) {
    // One errno for both ends; ask which one clashed (error path only).
    if (find_link(name)) throw Error(Errc::conflict, "interface " + name + " already exists");
    throw Error(Errc::conflict, "interface " + peer_name + " already exists in network namespace " +
                                    peer_ns.path());
  }
  if (err < 0) throw_nl(err, "create veth " + name + " (peer " + peer_name + ")");
}

bool NetlinkSocket::ensure_bridge(const std::string& name, unsigned mtu) {
  check_name(name);
  LinkPtr link = alloc_link();
  if (rtnl_link_set_type(link.get(), "bridge") < 0) {
    throw Error(Errc::internal, "libnl has no bridge support");
  }
  rtnl_link_set_name(link.get(), name.c_str());
  if (mtu) rtnl_link_set_mtu(link.get(), mtu);
  // An address of its own, given at creation (the kernel then keeps it).
  // Without one a bridge takes the lowest of its ports' addresses, so the
  // gateway's MAC changed whenever a container came or went, and the other
  // containers' ARP entries for the gateway went stale: gateway, DNS and
  // VIPs unreachable until they expired.
  NlAddrPtr mac = parse_mac(random_local_mac());
  rtnl_link_set_addr(link.get(), mac.get());
  rtnl_link_set_flags(link.get(), IFF_UP);
  int err = rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err == 0) return true;
  if (err != -NLE_EXIST) throw_nl(err, "create bridge " + name);

  auto existing = find_link(name);
  if (!existing) throw Error(Errc::conflict, "bridge " + name + " vanished while being created");
  if (existing->kind != "bridge") {
    throw Error(Errc::conflict, "interface " + name +
                                    " already exists and is not a bridge (kind \"" +
                                    existing->kind + "\")");
  }
  if ((mtu && existing->mtu != mtu) || !existing->up) {
    LinkPtr change = alloc_link();
    rtnl_link_set_ifindex(change.get(), existing->index);
    if (mtu) rtnl_link_set_mtu(change.get(), mtu);
    rtnl_link_set_flags(change.get(), IFF_UP);
    err = rtnl_link_change(sock_, change.get(), change.get(), 0);
    if (err < 0) throw_nl(err, "configure bridge " + name);
  }
  return false;
}

bool NetlinkSocket::delete_link(const std::string& name) {
  check_name(name);
  LinkPtr link = alloc_link();
  rtnl_link_set_name(link.get(), name.c_str());
  int err = rtnl_link_delete(sock_, link.get());
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return false;
  if (err < 0) throw_nl(err, "delete interface " + name);
  return true;
}

namespace {

// Changes a link found by name (ifindex 0 + IFLA_IFNAME): one round trip,
// and ENODEV when it is missing.
void change_link(nl_sock* sock, rtnl_link* change, const std::string& name,
                 const std::string& what) {
  rtnl_link_set_name(change, name.c_str());
  int err = rtnl_link_change(sock, change, change, 0);
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) {
    throw Error(Errc::not_found, what + ": interface " + name + " does not exist");
  }
  if (err < 0) throw_nl(err, what);
}

}  // namespace

void NetlinkSocket::set_up(const std::string& name) {
  check_name(name);
  LinkPtr change = alloc_link();
  rtnl_link_set_flags(change.get(), IFF_UP);
  change_link(sock_, change.get(), name, "bring up " + name);
}

void NetlinkSocket::set_down(const std::string& name) {
  check_name(name);
  LinkPtr change = alloc_link();
  rtnl_link_unset_flags(change.get(), IFF_UP);
  change_link(sock_, change.get(), name, "bring down " + name);
}

void NetlinkSocket::set_mtu(const std::string& name, unsigned mtu) {
  check_name(name);
  LinkPtr change = alloc_link();
  rtnl_link_set_mtu(change.get(), mtu);
  change_link(sock_, change.get(), name, "set mtu " + std::to_string(mtu) + " on " + name);
}

void NetlinkSocket::set_master(const std::string& name, const std::string& master) {
  check_name(name);
  auto bridge = find_link(master);
  if (!bridge) {
    throw Error(Errc::not_found, "enslave " + name + ": master " + master + " does not exist");
  }
  set_master(name, bridge->index);
}

void NetlinkSocket::set_master(const std::string& name, int master_index) {
  check_name(name);
  LinkPtr change = alloc_link();
  rtnl_link_set_master(change.get(), master_index);
  change_link(sock_, change.get(), name,
              "enslave " + name + " to #" + std::to_string(master_index));
}

namespace {

int visit_raw(nl_msg* msg, void* arg) {
  (*static_cast<const std::function<void(nlmsghdr*)>*>(arg))(nlmsg_hdr(msg));
  return NL_OK;
}

}  // namespace

void NetlinkSocket::dump_messages(const std::function<nl_msg*()>& build,
                                  const std::function<void(nlmsghdr*)>& visit,
                                  const std::function<void()>& restart, const std::string& what) {
  int err = 0;
  for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
    if (attempt > 0) restart();
    std::unique_ptr<nl_msg, Deleter<nl_msg, nlmsg_free>> request(build());
    if (!request) throw Error(Errc::internal, what + ": out of memory");
    nl_cb* base = nl_socket_get_cb(sock_);  // takes a reference
    CbPtr cb(nl_cb_clone(base));
    nl_cb_put(base);
    if (!cb) throw Error(Errc::internal, what + ": out of memory");
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, visit_raw,
              const_cast<void*>(static_cast<const void*>(&visit)));
    err = nl_send_auto(sock_, request.get());
    if (err < 0) throw_nl(err, what);
    err = nl_recvmsgs(sock_, cb.get());
    if (err >= 0) return;
    if (err != -NLE_DUMP_INTR) throw_nl(err, what);
  }
  throw Error(Errc::unavailable, what + ": interrupted by concurrent changes " +
                                     std::to_string(kDumpAttempts) + " times: " + nl_message(err));
}

std::vector<Ipv4Prefix> NetlinkSocket::addresses(const std::string& link) {
  int index = link_index(link);
  ifaddrmsg header{};
  header.ifa_family = AF_INET;
  header.ifa_index = static_cast<unsigned>(index);
  std::vector<Ipv4Prefix> out;
  for (auto& obj : dump(sock_, RTM_GETADDR, &header, sizeof(header), "list addresses of " + link)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj.get());
    if (rtnl_addr_get_family(addr) != AF_INET || rtnl_addr_get_ifindex(addr) != index) continue;
    out.emplace_back(to_ipv4(rtnl_addr_get_local(addr)),
                     static_cast<unsigned>(rtnl_addr_get_prefixlen(addr)));
  }
  return out;
}

namespace {

AddrPtr make_addr(int index, const Ipv4Prefix& address) {
  AddrPtr addr(rtnl_addr_alloc());
  if (!addr) throw Error(Errc::internal, "out of memory allocating an address object");
  rtnl_addr_set_ifindex(addr.get(), index);
  rtnl_addr_set_family(addr.get(), AF_INET);
  NlAddrPtr local = make_ipv4(address.address(), address.length());
  int err = rtnl_addr_set_local(addr.get(), local.get());
  if (err < 0) throw_nl(err, "address " + address.str());
  rtnl_addr_set_prefixlen(addr.get(), static_cast<int>(address.length()));
  return addr;
}

}  // namespace

void NetlinkSocket::add_address(const std::string& link, const Ipv4Prefix& address) {
  int index = link_index(link);
  AddrPtr addr = make_addr(index, address);
  // Same default as `ip addr add ... brd +` and the reference plugins.
  if (address.length() < 31) {
    NlAddrPtr brd = make_ipv4(address.broadcast(), 32);
    rtnl_addr_set_broadcast(addr.get(), brd.get());
  }
  // Without NLM_F_EXCL the kernel still answers EEXIST, but only when this
  // link already has exactly this address and prefix length: that is the
  // idempotent case.
  int err = rtnl_addr_add(sock_, addr.get(), NLM_F_CREATE);
  if (err == -NLE_EXIST) return;
  if (err < 0) throw_nl(err, "add address " + address.str() + " to " + link);
}

bool NetlinkSocket::remove_address(const std::string& link, const Ipv4Prefix& address) {
  int index = link_index(link);
  AddrPtr addr = make_addr(index, address);
  int err = rtnl_addr_delete(sock_, addr.get(), 0);
  if (err == -NLE_NOADDR || err == -NLE_OBJ_NOTFOUND) return false;
  if (err < 0) throw_nl(err, "remove address " + address.str() + " from " + link);
  return true;
}

std::vector<RouteInfo> NetlinkSocket::routes() {
  rtmsg header{};
  header.rtm_family = AF_INET;
  header.rtm_table = RT_TABLE_MAIN;
  std::vector<RouteInfo> out;
  for (auto& obj : dump(sock_, RTM_GETROUTE, &header, sizeof(header), "list routes")) {
    auto* route = reinterpret_cast<rtnl_route*>(obj.get());
    // Unicast only: local/broadcast entries live in other tables anyway, and
    // blackhole or unreachable routes have no nexthop to describe.
    if (rtnl_route_get_family(route) != AF_INET || rtnl_route_get_table(route) != RT_TABLE_MAIN ||
        rtnl_route_get_type(route) != RTN_UNICAST) {
      continue;
    }
    nl_addr* dst = rtnl_route_get_dst(route);
    RouteInfo info;
    info.destination =
        Ipv4Prefix(to_ipv4(dst), dst ? static_cast<unsigned>(nl_addr_get_prefixlen(dst)) : 0);
    if (rtnl_route_get_nnexthops(route) > 0) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(route, 0);
      info.oif_index = rtnl_route_nh_get_ifindex(nh);
      if (nl_addr* gw = rtnl_route_nh_get_gateway(nh)) info.gateway = to_ipv4(gw);
    }
    out.push_back(info);
  }
  return out;
}

namespace {
// A unicast route object of `table`: to `destination`, through link `index`
// (via `gateway` when given; with index 0, no nexthop: for deletion).
RoutePtr route_object(const Ipv4Prefix& destination, std::optional<Ipv4Address> gateway, int index,
                      const std::string& what, uint32_t table = RT_TABLE_MAIN) {
  RoutePtr route(rtnl_route_alloc());
  if (!route) throw Error(Errc::internal, what + ": out of memory");
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), table);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  NlAddrPtr dst = make_ipv4(destination.network(), destination.length());
  int err = rtnl_route_set_dst(route.get(), dst.get());
  if (err < 0) throw_nl(err, what);
  if (index == 0) return route;
  // The route owns the nexthop once added.
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!nh) throw Error(Errc::internal, what + ": out of memory");
  rtnl_route_nh_set_ifindex(nh, index);
  if (gateway) {
    NlAddrPtr gw = make_ipv4(*gateway, 32);
    rtnl_route_nh_set_gateway(nh, gw.get());
  }
  rtnl_route_add_nexthop(route.get(), nh);
  return route;
}
}  // namespace

void NetlinkSocket::replace_route(const Ipv4Prefix& destination, std::optional<Ipv4Address> gateway,
                                  const std::string& link, uint32_t table) {
  const std::string what = "replace route " + destination.str() +
                           (gateway ? " via " + gateway->str() : std::string()) + " dev " + link +
                           (table == RT_TABLE_MAIN ? std::string() : " table " + std::to_string(table));
  RoutePtr route = route_object(destination, gateway, link_index(link), what, table);
  int err = rtnl_route_add(sock_, route.get(), NLM_F_CREATE | NLM_F_REPLACE);
  if (err < 0) throw_nl(err, what);
}

bool NetlinkSocket::delete_route(const Ipv4Prefix& destination, uint32_t table) {
  const std::string what = "delete route " + destination.str() +
                           (table == RT_TABLE_MAIN ? std::string() : " table " + std::to_string(table));
  RoutePtr route = route_object(destination, std::nullopt, 0, what, table);
  int err = rtnl_route_delete(sock_, route.get(), 0);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR) return false;
  if (err < 0) throw_nl(err, what);
  return true;
}

namespace {
RulePtr mark_rule(uint32_t mark, uint32_t table, uint32_t priority, const std::string& what) {
  RulePtr rule(rtnl_rule_alloc());
  if (!rule) throw Error(Errc::internal, what + ": out of memory");
  rtnl_rule_set_family(rule.get(), AF_INET);
  rtnl_rule_set_mark(rule.get(), mark);
  rtnl_rule_set_mask(rule.get(), 0xffffffff);
  rtnl_rule_set_table(rule.get(), table);
  rtnl_rule_set_prio(rule.get(), priority);
  rtnl_rule_set_action(rule.get(), FR_ACT_TO_TBL);
  return rule;
}

std::string mark_rule_text(uint32_t mark, uint32_t table, uint32_t priority) {
  char hex[16];
  std::snprintf(hex, sizeof(hex), "0x%x", mark);
  return std::string("rule pref ") + std::to_string(priority) + " fwmark " + hex + " lookup " + std::to_string(table);
}
}  // namespace

void NetlinkSocket::add_mark_rule(uint32_t mark, uint32_t table, uint32_t priority) {
  const std::string what = "add " + mark_rule_text(mark, table, priority);
  RulePtr rule = mark_rule(mark, table, priority, what);
  // NLM_F_EXCL: the kernel then refuses a duplicate (EEXIST) instead of
  // adding a second copy of the rule.
  int err = rtnl_rule_add(sock_, rule.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0 && err != -NLE_EXIST) throw_nl(err, what);
}

bool NetlinkSocket::delete_mark_rule(uint32_t mark, uint32_t table, uint32_t priority) {
  const std::string what = "delete " + mark_rule_text(mark, table, priority);
  RulePtr rule = mark_rule(mark, table, priority, what);
  int err = rtnl_rule_delete(sock_, rule.get(), 0);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR) return false;
  if (err < 0) throw_nl(err, what);
  return true;
}

void NetlinkSocket::add_route(const Ipv4Prefix& destination, std::optional<Ipv4Address> gateway,
                              const std::string& link) {
  const std::string what = "add route " + destination.str() +
                           (gateway ? " via " + gateway->str() : std::string()) + " dev " + link;
  int index = link_index(link);
  RoutePtr route = route_object(destination, gateway, index, what);

  // NLM_F_EXCL makes any route for this destination (same metric) an
  // EEXIST, instead of silently adding a second nexthop beside it; then we
  // look whether the existing one is the one asked for.
  int err = rtnl_route_add(sock_, route.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err == 0) return;
  if (err != -NLE_EXIST) throw_nl(err, what);
  Ipv4Prefix wanted(destination.network(), destination.length());
  for (const auto& existing : routes()) {
    if (existing.destination == wanted && existing.oif_index == index &&
        existing.gateway == gateway) {
      return;
    }
  }
  throw Error(Errc::conflict, what + ": a different route to " + wanted.str() + " exists");
}

namespace {

std::string sysctl_path(const std::string& key) {
  if (key.empty() || key.front() == '/' || key.find("..") != std::string::npos) {
    throw Error(Errc::invalid_argument, "invalid sysctl key \"" + key + "\"");
  }
  return "/proc/sys/" + key;
}

}  // namespace

void write_sysctl(const std::string& key, const std::string& value) {
  const std::string path = sysctl_path(key);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw Error(Errc::not_found, "sysctl " + key + " does not exist");
    throw_errno(Errc::internal, "open sysctl " + key, err);
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n < 0) {
    throw_errno(err == EINVAL ? Errc::invalid_argument : Errc::internal,
                "write \"" + value + "\" to sysctl " + key, err);
  }
  if (static_cast<size_t>(n) != value.size()) {
    throw Error(Errc::internal, "short write to sysctl " + key);
  }
}

std::string read_sysctl(const std::string& key) {
  const std::string path = sysctl_path(key);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw Error(Errc::not_found, "sysctl " + key + " does not exist");
    throw_errno(Errc::internal, "open sysctl " + key, err);
  }
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      ::close(fd);
      throw_errno(Errc::internal, "read sysctl " + key, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace swarmnet::kernel
