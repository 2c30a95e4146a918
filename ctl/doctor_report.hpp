// `swarmnetctl doctor`'s verdicts and how they are shown: separate from the
// checks themselves, so the exit code and the output are tested without
// root or a kernel.
#pragma once

#include <boost/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace swarmnet::doctor {

enum class Status {
  ok,
  missing,           // swarmnet cannot work here without it
  optional_missing,  // swarmnet works without it, in a lesser way the detail names
  skipped,           // could not be checked (the daemon is down, no dockerd here)
};

std::string_view to_string(Status status);  // "ok", "missing", "optional missing", "skipped"

struct Check {
  std::string area;    // "kernel", "cni", "docker", "daemon", "peer", "mtu", "clock"
  std::string name;    // "vxlan", "swarmnet plugin", a peer's name, ...
  Status status = Status::ok;
  std::string detail;  // what was found
  std::string fix;     // what to do; empty when nothing is to be done
};

// 1 if anything required is missing, else 2 if an optional feature is
// missing, else 0. Skipped checks do not count: they say why in their line.
int exit_code(const std::vector<Check>& checks);

// One line per check, "STATUS  AREA NAME  DETAIL [fix: FIX]", columns
// aligned, then a one-line summary.
std::string to_text(const std::vector<Check>& checks);

// {"checks": [{"area", "name", "status", "detail", "fix"}...], "exit_code": N}
boost::json::value to_json(const std::vector<Check>& checks);

}  // namespace swarmnet::doctor
