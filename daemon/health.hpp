// Health checks of this host's tasks: each task's own host checks it (a TCP
// connect, or an HTTP GET expecting 2xx/3xx, to the task's address from the
// host) every interval, and writes the verdict into the task's endpoint
// record, which gossip carries to every host: after `retries` failures in a
// row the task leaves every balancer and DNS answer; one success brings it
// back. Runs on the daemon's io_context; probes never block it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "daemon/store.hpp"

namespace swarmnet::daemon {

class HealthChecker {
 public:
  HealthChecker(boost::asio::io_context& io, Store& store);
  ~HealthChecker();
  void start();

 private:
  struct State {
    std::chrono::steady_clock::time_point next;
    unsigned failures = 0;
    bool running = false;
  };
  void tick();
  void probe(const std::string& key, const EndpointRecord& task, const HealthCheckRecord& check);
  void record(const std::string& key, bool ok, const std::string& detail);

  boost::asio::io_context& io_;
  Store& store_;
  boost::asio::steady_timer timer_;
  std::map<std::string, State> states_;  // by endpoint key
  bool swept_ = false;                   // every local task looked at once (the first tick)
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace swarmnet::daemon
