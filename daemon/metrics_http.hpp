// The metrics listener (swarmnetd --metrics-addr): plain HTTP/1.1 on a TCP
// socket of its own, answering GET /metrics with the registry in
// Prometheus' text format. It runs on the daemon's io_context thread, so the
// registry's collectors may read the daemon's tables without locks.
//
// It may listen on any address, the containers never reach it: the packet
// filter drops the port from the containers' bridges (daemon/firewall.hpp).
// Bounded whatever the peer does: at most kMaxConnections at once (more are
// closed at once), small requests only, an idle connection closes after a
// few seconds.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>

#include "metrics/registry.hpp"

namespace swarmnet::daemon {

// "IP:PORT" or "[IPv6]:PORT", a literal address and a port from 1 to 65535.
// Throws Error(invalid_argument) saying what is wrong.
boost::asio::ip::tcp::endpoint parse_metrics_address(const std::string& text);

class MetricsServer {
 public:
  static constexpr size_t kMaxConnections = 16;

  // Binds and listens (Error(unavailable) if the address cannot be bound),
  // then serves `registry` until close() or destruction.
  MetricsServer(boost::asio::io_context& io, boost::asio::ip::tcp::endpoint address,
                const metrics::Registry& registry);
  ~MetricsServer();
  void close();
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  struct State;  // shared with the connections' coroutines

 private:
  std::shared_ptr<State> state_;
};

}  // namespace swarmnet::daemon
