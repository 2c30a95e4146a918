#include "plugin/cni/daemon_commands.hpp"

#include "common/api_client.hpp"
#include "common/log.hpp"

namespace swarmnet::cni {

namespace json = boost::json;

void cmd_gc(const Environment&, const NetConf& conf) {
  json::value body = json::value_from(gc_request(conf));
  auto res = json::value_to<api::GcResult>(
      ApiClient(conf.daemon_socket).call("POST", gc_target(conf), &body));
  for (const auto& k : res.released) {
    spdlog::info("GC {}: released {}/{}", conf.network, k.container_id, k.ifname);
  }
}

void cmd_status(const Environment&, const NetConf& conf) {
  try {
    ApiClient(conf.daemon_socket).call("GET", kStatusTarget);
  } catch (const Error& e) {
    if (e.code() != Errc::unavailable) throw;
    throw CniError(code::kPluginNotAvailable, "plugin not available: swarmnetd is not reachable",
                   e.what());
  }
}

}  // namespace swarmnet::cni
