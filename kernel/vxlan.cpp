#include "kernel/vxlan.hpp"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/socket.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/error.hpp"
#include "kernel/libnl_util.hpp"

namespace swarmnet::kernel {
namespace {

using namespace libnl;

constexpr uint32_t kMaxVni = (1u << 24) - 1;
using Mac = std::array<unsigned char, 6>;

Mac parse_mac(const std::string& text) {
  Mac bytes{};
  char tail = 0;
  if (text.size() != 17 ||
      std::sscanf(text.c_str(), "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx%c", &bytes[0], &bytes[1],
                  &bytes[2], &bytes[3], &bytes[4], &bytes[5], &tail) != 6) {
    throw Error(Errc::invalid_argument, "invalid MAC address \"" + text + "\"");
  }
  return bytes;
}

std::string format_mac(const void* data) {
  const auto* b = static_cast<const unsigned char*>(data);
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                b[5]);
  return buf;
}

MsgPtr alloc_msg(int type, int flags) {
  MsgPtr msg(nlmsg_alloc_simple(type, flags));
  if (!msg) throw Error(Errc::internal, "out of memory allocating a netlink message");
  return msg;
}

// Appends to a message sized by libnl's default page; our requests are a
// few dozen bytes, so a failure here is a bug, not a condition to handle.
void put(int err, const std::string& what) {
  if (err < 0) throw Error(Errc::internal, what + ": netlink message too small");
}

// Sends a request and waits for the kernel's ACK: one round trip, and the
// kernel's answer (0 or a negative libnl code).
int transact(nl_sock* sock, nl_msg* msg) {
  int err = nl_send_auto(sock, msg);
  if (err < 0) return err;
  return nl_wait_for_ack(sock);
}

// ---- links ---------------------------------------------------------------

template <typename T>
std::optional<T> attr_value(nlattr* attr) {
  if (!attr || nla_len(attr) < static_cast<int>(sizeof(T))) return std::nullopt;
  T value;
  std::memcpy(&value, nla_data(attr), sizeof(T));
  return value;
}

struct RawLink {
  std::string kind;
  VxlanInfo info;
  bool has_default_remote = false;  // IFLA_VXLAN_GROUP set: floods to it
};

// Parses an RTM_NEWLINK reply. libnl's link object covers the VXLAN
// attributes but not the bridge-port ones (IFLA_INFO_SLAVE_DATA), so the
// whole message is read here, once.
void parse_link(nlmsghdr* hdr, RawLink& out) {
  if (hdr->nlmsg_type != RTM_NEWLINK) return;
  nlattr* tb[IFLA_MAX + 1] = {};
  if (nlmsg_parse(hdr, sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0) return;
  const auto* ifi = static_cast<const ifinfomsg*>(nlmsg_data(hdr));
  LinkInfo& link = out.info.link;
  link.index = ifi->ifi_index;
  link.up = (ifi->ifi_flags & IFF_UP) != 0;
  if (tb[IFLA_IFNAME]) link.name = nla_get_string(tb[IFLA_IFNAME]);
  if (tb[IFLA_ADDRESS] && nla_len(tb[IFLA_ADDRESS]) == 6)
    link.mac = format_mac(nla_data(tb[IFLA_ADDRESS]));
  link.mtu = attr_value<uint32_t>(tb[IFLA_MTU]).value_or(0);
  link.master_index = static_cast<int>(attr_value<uint32_t>(tb[IFLA_MASTER]).value_or(0));
  if (!tb[IFLA_LINKINFO]) return;

  nlattr* info[IFLA_INFO_MAX + 1] = {};
  if (nla_parse_nested(info, IFLA_INFO_MAX, tb[IFLA_LINKINFO], nullptr) < 0) return;
  if (info[IFLA_INFO_KIND]) out.kind = nla_get_string(info[IFLA_INFO_KIND]);
  link.kind = out.kind;
  VxlanInfo& vx = out.info;
  if (out.kind == "vxlan" && info[IFLA_INFO_DATA]) {
    nlattr* v[IFLA_VXLAN_MAX + 1] = {};
    if (nla_parse_nested(v, IFLA_VXLAN_MAX, info[IFLA_INFO_DATA], nullptr) == 0) {
      vx.vni = attr_value<uint32_t>(v[IFLA_VXLAN_ID]).value_or(0);
      vx.port = ntohs(attr_value<uint16_t>(v[IFLA_VXLAN_PORT]).value_or(0));
      if (auto local = attr_value<uint32_t>(v[IFLA_VXLAN_LOCAL]); local && *local) {
        vx.local = Ipv4Address(ntohl(*local));
      }
      auto group = attr_value<uint32_t>(v[IFLA_VXLAN_GROUP]);
      out.has_default_remote = (group && *group) || v[IFLA_VXLAN_GROUP6] != nullptr;
      vx.underlay_index = static_cast<int>(attr_value<uint32_t>(v[IFLA_VXLAN_LINK]).value_or(0));
      vx.learning = attr_value<uint8_t>(v[IFLA_VXLAN_LEARNING]).value_or(0) != 0;
      vx.proxy = attr_value<uint8_t>(v[IFLA_VXLAN_PROXY]).value_or(0) != 0;
      vx.l2miss = attr_value<uint8_t>(v[IFLA_VXLAN_L2MISS]).value_or(0) != 0;
      vx.l3miss = attr_value<uint8_t>(v[IFLA_VXLAN_L3MISS]).value_or(0) != 0;
      if (auto range = attr_value<ifla_vxlan_port_range>(v[IFLA_VXLAN_PORT_RANGE])) {
        vx.source_port_min = ntohs(range->low);
        vx.source_port_max = ntohs(range->high);
      }
    }
  }
  if (info[IFLA_INFO_SLAVE_KIND] && info[IFLA_INFO_SLAVE_DATA] &&
      std::strcmp(nla_get_string(info[IFLA_INFO_SLAVE_KIND]), "bridge") == 0) {
    nlattr* p[IFLA_BRPORT_MAX + 1] = {};
    if (nla_parse_nested(p, IFLA_BRPORT_MAX, info[IFLA_INFO_SLAVE_DATA], nullptr) == 0) {
      vx.port_learning = attr_value<uint8_t>(p[IFLA_BRPORT_LEARNING]).value_or(0) != 0;
      vx.port_neigh_suppress = attr_value<uint8_t>(p[IFLA_BRPORT_NEIGH_SUPPRESS]).value_or(0) != 0;
    }
  }
}

int parse_link_cb(nl_msg* msg, void* arg) {
  auto* out = static_cast<std::optional<RawLink>*>(arg);
  out->emplace();
  parse_link(nlmsg_hdr(msg), **out);
  return NL_OK;
}

// One RTM_GETLINK by name: nullopt if there is no such link.
std::optional<RawLink> get_raw_link(nl_sock* sock, const std::string& name) {
  const std::string what = "look up interface " + name;
  MsgPtr msg = alloc_msg(RTM_GETLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  put(nlmsg_append(msg.get(), &ifi, sizeof(ifi), NLMSG_ALIGNTO), what);
  put(nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()), what);

  std::optional<RawLink> out;
  nl_cb* base = nl_socket_get_cb(sock);  // takes a reference
  CbPtr cb(nl_cb_clone(base));
  nl_cb_put(base);
  if (!cb) throw Error(Errc::internal, what + ": out of memory");
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, parse_link_cb, &out);
  int err = nl_send_auto(sock, msg.get());
  if (err < 0) throw_netlink_error(err, what);
  err = nl_recvmsgs(sock, cb.get());
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return std::nullopt;
  if (err < 0) throw_netlink_error(err, what);
  // The reply came first; the ACK that nl_send_auto asked for follows and
  // must be consumed, or the next request on this socket would read it.
  err = nl_wait_for_ack(sock);
  if (err < 0) throw_netlink_error(err, what);
  if (!out) throw Error(Errc::internal, what + ": no reply");
  return out;
}

std::optional<VxlanInfo> find_vxlan_raw(nl_sock* sock, const std::string& name) {
  auto raw = get_raw_link(sock, name);
  if (!raw) return std::nullopt;
  if (raw->kind != "vxlan") {
    throw Error(Errc::conflict, "interface " + name + " exists and is not a vxlan device (kind \"" +
                                    raw->kind + "\")");
  }
  return raw->info;
}

// Why an existing device cannot serve `config`; "" when it can.
std::string mismatch(const RawLink& raw, const VxlanConfig& config, int underlay_index) {
  const VxlanInfo& vx = raw.info;
  auto num = [](auto v) { return std::to_string(v); };
  if (vx.vni != config.vni) return "VNI " + num(vx.vni) + " (wanted " + num(config.vni) + ")";
  if (vx.port != config.port) {
    return "UDP port " + num(vx.port) + " (wanted " + num(config.port) + ")";
  }
  std::optional<Ipv4Address> local;
  if (config.local != Ipv4Address{}) local = config.local;
  if (vx.local != local) {
    return "local address " + (vx.local ? vx.local->str() : std::string("unset")) + " (wanted " +
           (local ? local->str() : std::string("unset")) + ")";
  }
  if (vx.underlay_index != underlay_index) {
    return "underlay device #" + num(vx.underlay_index) + " (wanted " +
           (config.underlay_device.empty() ? std::string("none") : config.underlay_device) + ")";
  }
  if (config.source_port_min &&
      (vx.source_port_min != config.source_port_min || vx.source_port_max != config.source_port_max)) {
    return "source ports " + num(vx.source_port_min) + "-" + num(vx.source_port_max) + " (wanted " +
           num(config.source_port_min) + "-" + num(config.source_port_max) + ")";
  }
  if (vx.learning) return "learning on";
  if (!vx.proxy) return "proxy off";
  if (raw.has_default_remote) return "a default remote (it would flood)";
  return "";
}

// 0 when created, -NLE_EXIST when the name is taken (by anything).
int create(nl_sock* sock, const VxlanConfig& config, int bridge_index, int underlay_index) {
  const std::string what = "create vxlan " + config.name;
  LinkPtr link(rtnl_link_vxlan_alloc());
  if (!link) throw Error(Errc::internal, what + ": out of memory");
  rtnl_link_set_name(link.get(), config.name.c_str());
  if (config.mtu) rtnl_link_set_mtu(link.get(), config.mtu);
  // Born enslaved and down: it is brought up only after its bridge port has
  // stopped learning (configure()), so there is no window in which the
  // bridge learns from the tunnel.
  rtnl_link_set_master(link.get(), bridge_index);
  int e = rtnl_link_vxlan_set_id(link.get(), config.vni);
  if (e >= 0) e = rtnl_link_vxlan_set_port(link.get(), config.port);
  if (e >= 0 && config.source_port_min) {
    ifla_vxlan_port_range range{htons(config.source_port_min), htons(config.source_port_max)};
    e = rtnl_link_vxlan_set_port_range(link.get(), &range);
  }
  if (e >= 0 && underlay_index) e = rtnl_link_vxlan_set_link(link.get(), underlay_index);
  if (e >= 0 && config.local != Ipv4Address{}) {
    uint32_t raw = config.local.network_order();
    NlAddrPtr local(nl_addr_build(AF_INET, &raw, sizeof(raw)));
    if (!local) throw Error(Errc::internal, what + ": out of memory");
    e = rtnl_link_vxlan_set_local(link.get(), local.get());
  }
  // Explicit, not the kernel's defaults: learning defaults to on.
  if (e >= 0) e = rtnl_link_vxlan_set_learning(link.get(), 0);
  if (e >= 0) e = rtnl_link_vxlan_set_proxy(link.get(), 1);
  if (e >= 0) e = rtnl_link_vxlan_set_l2miss(link.get(), 0);
  if (e >= 0) e = rtnl_link_vxlan_set_l3miss(link.get(), 0);
  if (e < 0) throw_netlink_error(e, what);
  int err = rtnl_link_add(sock, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0 && err != -NLE_EXIST) throw_netlink_error(err, what);
  return err;
}

// One RTM_NEWLINK on the existing device: bridge port learning off (slave
// data, applied by the kernel before the flags), MTU, and up.
void configure(nl_sock* sock, const std::string& name, unsigned mtu) {
  const std::string what = "configure vxlan " + name;
  MsgPtr msg = alloc_msg(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  put(nlmsg_append(msg.get(), &ifi, sizeof(ifi), NLMSG_ALIGNTO), what);
  put(nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()), what);
  if (mtu) put(nla_put_u32(msg.get(), IFLA_MTU, mtu), what);
  nlattr* linkinfo = nla_nest_start(msg.get(), IFLA_LINKINFO);
  if (!linkinfo) put(-NLE_MSGSIZE, what);
  put(nla_put_string(msg.get(), IFLA_INFO_SLAVE_KIND, "bridge"), what);
  nlattr* slave = nla_nest_start(msg.get(), IFLA_INFO_SLAVE_DATA);
  if (!slave) put(-NLE_MSGSIZE, what);
  put(nla_put_u8(msg.get(), IFLA_BRPORT_LEARNING, 0), what);
  nla_nest_end(msg.get(), slave);
  nla_nest_end(msg.get(), linkinfo);
  int err = transact(sock, msg.get());
  if (err < 0) throw_netlink_error(err, what);
}

}  // namespace

