// The API's routes: one table of (method, path pattern, handler) that the
// HTTP transport (daemon/api_server.hpp) dispatches every request through.
// Each part of the daemon adds its own routes to it (add_*_routes below,
// daemon/service_api.hpp, daemon/network_view.hpp); docs/api.md lists the
// same table, and tests/test_api_docs.cpp checks that the two agree.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/json.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "daemon/controller.hpp"

namespace swarmnet::daemon {

class Cluster;
class EventBus;
class LoadBalancing;
class Services;
class Store;
}  // namespace swarmnet::daemon
namespace swarmnet::dns {
class Server;
}

namespace swarmnet::daemon {

using ApiStream = boost::beast::basic_stream<boost::asio::local::stream_protocol, boost::asio::any_io_executor,
                                             boost::beast::unlimited_rate_policy>;

struct HttpReply {
  HttpReply(unsigned s = 200, boost::json::value b = nullptr) : status(s), body(std::move(b)) {}
  unsigned status = 200;
  boost::json::value body;  // null: no body (204)
  // Set by a route that answers with a stream (GET /v1/events): the
  // transport hands it the connection instead of writing `body`, and closes
  // the connection when it returns.
  std::function<boost::asio::awaitable<void>(ApiStream&, unsigned http_version)> stream;
  // POST ...?sync=later (docs/api.md): the reply says `Swarmnet-Sync:
  // after-reply`; once it is written the transport runs this (the
  // fdatasync the reply did not wait for), writes "synced\n", or "failed:
  // REASON\n" if it threw, and closes the connection. The client goes on
  // meanwhile and reads that line before it acknowledges anything.
  std::function<void()> sync_after_reply;
};

// The operation of a request that matches no route.
inline constexpr std::string_view kOtherOperation = "other";

struct ApiRequest {
  std::string method;
  std::string target;  // as sent, with the query
  std::string body;
  // The pattern's placeholders, in order, percent-decoded.
  std::vector<std::string> params;
  // What follows '?' in the target ("" without one), not decoded.
  std::string_view query() const;
  // The matched route's operation (Router::Route), set by dispatch.
  std::string_view operation = kOtherOperation;
};

// Whether a query ("a=1&b") holds `item` ("b", "a=1") among its
// '&'-separated items, as sent (not decoded).
bool query_has(std::string_view query, std::string_view item);

// "/v1/networks/a%2Fb/x?q" -> {"v1", "networks", "a/b", "x"}.
std::vector<std::string> split_path(std::string_view target);

// The error body of every non-2xx reply, with its status.
HttpReply error_reply(Errc code, const std::string& message);

class Router {
 public:
  using Handler = std::function<HttpReply(const ApiRequest&)>;
  using AsyncHandler = std::function<boost::asio::awaitable<HttpReply>(const ApiRequest&)>;
  struct Route {
    std::string method;
    // "/v1/networks/NAME/endpoints": an upper-case segment is a
    // placeholder, matching any one segment; the rest match exactly.
    std::string pattern;
    // What metrics count the route's requests as ("network_create", ...):
    // a fixed set of label values, whatever clients send.
    std::string operation;
    AsyncHandler handler;
    bool waits = false;  // an AsyncHandler (it may wait for other nodes)
    Handler answer;      // the handler of a route that does not wait
    std::vector<std::string> segments;  // the pattern's
  };

  // With `ipam`, a request that needs an address block from another node
  // (its handler throws BlockNeeded) runs inside ClusterIpam::allocating:
  // it asks for a block and runs again when one arrives, and the caller
  // sees only the outcome. Without, BlockNeeded is answered at once.
  explicit Router(ClusterIpam* ipam = nullptr) : ipam_(ipam) {}

  // Both throw std::logic_error for a pattern that another route of the
  // same method already matches (a programming error).
  void add(std::string method, std::string pattern, std::string operation, Handler handler);
  void add_async(std::string method, std::string pattern, std::string operation, AsyncHandler handler);

  const std::vector<Route>& routes() const { return routes_; }
  // The operation of the route a request goes to; kOtherOperation for none.
  std::string_view operation_of(const std::string& method, const std::string& target) const;

  // The reply to one request (its params are filled in here). Never
  // throws: an unknown route is a 404, errors become the API's error body
  // with the matching status. `request` must outlive the wait: a named
  // object of the caller (GCC 12 destroys a temporary in a co_await
  // expression twice).
  boost::asio::awaitable<HttpReply> dispatch(ApiRequest& request) const;
  // The same without waiting: for tests, and callers that are no coroutine
  // (a route that waits runs on an io_context of its own).
  HttpReply answer(const std::string& method, const std::string& target, const std::string& body) const;

 private:
  const Route* match(const std::string& method, const std::vector<std::string>& path,
                     std::vector<std::string>& params) const;

  std::vector<Route> routes_;
  ClusterIpam* ipam_;
};

// The networks, endpoints and status (the controller's), the cluster and
// nodes (`cluster` may be null: those routes answer 503), and the event
// stream.
void add_controller_routes(Router& router, Controller& controller);
void add_cluster_routes(Router& router, Cluster* cluster);
void add_event_routes(Router& router, EventBus& events);

// What the daemon's routes answer from; every pointer may be null (those
// routes then answer 503, or, for the events and DNS, as a daemon without them).
struct ApiParts {
  Controller& controller;
  Store& store;
  Services& services;
  Cluster* cluster = nullptr;
  EventBus* events = nullptr;
  LoadBalancing* load_balancing = nullptr;
  const dns::Server* dns = nullptr;
  unsigned dns_rate_limit = 0;
};
// Every route swarmnetd serves: the table docs/api.md documents.
void add_all_routes(Router& router, const ApiParts& parts);

// The controller's and the cluster's routes, answered at once: for tests
// that drive the API without a socket.
HttpReply handle_request(Controller& controller, Cluster* cluster, const std::string& method,
                         const std::string& target, const std::string& body);

}  // namespace swarmnet::daemon
