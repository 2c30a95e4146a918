// The plugin's HTTP server on a unix socket, where dockerd finds it
// (/run/docker/plugins/swarmnet.sock). Docker keeps few connections and
// makes one call at a time per network operation, so a thread per
// connection with blocking Beast I/O is enough; the Driver serializes calls.
#pragma once

#include <atomic>
#include <string>

#include "plugin/docker/driver.hpp"

namespace swarmnet::docker {

class PluginServer {
 public:
  // Binds the socket (directory created, a stale socket file replaced; a
  // socket somebody answers on is Error(conflict)).
  PluginServer(Driver& driver, std::string socket_path);
  ~PluginServer();
  // Accepts until stop() (from another thread or a signal handler's thread).
  void run();
  void stop();

 private:
  Driver& driver_;
  std::string socket_path_;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
};

}  // namespace swarmnet::docker
