#include "plugin/cni/skel.hpp"

#include <iostream>
#include <iterator>
#include <string_view>

#include "common/log.hpp"
#include "common/version.hpp"

namespace swarmnet::cni {

namespace {

void print_help(const PluginInfo& info, std::ostream& out) {
  out << info.program << " " << kVersion << ": " << info.summary << "\n\n"
      << "A CNI plugin: the container runtime runs it with CNI_COMMAND (ADD, DEL, CHECK, GC,\n"
      << "STATUS, VERSION), CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH in\n"
      << "the environment and the network configuration on stdin. It talks to swarmnetd on\n"
      << "\"daemonSocket\" (default " << api::kDefaultSocket << ").\n"
      << "CNI spec versions: " << supported_versions_text() << "\n"
      << "Error codes: see plugin/cni/README.md.\n\n"
      << "Options (only without CNI_COMMAND):\n"
      << "  --help     this text\n"
      << "  --version  the program and CNI spec versions\n";
}

int fail(const CniError& e, SpecVersion version, bool logging_ready, const Io& io) {
  io.out << encode_error(e, version) << std::endl;
  // spdlog's default logger writes to stdout, which belongs to the protocol:
  // before init_logging() the line goes to stderr by hand.
  if (logging_ready) {
    spdlog::error("{}{}{}", e.msg(), e.details().empty() ? "" : ": ", e.details());
  } else {
    io.err << "error: " << e.msg() << (e.details().empty() ? "" : ": ") << e.details() << "\n";
  }
  return 1;
}

}  // namespace

int run_plugin(const PluginInfo& info, const Handlers& handlers, const Io& io, int argc,
               const char* const* argv) {
  if (!io.env("CNI_COMMAND")) {
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "--help" || a == "-h") {
        print_help(info, io.out);
        return 0;
      }
      if (a == "--version") {
        io.out << info.program << " " << kVersion << " (CNI " << supported_versions_text() << ")\n";
        return 0;
      }
    }
    io.err << info.program << ": CNI_COMMAND is not set; this is a CNI plugin run by a container "
           << "runtime (see --help)\n";
  }

  SpecVersion version = kLatestVersion;  // for errors until the config says otherwise
  bool logging_ready = false;
  try {
    Environment env = parse_environment(io.env);
    if (env.command == Command::version) {
      io.out << encode_version_reply() << std::endl;
      return 0;
    }
    std::string text = io.read_stdin();
    if (auto v = peek_version(text)) version = *v;
    NetConf conf = parse_config(text, env, info.kind);
    try {
      init_logging(info.program, conf.log_level, conf.log_file);
    } catch (const Error& e) {
      throw CniError(code::kInvalidConfig, e.what());
    }
    logging_ready = true;
    spdlog::debug("{} container={} ifname={} netns={} network={}", to_string(env.command),
                  env.container_id, env.ifname, env.netns, conf.network);

    switch (env.command) {
      case Command::add: {
        Result r = handlers.add(env, conf);
        io.out << encode_result_text(r, conf.version) << std::endl;
        break;
      }
      case Command::del:
        handlers.del(env, conf);
        break;
      case Command::check:
        handlers.check(env, conf);
        break;
      case Command::gc:
        handlers.gc(env, conf);
        break;
      case Command::status:
        handlers.status(env, conf);
        break;
      case Command::version:
        break;  // answered above
    }
    return 0;
  } catch (const CniError& e) {
    return fail(e, version, logging_ready, io);
  } catch (const Error& e) {
    return fail(from_error(e), version, logging_ready, io);
  } catch (const std::exception& e) {
    return fail(CniError(code::kDaemonOrKernel, std::string("internal error: ") + e.what()),
                version, logging_ready, io);
  }
}

int plugin_main(const PluginInfo& info, const Handlers& handlers, int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  Io io{process_environment(),
        [] {
          return std::string(std::istreambuf_iterator<char>(std::cin),
                             std::istreambuf_iterator<char>());
        },
        std::cout, std::cerr};
  return run_plugin(info, handlers, io, argc, argv);
}

}  // namespace swarmnet::cni
