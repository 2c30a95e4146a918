// The HTTP/JSON API on a unix socket (docs/api.md), served by Boost.Beast
// with C++20 coroutines on the daemon's single io_context thread. This is
// the transport only: every request goes through the route table
// (daemon/api_routes.hpp).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <memory>
#include <string>

#include "daemon/api_routes.hpp"

namespace swarmnet::daemon {

// One request answered, as metrics see it. `operation` is its route's
// (Router::Route::operation); `user_agent` names the calling program
// (ApiClient sends its own name: swarmnet, swarmnet-ipam, swarmnet-docker,
// swarmnetctl); `error` is the error body's code, "" on success.
struct RequestRecord {
  std::string_view operation, user_agent;
  unsigned status = 0;
  std::string_view error;
  double seconds = 0;
};
using RequestObserver = std::function<void(const RequestRecord&)>;

class ApiServer {
 public:
  // Binds the socket (mode 0600; a stale socket file is replaced, a live one
  // is an Error(conflict)) and starts accepting. `router` must outlive the
  // server and gets no more routes once requests come.
  ApiServer(boost::asio::io_context& io, const Router& router, std::string socket_path);
  ~ApiServer();

  // Stops accepting and removes the socket file.
  void close();
  // Told of every request once answered (before the first request).
  void set_request_observer(RequestObserver observer) { *observer_ = std::move(observer); }

 private:
  boost::asio::io_context& io_;
  const Router& router_;
  std::string socket_path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<RequestObserver> observer_ = std::make_shared<RequestObserver>();
};

}  // namespace swarmnet::daemon
