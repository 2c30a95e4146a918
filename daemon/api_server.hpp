// The HTTP/JSON API on a unix socket (docs/api.md), served by Boost.Beast
// with C++20 coroutines on the daemon's single io_context thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/json.hpp>
#include <string>

#include "daemon/controller.hpp"

namespace swarmnet::daemon {
class Cluster;
}

namespace swarmnet::daemon {

struct HttpReply {
  HttpReply(unsigned s = 200, boost::json::value b = nullptr) : status(s), body(std::move(b)) {}
  unsigned status = 200;
  boost::json::value body;  // null: no body (204)
  // Set when the request waits for an address block from another node: the
  // server asks for one and retries instead of answering at once.
  std::string block_needed_for;
};

// Routes one request to the controller. Never throws: errors become the
// API's error body with the matching status. Separate from the socket code
// so tests can drive it directly.
// `cluster` may be null (a daemon built without one, or unit tests).
HttpReply handle_request(Controller& controller, Cluster* cluster, const std::string& method,
                         const std::string& target, const std::string& body);

class ApiServer {
 public:
  // Binds the socket (mode 0600; a stale socket file is replaced, a live one
  // is an Error(conflict)) and starts accepting.
  ApiServer(boost::asio::io_context& io, Controller& controller, Cluster* cluster,
            std::string socket_path);
  ~ApiServer();

  // Stops accepting and removes the socket file.
  void close();

 private:
  boost::asio::io_context& io_;
  Controller& controller_;
  Cluster* cluster_;
  std::string socket_path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
};

}  // namespace swarmnet::daemon
