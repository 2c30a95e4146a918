#include "lb/vip_addresses.hpp"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>

#include "common/error.hpp"
#include "kernel/libnl_util.hpp"

namespace swarmnet::lb {
namespace {

// A dump request of IPv4 objects (RTM_GETROUTE, RTM_GETADDR) with its header.
template <typename Header>
nl_msg* ipv4_dump_request(int type, Header header) {
  nl_msg* msg = nlmsg_alloc_simple(type, NLM_F_DUMP);
  if (msg && nlmsg_append(msg, &header, sizeof(header), NLMSG_ALIGNTO) < 0) {
    nlmsg_free(msg);
    msg = nullptr;
  }
  return msg;
}

// (interface index, address) pairs as (link name, address), sorted; one link
// lookup per bridge, not per VIP, and a link gone meanwhile drops its pairs.
std::vector<std::pair<std::string, Ipv4Address>> by_link_name(
    kernel::NetlinkSocket& nl, const std::vector<std::pair<int, Ipv4Address>>& found) {
  std::map<int, std::string> names;
  std::vector<std::pair<std::string, Ipv4Address>> out;
  for (const auto& [index, address] : found) {
    auto name = names.find(index);
    if (name == names.end()) {
      auto link = nl.find_link(index);
      name = names.emplace(index, link ? link->name : std::string()).first;
    }
    if (!name->second.empty()) out.emplace_back(name->second, address);
  }
  std::sort(out.begin(), out.end());
  return out;
}

using kernel::libnl::MsgPtr;

// An RTM_NEWADDR / RTM_DELADDR for vip/32 on link `index`.
// protocol 0: none (a deletion matches any).
MsgPtr address_message(int type, int flags, int index, Ipv4Address vip, uint8_t protocol) {
  MsgPtr msg(nlmsg_alloc_simple(type, flags));
  if (!msg) throw Error(Errc::internal, "out of memory allocating a netlink message");
  ifaddrmsg header{};
  header.ifa_family = AF_INET;
  header.ifa_prefixlen = 32;
  header.ifa_scope = RT_SCOPE_UNIVERSE;
  header.ifa_index = static_cast<unsigned>(index);
  uint32_t address = vip.network_order();
  // A few dozen bytes in a page-sized message: a failure here is a bug.
  if (nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO) < 0 ||
      nla_put(msg.get(), IFA_LOCAL, sizeof(address), &address) < 0 ||
      nla_put(msg.get(), IFA_ADDRESS, sizeof(address), &address) < 0 ||
      (protocol && nla_put_u8(msg.get(), IFA_PROTO, protocol) < 0)) {
    throw Error(Errc::internal, "netlink address message too small");
  }
  return msg;
}

// An RTM_NEWROUTE / RTM_DELROUTE for the VIP route of `vip` through link
// `index` (0: any link, for a deletion).
MsgPtr route_message(int type, int flags, int index, Ipv4Address vip) {
  MsgPtr msg(nlmsg_alloc_simple(type, flags));
  if (!msg) throw Error(Errc::internal, "out of memory allocating a netlink message");
  rtmsg header{};
  header.rtm_family = AF_INET;
  header.rtm_dst_len = 32;
  header.rtm_table = RT_TABLE_LOCAL;
  header.rtm_protocol = kVipProtocol;
  header.rtm_scope = RT_SCOPE_HOST;
  header.rtm_type = RTN_LOCAL;
  uint32_t address = vip.network_order();
  if (nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO) < 0 ||
      nla_put(msg.get(), RTA_DST, sizeof(address), &address) < 0 ||
      (index && nla_put_u32(msg.get(), RTA_OIF, static_cast<uint32_t>(index)) < 0)) {
    throw Error(Errc::internal, "netlink route message too small");
  }
  return msg;
}

// One request and the kernel's ACK: 0 or a negative libnl code.
int transact(kernel::NetlinkSocket& nl, nl_msg* msg) {
  int err = nl_send_auto(nl.raw(), msg);
  if (err < 0) return err;
  return nl_wait_for_ack(nl.raw());
}

}  // namespace

void ensure_vip_route(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address vip) {
  ensure_vip_routes(nl, {{bridge, vip}});
}

void ensure_vip_routes(kernel::NetlinkSocket& nl,
                       const std::vector<std::pair<std::string, Ipv4Address>>& routes) {
  std::map<std::string, int> index_of;
  for (const auto& [bridge, vip] : routes) {
    auto it = index_of.find(bridge);
    // Error(not_found) names the bridge.
    if (it == index_of.end()) it = index_of.emplace(bridge, nl.link_index(bridge)).first;
    // NLM_F_REPLACE: a route of the VIP through another bridge, or the
    // local route of an older release's VIP address, becomes this one.
    MsgPtr msg = route_message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, it->second, vip);
    int err = transact(nl, msg.get());
    if (err < 0)
      kernel::throw_netlink_error(err, "add the local route of VIP " + vip.str() + " on " + bridge);
  }
}