void set_port_hairpin(NetlinkSocket& nl, const std::string& port, bool on) {
  check_name(port);
  const std::string what = std::string(on ? "turn on" : "turn off") + " hairpin mode of bridge port " + port;
  MsgPtr msg = alloc_msg(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  put(nlmsg_append(msg.get(), &ifi, sizeof(ifi), NLMSG_ALIGNTO), what);
  put(nla_put_string(msg.get(), IFLA_IFNAME, port.c_str()), what);
  nlattr* linkinfo = nla_nest_start(msg.get(), IFLA_LINKINFO);
  if (!linkinfo) put(-NLE_MSGSIZE, what);
  put(nla_put_string(msg.get(), IFLA_INFO_SLAVE_KIND, "bridge"), what);
  nlattr* slave = nla_nest_start(msg.get(), IFLA_INFO_SLAVE_DATA);
  if (!slave) put(-NLE_MSGSIZE, what);
  put(nla_put_u8(msg.get(), IFLA_BRPORT_MODE, on ? 1 : 0), what);
  nla_nest_end(msg.get(), slave);
  nla_nest_end(msg.get(), linkinfo);
  int err = transact(nl.raw(), msg.get());
  if (err < 0) throw_netlink_error(err, what);
}

namespace {

// ---- FDB and neighbour entries -------------------------------------------

MsgPtr neigh_msg(int type, int flags, int family, int ifindex, uint8_t ndm_flags, uint16_t state) {
  MsgPtr msg = alloc_msg(type, flags);
  ndmsg ndm{};
  ndm.ndm_family = static_cast<uint8_t>(family);
  ndm.ndm_ifindex = ifindex;
  ndm.ndm_flags = ndm_flags;
  ndm.ndm_state = state;
  put(nlmsg_append(msg.get(), &ndm, sizeof(ndm), NLMSG_ALIGNTO), "neighbour request");
  return msg;
}

bool missing(int err) {
  return err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR;
}

void check_index(int index, const char* what) {
  if (index <= 0)
    throw Error(Errc::invalid_argument, std::string(what) + ": no vxlan device index");
}

std::string on(int index) {
  return " on vxlan #" + std::to_string(index);
}

}  // namespace

VxlanInfo ensure_vxlan(NetlinkSocket& nl, const VxlanConfig& config) {
  check_name(config.name);
  check_name(config.bridge);
  if (config.vni == 0 || config.vni > kMaxVni) {
    throw Error(Errc::invalid_argument, "vxlan " + config.name + ": VNI " +
                                            std::to_string(config.vni) + " outside 1.." +
                                            std::to_string(kMaxVni));
  }
  if (config.port == 0) {
    throw Error(Errc::invalid_argument, "vxlan " + config.name + ": UDP port 0");
  }
  if ((config.source_port_min || config.source_port_max) &&
      (config.source_port_min == 0 || config.source_port_min >= config.source_port_max)) {
    throw Error(Errc::invalid_argument, "vxlan " + config.name + ": source ports " +
                                            std::to_string(config.source_port_min) + "-" +
                                            std::to_string(config.source_port_max) +
                                            " (wanted 1 <= min < max)");
  }
  auto bridge = nl.find_link(config.bridge);
  if (!bridge) {
    throw Error(Errc::not_found,
                "vxlan " + config.name + ": bridge " + config.bridge + " does not exist");
  }
  if (bridge->kind != "bridge") {
    throw Error(Errc::conflict, "vxlan " + config.name + ": " + config.bridge +
                                    " is not a bridge (kind \"" + bridge->kind + "\")");
  }
  int underlay_index = 0;
  if (!config.underlay_device.empty()) {
    auto underlay = nl.find_link(config.underlay_device);
    if (!underlay) {
      throw Error(Errc::not_found, "vxlan " + config.name + ": underlay device " +
                                       config.underlay_device + " does not exist");
    }
    underlay_index = underlay->index;
  }

  if (create(nl.raw(), config, bridge->index, underlay_index) == -NLE_EXIST) {
    auto raw = get_raw_link(nl.raw(), config.name);
    if (!raw) throw Error(Errc::conflict, "vxlan " + config.name + " vanished while being created");
    if (raw->kind != "vxlan") {
      throw Error(Errc::conflict, "interface " + config.name +
                                      " already exists and is not a vxlan device (kind \"" +
                                      raw->kind + "\")");
    }
    if (std::string why = mismatch(*raw, config, underlay_index); !why.empty()) {
      throw Error(Errc::conflict, "vxlan " + config.name + " already exists with " + why);
    }
    // Same tunnel: keep it and its entries; only fix what can change live.
    if (raw->info.link.master_index != bridge->index) nl.set_master(config.name, bridge->index);
  }
  configure(nl.raw(), config.name, config.mtu);
  auto info = find_vxlan_raw(nl.raw(), config.name);
  if (!info)
    throw Error(Errc::conflict, "vxlan " + config.name + " vanished while being configured");
  return *info;
}

std::optional<VxlanInfo> find_vxlan(NetlinkSocket& nl, const std::string& name) {
  check_name(name);
  return find_vxlan_raw(nl.raw(), name);
}

bool delete_vxlan(NetlinkSocket& nl, const std::string& name) {
  // Looked up first so that a typo cannot delete some other link.
  if (!find_vxlan(nl, name)) return false;
  return nl.delete_link(name);
}

void add_fdb(NetlinkSocket& nl, int vxlan_index, const std::string& mac, Ipv4Address vtep) {
  check_index(vxlan_index, "add fdb entry");
  Mac bytes = parse_mac(mac);
  const std::string what = "add fdb entry " + mac + " dst " + vtep.str() + on(vxlan_index);
  uint32_t dst = vtep.network_order();
  // The device's own table. REPLACE: an existing entry for the MAC gets the
  // new VTEP (the kernel changes the first remote) instead of an EEXIST or a
  // second remote it would replicate frames to.
  MsgPtr self = neigh_msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_BRIDGE, vxlan_index,
                          NTF_SELF, NUD_PERMANENT);
  put(nla_put(self.get(), NDA_LLADDR, bytes.size(), bytes.data()), what);
  put(nla_put(self.get(), NDA_DST, sizeof(dst), &dst), what);
  int err = transact(nl.raw(), self.get());
  if (err < 0) throw_netlink_error(err, what);
  // The bridge's table, after the tunnel knows the VTEP. NUD_NOARP is
  // "static" to the bridge; NUD_PERMANENT would mean "local" there (frames
  // for the MAC delivered to the bridge device itself).
  MsgPtr master = neigh_msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_BRIDGE, vxlan_index,
                            NTF_MASTER, NUD_NOARP);
  put(nla_put(master.get(), NDA_LLADDR, bytes.size(), bytes.data()), what);
  err = transact(nl.raw(), master.get());
  if (err < 0) throw_netlink_error(err, what + " (bridge entry)");
}

