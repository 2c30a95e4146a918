// The shared main of both CNI plugins: reads the environment and stdin,
// validates them, runs one command and prints the result or the spec's error
// JSON. Every failure of every handler ends here, so stdout always carries
// valid CNI JSON and the exit status says which it is.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>

#include "plugin/cni/config.hpp"
#include "plugin/cni/protocol.hpp"

namespace swarmnet::cni {

struct PluginInfo {
  const char* program;  // "swarmnet"
  const char* summary;  // one line for --help
  PluginKind kind;
};

// ADD returns the result to print; the others print nothing on success.
struct Handlers {
  std::function<Result(const Environment&, const NetConf&)> add;
  std::function<void(const Environment&, const NetConf&)> del;
  std::function<void(const Environment&, const NetConf&)> check;
  std::function<void(const Environment&, const NetConf&)> gc;
  std::function<void(const Environment&, const NetConf&)> status;
};

struct Io {
  EnvLookup env;
  std::function<std::string()> read_stdin;
  std::ostream& out;
  std::ostream& err;
};

// Returns the exit status: 0 on success, 1 after printing an error.
int run_plugin(const PluginInfo& info, const Handlers& handlers, const Io& io, int argc,
               const char* const* argv);

// run_plugin() on the real process environment, stdin, stdout and stderr.
int plugin_main(const PluginInfo& info, const Handlers& handlers, int argc, char** argv);

}  // namespace swarmnet::cni
