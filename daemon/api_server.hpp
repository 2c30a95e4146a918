// The HTTP/JSON API on a unix socket (docs/api.md), served by Boost.Beast
// with C++20 coroutines on the daemon's single io_context thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/json.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/controller.hpp"

namespace swarmnet::daemon {
class Cluster;
class EventBus;
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

// A part of the daemon with routes of its own (services, lb): returns
// nullopt for a path that is not its; may throw like the controller.
using RouteHandler = std::function<std::optional<HttpReply>(
    const std::string& method, const std::vector<std::string>& path, const std::string& body)>;
using RouteHandlers = std::vector<RouteHandler>;

// Routes one request to the controller (or to one of `extra`). Never
// throws: errors become the API's error body with the matching status.
// Separate from the socket code so tests can drive it directly.
// `cluster` may be null (a daemon built without one, or unit tests).
HttpReply handle_request(Controller& controller, Cluster* cluster, const std::string& method,
                         const std::string& target, const std::string& body,
                         const RouteHandlers* extra = nullptr);

// One request answered, as metrics see it. `user_agent` names the calling
// program (ApiClient sends its own name: swarmnet, swarmnet-ipam,
// swarmnet-docker, swarmnetctl); `error` is the error body's code, "" on success.
struct RequestRecord {
  std::string_view method, target, user_agent;
  unsigned status = 0;
  std::string_view error;
  double seconds = 0;
};
using RequestObserver = std::function<void(const RequestRecord&)>;

class ApiServer {
 public:
  // Binds the socket (mode 0600; a stale socket file is replaced, a live one
  // is an Error(conflict)) and starts accepting. `events` (may be null)
  // serves GET /v1/events.
  ApiServer(boost::asio::io_context& io, Controller& controller, Cluster* cluster,
            std::string socket_path, EventBus* events = nullptr);
  ~ApiServer();

  // Stops accepting and removes the socket file.
  void close();
  // More routes (before the first request).
  void add_routes(RouteHandler handler) { extra_->push_back(std::move(handler)); }
  // Told of every request once answered (before the first request).
  void set_request_observer(RequestObserver observer) { *observer_ = std::move(observer); }

 private:
  boost::asio::io_context& io_;
  Controller& controller_;
  Cluster* cluster_;
  EventBus* events_;
  std::string socket_path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<RouteHandlers> extra_ = std::make_shared<RouteHandlers>();
  std::shared_ptr<RequestObserver> observer_ = std::make_shared<RequestObserver>();
};

}  // namespace swarmnet::daemon