bool remove_fdb(NetlinkSocket& nl, int vxlan_index, const std::string& mac) {
  check_index(vxlan_index, "remove fdb entry");
  Mac bytes = parse_mac(mac);
  const std::string what = "remove fdb entry " + mac + on(vxlan_index);
  // Bridge entry first, so the bridge never forwards to a tunnel that has
  // already forgotten the VTEP. Missing is fine (half-done earlier add).
  MsgPtr master = neigh_msg(RTM_DELNEIGH, 0, AF_BRIDGE, vxlan_index, NTF_MASTER, 0);
  put(nla_put(master.get(), NDA_LLADDR, bytes.size(), bytes.data()), what);
  int err = transact(nl.raw(), master.get());
  if (err < 0 && !missing(err)) throw_netlink_error(err, what + " (bridge entry)");
  // Without NDA_DST the kernel drops the entry with all its remotes.
  MsgPtr self = neigh_msg(RTM_DELNEIGH, 0, AF_BRIDGE, vxlan_index, NTF_SELF, 0);
  put(nla_put(self.get(), NDA_LLADDR, bytes.size(), bytes.data()), what);
  err = transact(nl.raw(), self.get());
  if (missing(err)) return false;
  if (err < 0) throw_netlink_error(err, what);
  return true;
}

