// `swarmnetctl events`: prints the daemon's event stream (GET /v1/events)
// as it comes, one line per event, until the daemon ends it or the command
// is interrupted.
#pragma once

#include <string>

#include "common/event.hpp"

namespace swarmnet::ctl {

// format: "text" (as docker events) or "json" (the API's lines as they are).
// Returns the exit status: 0 when the daemon ended the stream, 1 when it cut
// this client off for falling behind (the last line says so). Throws
// Error(unavailable) when the daemon cannot be reached or goes away, the
// daemon's Error for a refused request (a bad filter).
int print_events(const std::string& socket_path, const EventFilter& filter, const std::string& format);

}  // namespace swarmnet::ctl