void ensure_node_address(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address address,
                         const std::string& mac) {
  kernel::LinkInfo link = nl.get_link(bridge);
  if (link.mac != mac) {
    kernel::write_sysctl("net/ipv4/conf/" + bridge + "/arp_notify", "1");
    unsigned char bytes[6];
    if (std::sscanf(mac.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &bytes[0], &bytes[1], &bytes[2], &bytes[3],
                    &bytes[4], &bytes[5]) != 6) {
      throw Error(Errc::invalid_argument, "invalid MAC address \"" + mac + "\"");
    }
    MsgPtr msg(nlmsg_alloc_simple(RTM_NEWLINK, 0));
    if (!msg) throw Error(Errc::internal, "out of memory allocating a netlink message");
    ifinfomsg header{};
    header.ifi_family = AF_UNSPEC;
    header.ifi_index = link.index;
    if (nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO) < 0 ||
        nla_put(msg.get(), IFLA_ADDRESS, sizeof(bytes), bytes) < 0) {
      throw Error(Errc::internal, "netlink link message too small");
    }
    int err = transact(nl, msg.get());
    if (err < 0) kernel::throw_netlink_error(err, "set the MAC of " + bridge + " to " + mac);
  }
  MsgPtr msg = address_message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, link.index, address, kNodeAddressProtocol);
  int err = transact(nl, msg.get());
  if (err < 0 && err != -NLE_EXIST) {
    kernel::throw_netlink_error(err, "add the node's address " + address.str() + "/32 to " + bridge);
  }
}

void remove_vip_route(kernel::NetlinkSocket& nl, const std::string& bridge, Ipv4Address vip) {
  if (bridge.empty()) return;  // a VIP whose route was not found: nothing to remove
  auto link = nl.find_link(bridge);
  if (!link) return;  // the route went with the bridge
  MsgPtr msg = route_message(RTM_DELROUTE, 0, link->index, vip);
  int err = transact(nl, msg.get());
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return;
  if (err < 0)
    kernel::throw_netlink_error(err,
                                "remove the local route of VIP " + vip.str() + " on " + bridge);
}

std::vector<std::pair<std::string, Ipv4Address>> list_vip_routes(kernel::NetlinkSocket& nl) {
  std::vector<std::pair<int, Ipv4Address>> found;
  nl.dump_messages(
      [] {
        rtmsg header{};
        header.rtm_family = AF_INET;
        return ipv4_dump_request(RTM_GETROUTE, header);
      },
      [&](nlmsghdr* hdr) {
        if (hdr->nlmsg_type != RTM_NEWROUTE) return;
        auto* header = static_cast<rtmsg*>(nlmsg_data(hdr));
        if (header->rtm_family != AF_INET || header->rtm_protocol != kVipProtocol ||
            header->rtm_type != RTN_LOCAL || header->rtm_dst_len != 32) {
          return;
        }
        nlattr* attrs[RTA_MAX + 1];
        if (nlmsg_parse(hdr, sizeof(rtmsg), attrs, RTA_MAX, nullptr) < 0) return;
        // Tables above 255 are only in RTA_TABLE.
        uint32_t table = attrs[RTA_TABLE] ? nla_get_u32(attrs[RTA_TABLE]) : header->rtm_table;
        if (table != RT_TABLE_LOCAL || !attrs[RTA_DST] || nla_len(attrs[RTA_DST]) != 4 ||
            !attrs[RTA_OIF])
          return;
        found.emplace_back(static_cast<int>(nla_get_u32(attrs[RTA_OIF])),
                           Ipv4Address(ntohl(nla_get_u32(attrs[RTA_DST]))));
      },
      [&] { found.clear(); }, "list VIP routes");

  return by_link_name(nl, found);
}

std::vector<std::pair<std::string, Ipv4Address>> list_legacy_vip_addresses(
    kernel::NetlinkSocket& nl) {
  std::vector<std::pair<int, Ipv4Address>> found;
  nl.dump_messages(
      [] {
        ifaddrmsg header{};
        header.ifa_family = AF_INET;
        return ipv4_dump_request(RTM_GETADDR, header);
      },
      [&](nlmsghdr* hdr) {
        if (hdr->nlmsg_type != RTM_NEWADDR) return;
        nlattr* attrs[IFA_MAX + 1];
        if (nlmsg_parse(hdr, sizeof(ifaddrmsg), attrs, IFA_MAX, nullptr) < 0) return;
        auto* header = static_cast<ifaddrmsg*>(nlmsg_data(hdr));
        if (header->ifa_family != AF_INET || header->ifa_prefixlen != 32) return;
        nlattr* local = attrs[IFA_LOCAL] ? attrs[IFA_LOCAL] : attrs[IFA_ADDRESS];
        if (!local || nla_len(local) != 4) return;
        // Only with the protocol: a kernel that does not report it (before
        // 6.0) cannot tell a VIP address from the node's own.
        if (!attrs[IFA_PROTO] || nla_get_u8(attrs[IFA_PROTO]) != kVipProtocol) return;
        found.emplace_back(static_cast<int>(header->ifa_index), Ipv4Address(ntohl(nla_get_u32(local))));
      },
      [&] { found.clear(); }, "list legacy VIP addresses");

  return by_link_name(nl, found);
}

size_t remove_legacy_vip_addresses(kernel::NetlinkSocket& nl) {
  size_t removed = 0;
  for (const auto& [bridge, vip] : list_legacy_vip_addresses(nl)) {
    auto link = nl.find_link(bridge);
    if (!link) continue;
    MsgPtr msg = address_message(RTM_DELADDR, 0, link->index, vip, 0);
    int err = transact(nl, msg.get());
    if (err == -NLE_NOADDR || err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) continue;
    if (err < 0)
      kernel::throw_netlink_error(err,
                                  "remove the old VIP address " + vip.str() + "/32 from " + bridge);
    ++removed;
  }
  return removed;
}

}  // namespace swarmnet::lb