std::vector<FdbEntry> list_fdb(NetlinkSocket& nl, int vxlan_index) {
  check_index(vxlan_index, "list fdb entries");
  std::vector<FdbEntry> out;
  nl.dump_messages(
      [&] {
        // An ifinfomsg header, not an ndmsg: on a socket without strict
        // checking that is how the kernel's FDB dump takes a port filter
        // (ifi_index), so only this device's entries are sent.
        nl_msg* msg = nlmsg_alloc_simple(RTM_GETNEIGH, NLM_F_DUMP);
        ifinfomsg ifi{};
        ifi.ifi_family = AF_BRIDGE;
        ifi.ifi_index = vxlan_index;
        if (msg && nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0) {
          nlmsg_free(msg);
          msg = nullptr;
        }
        return msg;
      },
      [&](nlmsghdr* hdr) {
        if (hdr->nlmsg_type != RTM_NEWNEIGH) return;
        nlattr* tb[NDA_MAX + 1] = {};
        if (nlmsg_parse(hdr, sizeof(ndmsg), tb, NDA_MAX, nullptr) < 0) return;
        const auto* ndm = static_cast<const ndmsg*>(nlmsg_data(hdr));
        // NTF_SELF: the device's table; the bridge's entries for the port
        // come in the same dump with NTF_MASTER.
        if (ndm->ndm_ifindex != vxlan_index || !(ndm->ndm_flags & NTF_SELF)) return;
        if (!tb[NDA_LLADDR] || nla_len(tb[NDA_LLADDR]) != 6) return;
        auto dst = attr_value<uint32_t>(tb[NDA_DST]);
        if (!dst || nla_len(tb[NDA_DST]) != 4) return;
        out.push_back({format_mac(nla_data(tb[NDA_LLADDR])), Ipv4Address(ntohl(*dst))});
      },
      [&] { out.clear(); }, "list fdb entries" + on(vxlan_index));
  return out;
}

