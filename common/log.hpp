// Logging for every swarmnet program: spdlog to stderr (journald or the
// runtime captures it), optionally also to a file.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace swarmnet {

// level: trace, debug, info, warn, error. log_file may be empty.
void init_logging(const std::string& program, const std::string& level,
                  const std::string& log_file = "");

}  // namespace swarmnet
