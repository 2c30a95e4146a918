// The swarmnet CNI plugin: one request to the local swarmnetd for the
// address and the host bridge, then the netns-local kernel work (veth pair,
// address, default route) here, through netlink sockets bound to each
// namespace, so no thread ever has to stay inside the container's namespace.
#include <sys/stat.h>

#include "common/api_client.hpp"
#include "common/log.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "kernel/vxlan.hpp"
#include "plugin/cni/attachment.hpp"
#include "plugin/cni/daemon_commands.hpp"
#include "plugin/cni/scope_guard.hpp"
#include "plugin/cni/skel.hpp"

namespace swarmnet::cni {
namespace {

namespace json = boost::json;
using kernel::NetlinkSocket;
using kernel::Netns;

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Error 3 for a namespace that is not there, with the path: the runtime's
// bug or a container that died, not ours.
Netns open_netns(const std::string& path) {
  if (!path_exists(path)) {
    throw CniError(code::kUnknownContainer,
                   "container unknown or does not exist: netns " + path + " does not exist");
  }
  try {
    return Netns::open(path);
  } catch (const Error& e) {
    throw CniError(code::kUnknownContainer,
                   "container unknown or does not exist: cannot open netns " + path, e.what());
  }
}

Result cmd_add(const Environment& env, const NetConf& conf) {
  // Everything that can be checked without side effects, before the
  // daemon allocates anything.
  Netns ns = open_netns(env.netns);
  NetlinkSocket inside = NetlinkSocket::open_in(ns);
  if (inside.find_link(env.ifname)) {
    throw CniError(code::kAlreadyExists,
                   "interface " + env.ifname + " already exists in netns " + env.netns);
  }
  NetlinkSocket host = NetlinkSocket::open();
  ApiClient api(conf.daemon_socket);

  json::value body = json::value_from(endpoint_request(env, conf, true));
  auto ep = json::value_to<api::Endpoint>(api.call("POST", endpoints_target(conf), &body));
  spdlog::info("ADD {}/{}: {} gw {} mac {} bridge {} host end {}", env.container_id, env.ifname,
               ep.address.str(), ep.gateway.str(), ep.mac, ep.bridge, ep.host_ifname);

  bool veth_created = false;
  ScopeGuard rollback([&] {
    // Best effort: each step logs and goes on, so one failure does not
    // leave the other resource behind. The host link is deleted only if we
    // made it: a name clash must not remove somebody else's interface.
    try {
      if (veth_created) host.delete_link(ep.host_ifname);
    } catch (const std::exception& e) {
      spdlog::error("rollback: deleting {}: {}", ep.host_ifname, e.what());
    }
    try {
      api.call("DELETE", endpoint_target(conf, env));
    } catch (const std::exception& e) {
      spdlog::error("rollback: releasing {}/{} on swarmnetd: {}", env.container_id, env.ifname,
                    e.what());
    }
  });

  if (ep.host_ifname.empty() || ep.bridge.empty()) {
    throw CniError(code::kDaemonOrKernel,
                   "swarmnetd returned an endpoint without bridge or host "
                   "interface name");
  }
  const unsigned mtu = effective_mtu(ep, conf);
  host.create_veth(ep.host_ifname, env.ifname, ns, mtu, ep.mac);
  veth_created = true;
  host.set_master(ep.host_ifname, ep.bridge);
  kernel::set_port_hairpin(host, ep.host_ifname, true);  // a task reaching its own service's VIP
  host.set_up(ep.host_ifname);
  inside.add_address(env.ifname, ep.address);
  inside.set_up(env.ifname);
  inside.add_route(Ipv4Prefix(Ipv4Address(0), 0), ep.gateway, env.ifname);
  const std::string host_mac = host.get_link(ep.host_ifname).mac;

  Result r = attach_result(ep, host_mac, env, conf);
  rollback.dismiss();
  return r;
}

void cmd_del(const Environment& env, const NetConf& conf) {
  // Missing namespace or interface: already gone, which is what DEL wants.
  if (!env.netns.empty() && path_exists(env.netns)) {
    try {
      Netns ns = Netns::open(env.netns);
      NetlinkSocket inside = NetlinkSocket::open_in(ns);
      if (inside.delete_link(env.ifname)) {
        spdlog::info("DEL {}/{}: removed {} from {}", env.container_id, env.ifname, env.ifname,
                     env.netns);
      }
    } catch (const Error& e) {
      if (e.code() != Errc::not_found && e.code() != Errc::invalid_argument) throw;
      spdlog::info("DEL {}/{}: netns {}: {}", env.container_id, env.ifname, env.netns, e.what());
    }
  }
  ApiClient api(conf.daemon_socket);
  try {
    api.call("DELETE", endpoint_target(conf, env));
  } catch (const Error& e) {
    // The network itself may be gone; the endpoint went with it.
    if (e.code() != Errc::not_found) throw;
  }
}

void cmd_check(const Environment& env, const NetConf& conf) {
  Netns ns = open_netns(env.netns);
  NetlinkSocket inside = NetlinkSocket::open_in(ns);
  auto link = inside.find_link(env.ifname);
  if (!link) {
    throw CniError(code::kCheckFailed,
                   "CHECK failed: interface " + env.ifname + " is missing in " + env.netns);
  }
  ObservedInterface seen;
  seen.mac = link->mac;
  for (const auto& a : inside.addresses(env.ifname)) seen.addresses.push_back(a.str());
  for (const auto& r : inside.routes()) {
    seen.routes.push_back({r.destination.str(), r.gateway ? r.gateway->str() : ""});
  }
  json::value reply;
  try {
    reply = ApiClient(conf.daemon_socket).call("GET", endpoint_target(conf, env));
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
    throw CniError(code::kCheckFailed,
                   "CHECK failed: swarmnetd has no endpoint for " + env.container_id + "/" +
                       env.ifname + " on network " + conf.network,
                   e.what());
  }
  check_attachment(env, conf, seen, json::value_to<api::Endpoint>(reply));
}

}  // namespace
}  // namespace swarmnet::cni

int main(int argc, char** argv) {
  using namespace swarmnet::cni;
  return plugin_main(
      PluginInfo{"swarmnet", "attaches containers to swarmnet overlay networks", PluginKind::main},
      Handlers{cmd_add, cmd_del, cmd_check, cmd_gc, cmd_status}, argc, argv);
}
