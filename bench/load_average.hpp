// The machine's load average, which every benchmark prints beside its
// figures (a ratio taken while the CPU is saturated says little).
#pragma once

#include <fstream>
#include <string>

namespace swarmnet::bench {

// The 1, 5 and 15 minute averages from /proc/loadavg ("?" if unreadable).
inline std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  if (!(in >> one >> five >> fifteen)) return "?";
  return one + " " + five + " " + fifteen;
}

}  // namespace swarmnet::bench
