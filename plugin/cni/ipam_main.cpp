// swarmnet-ipam: cluster-wide addresses from swarmnetd for other main
// plugins (the reference bridge, macvlan). An address only: the daemon wires
// nothing (attach=false) and this program does no kernel work.
#include "common/api_client.hpp"
#include "common/log.hpp"
#include "plugin/cni/attachment.hpp"
#include "plugin/cni/daemon_commands.hpp"
#include "plugin/cni/skel.hpp"

namespace swarmnet::cni {
namespace {

namespace json = boost::json;

Result cmd_add(const Environment& env, const NetConf& conf) {
  json::value body = json::value_from(endpoint_request(env, conf, false));
  auto ep = json::value_to<api::Endpoint>(
      ApiClient(conf.daemon_socket).call("POST", endpoints_target(conf), &body));
  spdlog::info("ADD {}/{}: {} gw {} on {}", env.container_id, env.ifname, ep.address.str(),
               ep.gateway.str(), conf.network);
  return ipam_result(ep, conf);
}

void cmd_del(const Environment& env, const NetConf& conf) {
  try {
    ApiClient(conf.daemon_socket).call("DELETE", endpoint_target(conf, env));
  } catch (const Error& e) {
    // The network may be gone, and its endpoints with it: DEL succeeded.
    if (e.code() != Errc::not_found) throw;
  }
}

void cmd_check(const Environment& env, const NetConf& conf) {
  json::value reply;
  try {
    reply = ApiClient(conf.daemon_socket).call("GET", endpoint_target(conf, env));
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
    throw CniError(code::kCheckFailed,
                   "CHECK failed: swarmnetd has no address for " + env.container_id + "/" +
                       env.ifname + " on network " + conf.network,
                   e.what());
  }
  check_ipam(conf, json::value_to<api::Endpoint>(reply));
}

}  // namespace
}  // namespace swarmnet::cni

int main(int argc, char** argv) {
  using namespace swarmnet::cni;
  return plugin_main(PluginInfo{"swarmnet-ipam",
                                "swarmnet cluster-wide addresses for other CNI "
                                "main plugins",
                                PluginKind::ipam},
                     Handlers{cmd_add, cmd_del, cmd_check, cmd_gc, cmd_status}, argc, argv);
}
