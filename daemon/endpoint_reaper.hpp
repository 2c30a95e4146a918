// Records of this node's CNI endpoints whose network namespace is gone and
// that no DEL removed (an ADD killed mid-way, a runtime that lost track and
// runs no GC) would hold their addresses forever. The reaper releases such an
// endpoint, as a DEL would, once its namespace has been missing for a while
// (--reap-after-s): long enough for a runtime's own DEL or GC to come first.
// Only CNI endpoints qualify: the others (service VIPs, the ingress sandbox,
// Docker's) record no namespace path of their own.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <string>

#include "daemon/controller.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

class EndpointReaper {
 public:
  using Clock = std::chrono::steady_clock;
  // Whether a namespace path still exists (a fake in unit tests).
  using PathExists = std::function<bool(const std::string& path)>;
  static bool path_exists(const std::string& path);

  EndpointReaper(boost::asio::io_context& io, Store& store, Controller& controller,
                 std::chrono::seconds after, PathExists exists = path_exists);
  // Sweeps periodically from now on (nothing if `after` is 0: reaping off).
  void start();
  // One pass: notes namespaces newly missing, releases the endpoints whose
  // namespace has been missing for `after`. Returns how many it released.
  size_t sweep(Clock::time_point now);

 private:
  void schedule();

  Store& store_;
  Controller& controller_;
  std::chrono::seconds after_;
  PathExists exists_;
  boost::asio::steady_timer timer_;
  std::map<std::string, Clock::time_point> missing_since_;  // by endpoint key
};

}  // namespace swarmnet::daemon
