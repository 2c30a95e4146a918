// Fuzzes what a CNI plugin reads from the runtime: the environment and the
// network configuration on stdin. Input: environment lines "KEY=VALUE\n",
// then a NUL byte, then the config. The parsers may only fail with CniError
// (which becomes the spec's error JSON); anything else escaping is a bug, and
// so is an error code outside the spec's and ours.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "plugin/cni/attachment.hpp"
#include "plugin/cni/config.hpp"
#include "plugin/cni/protocol.hpp"
#include "plugin/cni/result.hpp"

using namespace swarmnet::cni;

namespace {

void check_code(int code) {
  switch (code) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 6:
    case 7:
      return;
    default:
      std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t split = input.find('\0');
  std::string_view env_text = input.substr(0, split);
  std::string_view config =
      split == std::string_view::npos ? std::string_view() : input.substr(split + 1);
  std::map<std::string, std::string> vars;
  while (!env_text.empty()) {
    size_t nl = env_text.find('\n');
    std::string_view line = env_text.substr(0, nl);
    env_text = nl == std::string_view::npos ? std::string_view() : env_text.substr(nl + 1);
    size_t eq = line.find('=');
    if (eq != std::string_view::npos) vars[std::string(line.substr(0, eq))] = line.substr(eq + 1);
  }
  EnvLookup env = [&vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };

  try {
    Environment e = parse_environment(env);
    if (e.command == Command::version) return 0;
    for (PluginKind kind : {PluginKind::main, PluginKind::ipam}) {
      try {
        NetConf conf = parse_config(config, e, kind);
        // What a successful parse feeds on: requests and results.
        (void)endpoint_request(e, conf, kind == PluginKind::main);
        if (conf.prev_result) {
          for (SpecVersion v : supported_versions()) (void)encode_result(*conf.prev_result, v);
        }
      } catch (const CniError& err) {
        check_code(err.code());
      }
    }
  } catch (const CniError& err) {
    check_code(err.code());
  }
  return 0;
}
