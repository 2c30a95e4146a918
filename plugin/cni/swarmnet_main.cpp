// The swarmnet CNI plugin: one request to the local swarmnetd for the
// address and the host bridge, then the netns-local kernel work (veth pair,
// address, default route) here, through rtnetlink sockets bound to each
// namespace, so no thread ever has to stay inside the container's namespace.
// A runtime starts it for every ADD and DEL: each command makes only the
// round trips it needs (rtnl.hpp).
#include <sys/stat.h>

#include <exception>
#include <optional>

#include "common/api_client.hpp"
#include "common/log.hpp"
#include "kernel/netns.hpp"
#include "plugin/cni/attachment.hpp"
#include "plugin/cni/daemon_commands.hpp"
#include "plugin/cni/rtnl.hpp"
#include "plugin/cni/scope_guard.hpp"
#include "plugin/cni/skel.hpp"

namespace swarmnet::cni {
namespace {

namespace json = boost::json;
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
  ApiClient api(conf.daemon_socket);
  json::value body = json::value_from(endpoint_request(env, conf, true));
  // The request goes first, and the namespace is opened and checked while
  // swarmnetd allocates. ?sync=later: it replies before its record's
  // fdatasync and syncs while we make the interface; wait_synced() below
  // reads that it is done.
  PendingRequest add = api.send("POST", endpoints_target(conf) + "?sync=later", &body);
  struct Kernel {
    Netns ns;
    Rtnl inside;
    Rtnl host;
  };
  std::optional<Kernel> kernel;
  try {
    Netns ns = open_netns(env.netns);
    Rtnl inside = Rtnl::open_in(ns);
    if (inside.find_link(env.ifname)) {
      throw CniError(code::kAlreadyExists,
                     "interface " + env.ifname + " already exists in netns " + env.netns);
    }
    kernel.emplace(Kernel{std::move(ns), std::move(inside), Rtnl::open()});
  } catch (...) {
    // Refused here: an endpoint this ADD created goes again (201; a
    // repeated ADD's existing one, 200, is not ours to remove).
    try {
      if (add.response().status == 201) api.call("DELETE", endpoint_target(conf, env));
    } catch (const std::exception& e) {
      spdlog::error("releasing {}/{} on swarmnetd: {}", env.container_id, env.ifname, e.what());
    }
    throw;
  }
  Rtnl& inside = kernel->inside;
  Rtnl& host = kernel->host;
  Netns& ns = kernel->ns;
  const std::string host_mac = random_veth_mac();
  auto ep = json::value_to<api::Endpoint>(add.result());
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
  const auto bridge = host.find_link(ep.bridge);
  if (!bridge) throw Error(Errc::internal, "bridge " + ep.bridge + " of network " + conf.network + " is missing");
  VethRequest veth;
  veth.host_name = ep.host_ifname;
  veth.host_mac = host_mac;
  veth.master_index = bridge->index;
  veth.peer_name = env.ifname;
  veth.peer_mac = ep.mac;
  veth.mtu = effective_mtu(ep, conf);
  host.create_veth(veth, ns);
  veth_created = true;
  host.set_hairpin(ep.host_ifname);  // a task reaching its own service's VIP
  const auto container_end = inside.find_link(env.ifname);
  if (!container_end) throw Error(Errc::internal, env.ifname + " vanished from " + env.netns + " after its creation");
  inside.bring_up(container_end->index, ep.address, ep.gateway);
  // Acknowledged only once durable: a failure here undoes the ADD.
  add.wait_synced();

  Result r = attach_result(ep, host_mac, env, conf);
  rollback.dismiss();
  return r;
}

void cmd_del(const Environment& env, const NetConf& conf) {
  // The release goes out first and the interface is removed while
  // swarmnetd works on it: deleting a veth waits for RCU grace periods in
  // the kernel (tens of ms), the longest part of a DEL. The reference
  // plugins release the address before removing the interface too.
  std::optional<PendingRequest> release;
  std::exception_ptr unreachable;
  try {
    release.emplace(ApiClient(conf.daemon_socket).send("DELETE", endpoint_target(conf, env)));
  } catch (const Error&) {
    // Reported after the interface is gone, as when the daemon answered.
    unreachable = std::current_exception();
  }
  // Missing namespace or interface: already gone, which is what DEL wants.
  if (!env.netns.empty() && path_exists(env.netns)) {
    try {
      Netns ns = Netns::open(env.netns);
      if (Rtnl::open_in(ns).delete_link(env.ifname)) {
        spdlog::info("DEL {}/{}: removed {} from {}", env.container_id, env.ifname, env.ifname,
                     env.netns);
      }
    } catch (const Error& e) {
      if (e.code() != Errc::not_found && e.code() != Errc::invalid_argument) throw;
      spdlog::info("DEL {}/{}: netns {}: {}", env.container_id, env.ifname, env.netns, e.what());
    }
  }
  if (unreachable) std::rethrow_exception(unreachable);
  try {
    release->result();
  } catch (const Error& e) {
    // The network itself may be gone; the endpoint went with it.
    if (e.code() != Errc::not_found) throw;
  }
}

void cmd_check(const Environment& env, const NetConf& conf) {
  Netns ns = open_netns(env.netns);
  Rtnl inside = Rtnl::open_in(ns);
  auto link = inside.find_link(env.ifname);
  if (!link) {
    throw CniError(code::kCheckFailed,
                   "CHECK failed: interface " + env.ifname + " is missing in " + env.netns);
  }
  ObservedInterface seen;
  seen.mac = link->mac;
  for (const auto& a : inside.addresses(link->index)) seen.addresses.push_back(a.str());
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