void add_neighbor(NetlinkSocket& nl, int vxlan_index, Ipv4Address ip, const std::string& mac) {
  check_index(vxlan_index, "add neighbour");
  Mac bytes = parse_mac(mac);
  const std::string what = "add neighbour " + ip.str() + " lladdr " + mac + on(vxlan_index);
  uint32_t dst = ip.network_order();
  MsgPtr msg =
      neigh_msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_INET, vxlan_index, 0, NUD_PERMANENT);
  put(nla_put(msg.get(), NDA_DST, sizeof(dst), &dst), what);
  put(nla_put(msg.get(), NDA_LLADDR, bytes.size(), bytes.data()), what);
  int err = transact(nl.raw(), msg.get());
  if (err < 0) throw_netlink_error(err, what);
}

bool remove_neighbor(NetlinkSocket& nl, int vxlan_index, Ipv4Address ip) {
  check_index(vxlan_index, "remove neighbour");
  const std::string what = "remove neighbour " + ip.str() + on(vxlan_index);
  uint32_t dst = ip.network_order();
  MsgPtr msg = neigh_msg(RTM_DELNEIGH, 0, AF_INET, vxlan_index, 0, 0);
  put(nla_put(msg.get(), NDA_DST, sizeof(dst), &dst), what);
  int err = transact(nl.raw(), msg.get());
  if (missing(err)) return false;
  if (err < 0) throw_netlink_error(err, what);
  return true;
}

