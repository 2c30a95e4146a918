// Internal to kernel/: RAII owners for libnl's reference-counted objects and
// the interface-name check, shared by netlink.cpp and vxlan.cpp. Every
// get/alloc is paired with a put by construction, so error paths cannot leak.
#pragma once

#include <linux/if.h>  // IFNAMSIZ (not net/if.h: it clashes with linux/if.h)
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>

#include <memory>
#include <string>

#include "common/error.hpp"

namespace swarmnet::kernel::libnl {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const {
    if (p) Free(p);
  }
};
using LinkPtr = std::unique_ptr<rtnl_link, Deleter<rtnl_link, rtnl_link_put>>;
using AddrPtr = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, rtnl_addr_put>>;
using RoutePtr = std::unique_ptr<rtnl_route, Deleter<rtnl_route, rtnl_route_put>>;
using RulePtr = std::unique_ptr<rtnl_rule, Deleter<rtnl_rule, rtnl_rule_put>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Deleter<nl_addr, nl_addr_put>>;
using ObjectPtr = std::unique_ptr<nl_object, Deleter<nl_object, nl_object_put>>;
using CbPtr = std::unique_ptr<nl_cb, Deleter<nl_cb, nl_cb_put>>;
using MsgPtr = std::unique_ptr<nl_msg, Deleter<nl_msg, nlmsg_free>>;
using SockPtr = std::unique_ptr<nl_sock, Deleter<nl_sock, nl_socket_free>>;

// Error(invalid_argument) unless 1..IFNAMSIZ-1 characters.
inline void check_name(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    throw Error(Errc::invalid_argument, "invalid interface name \"" + name + "\"");
  }
}

}  // namespace swarmnet::kernel::libnl