std::vector<NeighborEntry> list_neighbors(NetlinkSocket& nl, int vxlan_index) {
  check_index(vxlan_index, "list neighbours");
  std::vector<NeighborEntry> out;
  nl.dump_messages(
      [&] {
        // The kernel filters a neighbour dump by NDA_IFINDEX (ndm_ifindex is
        // ignored unless the socket asks for strict checking).
        nl_msg* msg = nlmsg_alloc_simple(RTM_GETNEIGH, NLM_F_DUMP);
        ndmsg ndm{};
        ndm.ndm_family = AF_INET;
        if (msg && (nlmsg_append(msg, &ndm, sizeof(ndm), NLMSG_ALIGNTO) < 0 ||
                    nla_put_u32(msg, NDA_IFINDEX, static_cast<uint32_t>(vxlan_index)) < 0)) {
          nlmsg_free(msg);
          msg = nullptr;
        }
        return msg;
      },
      [&](nlmsghdr* hdr) {
        if (hdr->nlmsg_type != RTM_NEWNEIGH) return;
        nlattr* tb[NDA_MAX + 1] = {};
        if (nlmsg_parse(hdr, sizeof(ndmsg), tb, NDA_MAX, nullptr) < 0) return;
        const auto* ndm = static_cast<const ndmsg*>(nlmsg_data(hdr));
        if (ndm->ndm_family != AF_INET || ndm->ndm_ifindex != vxlan_index ||
            !(ndm->ndm_state & NUD_PERMANENT)) {
          return;
        }
        if (!tb[NDA_LLADDR] || nla_len(tb[NDA_LLADDR]) != 6) return;
        auto dst = attr_value<uint32_t>(tb[NDA_DST]);
        if (!dst || nla_len(tb[NDA_DST]) != 4) return;
        out.push_back({Ipv4Address(ntohl(*dst)), format_mac(nla_data(tb[NDA_LLADDR]))});
      },
      [&] { out.clear(); }, "list neighbours" + on(vxlan_index));
  return out;
}

}  // namespace swarmnet::kernel
