#include "daemon/api_routes.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <stdexcept>

#include "common/api.hpp"
#include "common/event.hpp"
#include "common/json_fields.hpp"
#include "daemon/cluster.hpp"
#include "daemon/controller.hpp"
#include "daemon/events.hpp"
#include "daemon/network_view.hpp"
#include "daemon/service_api.hpp"
#include "dns/server.hpp"

namespace swarmnet::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {

unsigned http_status(Errc code) {
  switch (code) {
    case Errc::invalid_argument: return 400;
    case Errc::not_found: return 404;
    case Errc::conflict:
    case Errc::exhausted: return 409;
    case Errc::unavailable: return 503;
    case Errc::internal: return 500;
  }
  return 500;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_placeholder(std::string_view segment) {
  if (segment.empty()) return false;
  for (char c : segment)
    if (!(c >= 'A' && c <= 'Z')) return false;
  return true;
}

// Runs a handler and turns what it throws into the error reply.
template <class Call>
HttpReply guarded(const ApiRequest& r, Call&& call) {
  try {
    return call();
  } catch (const Error& e) {
    if (e.code() == Errc::internal) spdlog::error("{} {}: {}", r.method, r.target, e.what());
    return error_reply(e.code(), e.what());
  } catch (const std::exception& e) {
    // Boost.JSON conversion errors and the like: the body was not what we expect.
    spdlog::error("{} {}: {}", r.method, r.target, e.what());
    return error_reply(Errc::internal, e.what());
  }
}

}  // namespace

bool query_has(std::string_view query, std::string_view item) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    if (query.substr(0, amp) == item) return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

std::string_view ApiRequest::query() const {
  const size_t q = target.find('?');
  return q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1);
}

std::vector<std::string> split_path(std::string_view target) {
  target = target.substr(0, target.find('?'));
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < target.size()) {
    if (target[i] == '/') {
      ++i;
      continue;
    }
    size_t end = target.find('/', i);
    if (end == std::string_view::npos) end = target.size();
    std::string seg;
    for (size_t j = i; j < end; ++j) {
      if (target[j] == '%' && j + 2 < end && hex_value(target[j + 1]) >= 0 && hex_value(target[j + 2]) >= 0) {
        seg += static_cast<char>(hex_value(target[j + 1]) * 16 + hex_value(target[j + 2]));
        j += 2;
      } else {
        seg += target[j];
      }
    }
    parts.push_back(std::move(seg));
    i = end;
  }
  return parts;
}

HttpReply error_reply(Errc code, const std::string& message) {
  return {http_status(code), json::value_from(api::ErrorBody{std::string(to_string(code)), message})};
}

void Router::add(std::string method, std::string pattern, std::string operation, Handler handler) {
  add_async(std::move(method), std::move(pattern), std::move(operation),
            [handler](const ApiRequest& r) -> asio::awaitable<HttpReply> { co_return handler(r); });
  routes_.back().waits = false;
  routes_.back().answer = std::move(handler);
}

void Router::add_async(std::string method, std::string pattern, std::string operation, AsyncHandler handler) {
  const std::vector<std::string> shape = split_path(pattern);
  for (const Route& r : routes_) {
    if (r.method != method) continue;
    const std::vector<std::string>& other = r.segments;
    bool same = other.size() == shape.size();
    for (size_t i = 0; same && i < shape.size(); ++i) {
      same = shape[i] == other[i] || is_placeholder(shape[i]) || is_placeholder(other[i]);
    }
    if (same) throw std::logic_error("route " + method + " " + pattern + " overlaps " + r.pattern);
  }
  routes_.push_back(
      Route{std::move(method), std::move(pattern), std::move(operation), std::move(handler), true, {}, shape});
}

const Router::Route* Router::match(const std::string& method, const std::vector<std::string>& path,
                                   std::vector<std::string>& params) const {
  for (const Route& r : routes_) {
    if (r.method != method) continue;
    const std::vector<std::string>& shape = r.segments;
    if (shape.size() != path.size()) continue;
    std::vector<std::string> found;
    bool ok = true;
    for (size_t i = 0; ok && i < shape.size(); ++i) {
      if (is_placeholder(shape[i])) {
        found.push_back(path[i]);
      } else {
        ok = shape[i] == path[i];
      }
    }
    if (!ok) continue;
    params = std::move(found);
    return &r;
  }
  return nullptr;
}

asio::awaitable<HttpReply> Router::dispatch(ApiRequest& request) const {
  std::vector<std::string> params;
  const std::vector<std::string> path = split_path(request.target);
  const Route* route = match(request.method, path, params);
  if (!route) {
    std::string p;
    for (const std::string& s : path) p += "/" + s;
    co_return error_reply(Errc::not_found, "no route for " + request.method + " " + (p.empty() ? "/" : p));
  }
  request.params = std::move(params);
  request.operation = route->operation;
  HttpReply reply;
  std::exception_ptr failure;
  try {
    if (ipam_ && route->answer) {
      // A route that may allocate an address: the cluster IPAM runs it
      // again when a block it waits for arrives.
      co_await ipam_->allocating([&] { reply = route->answer(request); });
    } else {
      reply = co_await route->handler(request);
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) reply = guarded(request, [&]() -> HttpReply { std::rethrow_exception(failure); });
  co_return reply;
}

std::string_view Router::operation_of(const std::string& method, const std::string& target) const {
  std::vector<std::string> params;
  const Route* route = match(method, split_path(target), params);
  return route ? std::string_view(route->operation) : kOtherOperation;
}

HttpReply Router::answer(const std::string& method, const std::string& target, const std::string& body) const {
  asio::io_context io;
  HttpReply reply;
  ApiRequest request{method, target, body, {}};
  asio::co_spawn(io, dispatch(request),
                 [&reply](std::exception_ptr, HttpReply r) { reply = std::move(r); });
  io.run();
  return reply;
}

namespace {

template <class T>
T decode(const std::string& body, const char* what) {
  json::value v = json_fields::parse(body, what);
  return json::value_to<T>(v);
}

template <class T>
json::value encode_list(const std::vector<T>& items) {
  json::array a;
  for (const auto& i : items) a.push_back(json::value_from(i));
  return a;
}

Cluster& need_cluster(Cluster* cluster) {
  if (!cluster) throw Error(Errc::unavailable, "this daemon has no cluster support");
  return *cluster;
}

Ipv4Address advertise_of(const json::object& o) {
  const std::string text = json_fields::required_string(o, "advertise_addr");
  auto ip = Ipv4Address::try_parse(text);
  if (!ip) throw Error(Errc::invalid_argument, "advertise_addr \"" + text + "\" is not an IPv4 address");
  return *ip;
}

HttpReply cluster_init(Cluster* cluster, const std::string& body) {
  json::value v = json_fields::parse(body, "cluster init");
  const auto& o = json_fields::as_object(v, "body");
  std::optional<Ipv4Prefix> ingress;
  if (auto subnet = json_fields::optional_string(o, "ingress_subnet")) {
    try {
      ingress = Ipv4Prefix::parse(*subnet);
    } catch (const Error& e) {
      throw Error(Errc::invalid_argument, std::string("ingress_subnet: ") + e.what());
    }
  }
  // Either field alone gives pools: a mask length alone applies to swarm's
  // default pool.
  std::optional<ipam::AddressPools> pools;
  const auto mask_length = json_fields::optional_uint(o, "default_addr_pool_mask_length", UINT32_MAX);
  const auto pool_texts = json_fields::string_array(o, "default_addr_pool");
  if (mask_length || !pool_texts.empty()) {
    pools = ipam::default_address_pools();
    if (!pool_texts.empty()) pools->pools.clear();
    for (const auto& text : pool_texts) {
      try {
        pools->pools.push_back(Ipv4Prefix::parse(text));
      } catch (const Error& e) {
        throw Error(Errc::invalid_argument, "invalid default address pool \"" + text + "\": " + e.what());
      }
    }
    if (mask_length) pools->mask_length = static_cast<unsigned>(*mask_length);
  }
  auto result = need_cluster(cluster).init(advertise_of(o), ingress, pools);
  json::array warnings;
  for (auto& w : result.warnings) warnings.emplace_back(w);
  return {201, json::object{{"token", result.token}, {"warnings", std::move(warnings)}}};
}

// join and leave finish later (the gossip exchange): the reply waits for them.
struct Pending {
  bool finished = false;
  std::optional<std::string> error;
  asio::steady_timer timer;
  explicit Pending(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
};

asio::awaitable<HttpReply> cluster_async(Cluster* cluster, const std::string what, const std::string body) {
  auto pending = std::make_shared<Pending>(co_await asio::this_coro::executor);
  auto finish = [pending](std::optional<std::string> error) {
    pending->finished = true;
    pending->error = std::move(error);
    pending->timer.cancel();
  };
  if (what == "join") {
    json::value v = json_fields::parse(body, "cluster join");
    const auto& o = json_fields::as_object(v, "body");
    need_cluster(cluster).join(json_fields::required_string(o, "token"), advertise_of(o), finish);
  } else {
    // Not through finish(std::nullopt): GCC 12 then warns (maybe-uninitialized)
    // on the empty optional's move.
    need_cluster(cluster).leave([pending] {
      pending->finished = true;
      pending->timer.cancel();
    });
  }
  if (!pending->finished) {
    pending->timer.expires_after(std::chrono::seconds(30));
    boost::system::error_code ec;
    co_await pending->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!pending->finished) co_return error_reply(Errc::unavailable, "cluster " + what + " timed out");
  if (pending->error) co_return error_reply(Errc::unavailable, "cluster " + what + ": " + *pending->error);
  co_return HttpReply{200, json::object{{"status", what == "join" ? "joined" : "left"}}};
}

// A stream of events may wait as long as a write to its client.
constexpr auto kEventWriteTimeout = std::chrono::seconds(30);

// GET /v1/events: one JSON event a line in a chunked reply that lasts until
// the client goes, or falls so far behind that the bus cuts it off (the
// last line says so, daemon/events.hpp). A client that stops reading is let
// go after kEventWriteTimeout.
asio::awaitable<void> stream_events(ApiStream& stream, unsigned version, EventFilter filter, EventBus& bus) {
  http::response<http::empty_body> res{http::status::ok, version};
  res.set(http::field::server, "swarmnetd");
  res.set(http::field::content_type, "application/x-ndjson");
  res.keep_alive(false);
  res.chunked(true);
  http::response_serializer<http::empty_body> serializer{res};
  stream.expires_after(kEventWriteTimeout);
  co_await http::async_write_header(stream, serializer, asio::use_awaitable);
  stream.expires_never();

  struct Waiter {
    asio::steady_timer timer;
    bool client_gone = false;
  };
  auto waiter = std::make_shared<Waiter>(Waiter{asio::steady_timer(stream.get_executor())});
  const std::string wanted = filter.empty() ? "all" : filter.query();
  auto subscription = bus.subscribe(std::move(filter), [w = std::weak_ptr<Waiter>(waiter)] {
    if (auto waiting = w.lock()) waiting->timer.cancel();
  });
  spdlog::debug("events: a client subscribed ({}); {} subscriber(s)", wanted, bus.subscribers());
  // The client says nothing more: readable means it closed (or broke the
  // protocol); either way the stream ends.
  stream.socket().async_wait(local::socket::wait_read, [waiter](const boost::system::error_code&) {
    waiter->client_gone = true;
    waiter->timer.cancel();
  });
  for (;;) {
    while (!subscription->has_pending() && !waiter->client_gone) {
      waiter->timer.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (waiter->client_gone) co_return;
    const bool last = subscription->lost();
    const std::string lines = subscription->take();
    stream.expires_after(kEventWriteTimeout);
    co_await asio::async_write(stream, http::make_chunk(asio::buffer(lines)), asio::use_awaitable);
    stream.expires_never();
    if (last) break;
  }
  stream.expires_after(kEventWriteTimeout);
  co_await asio::async_write(stream, http::make_chunk_last(), asio::use_awaitable);
}

}  // namespace

void add_controller_routes(Router& router, Controller& c) {
  using R = const ApiRequest&;
  router.add("GET", "/v1/status", "status", [&c](R) { return HttpReply{200, json::value_from(c.status())}; });
  router.add("GET", "/v1/networks", "network_list", [&c](R) { return HttpReply{200, encode_list(c.list_networks())}; });
  router.add("POST", "/v1/networks", "network_create", [&c](R r) {
    return HttpReply{201, json::value_from(c.create_network(decode<api::NetworkCreate>(r.body, "network")))};
  });
  router.add("GET", "/v1/networks/NAME", "network_inspect",
             [&c](R r) { return HttpReply{200, json::value_from(c.inspect_network(r.params[0]))}; });
  router.add("DELETE", "/v1/networks/NAME", "network_delete", [&c](R r) {
    c.remove_network(r.params[0]);
    return HttpReply{204, nullptr};
  });
  router.add("GET", "/v1/networks/NAME/endpoints", "endpoint_list",
             [&c](R r) { return HttpReply{200, encode_list(c.list_endpoints(r.params[0]))}; });
  router.add("POST", "/v1/networks/NAME/endpoints", "endpoint_create", [&c](R r) {
    // ?sync=later: the reply goes before the record's fdatasync, which runs
    // once it is written, while the client goes on (the CNI plugin makes
    // the container's interface meanwhile); the line after the reply says
    // when it is durable (HttpReply::sync_after_reply).
    const bool sync_later = query_has(r.query(), "sync=later");
    auto [ep, created] = c.create_endpoint(r.params[0], decode<api::EndpointCreate>(r.body, "endpoint"), sync_later);
    HttpReply reply{created ? 201u : 200u, json::value_from(ep)};
    if (sync_later) reply.sync_after_reply = [&c] { c.sync_state(); };
    return reply;
  });
  router.add("GET", "/v1/networks/NAME/endpoints/CONTAINER/IFNAME", "endpoint_get", [&c](R r) {
    return HttpReply{200, json::value_from(c.get_endpoint(r.params[0], r.params[1], r.params[2]))};
  });
  router.add("PATCH", "/v1/networks/NAME/endpoints/CONTAINER/IFNAME", "endpoint_update", [&c](R r) {
    return HttpReply{200, json::value_from(c.update_endpoint(r.params[0], r.params[1], r.params[2],
                                                             decode<api::EndpointUpdate>(r.body, "endpoint update")))};
  });
  router.add("DELETE", "/v1/networks/NAME/endpoints/CONTAINER/IFNAME", "endpoint_delete", [&c](R r) {
    c.delete_endpoint(r.params[0], r.params[1], r.params[2]);
    return HttpReply{204, nullptr};
  });
  router.add("POST", "/v1/networks/NAME/gc", "gc", [&c](R r) {
    return HttpReply{200, json::value_from(c.gc(r.params[0], decode<api::GcRequest>(r.body, "gc request")))};
  });
}

void add_cluster_routes(Router& router, Cluster* cluster) {
  using R = const ApiRequest&;
  router.add("GET", "/v1/cluster", "cluster", [cluster](R) {
    return HttpReply{200, cluster ? cluster->status_json() : json::value(json::object{{"active", false}})};
  });
  router.add("POST", "/v1/cluster/init", "cluster", [cluster](R r) { return cluster_init(cluster, r.body); });
  router.add_async("POST", "/v1/cluster/join", "cluster",
                   [cluster](R r) { return cluster_async(cluster, "join", r.body); });
  router.add_async("POST", "/v1/cluster/leave", "cluster",
                   [cluster](R r) { return cluster_async(cluster, "leave", r.body); });
  router.add("GET", "/v1/cluster/token", "cluster",
             [cluster](R) { return HttpReply{200, json::object{{"token", need_cluster(cluster).token()}}}; });
  router.add("POST", "/v1/cluster/rotate-key", "cluster", [cluster](R) {
    need_cluster(cluster).rotate_key();
    return HttpReply{202, json::object{{"status", "rotation started"}}};
  });
  router.add("POST", "/v1/cluster/force-new-cluster", "cluster", [cluster](R) {
    return HttpReply{200, json::object{{"dropped", need_cluster(cluster).force_new_cluster()}}};
  });
  router.add("GET", "/v1/nodes", "cluster", [cluster](R) { return HttpReply{200, need_cluster(cluster).nodes_json()}; });
  router.add("DELETE", "/v1/nodes/NODE", "cluster",
             [cluster](R r) { return HttpReply{200, need_cluster(cluster).remove_node(r.params[0])}; });
}

void add_event_routes(Router& router, EventBus& events) {
  // A stream: never counted by metrics (the reply outlives the request).
  router.add("GET", "/v1/events", "other", [&events](const ApiRequest& r) {
    HttpReply reply;
    auto filter = std::make_shared<EventFilter>(EventFilter::from_query(r.query()));
    reply.stream = [&events, filter](ApiStream& stream, unsigned version) {
      return stream_events(stream, version, std::move(*filter), events);
    };
    return reply;
  });
}

void add_all_routes(Router& router, const ApiParts& parts) {
  add_controller_routes(router, parts.controller);
  add_cluster_routes(router, parts.cluster);
  if (parts.events) add_event_routes(router, *parts.events);
  add_network_view_routes(router, parts.store, parts.controller, parts.cluster);
  add_service_routes(router, parts.services, parts.load_balancing);
  router.add("GET", "/v1/dns", "dns", [dns = parts.dns, rate = parts.dns_rate_limit](const ApiRequest&) {
    if (!dns) return HttpReply{200, json::object{{"enabled", false}}};
    const dns::ServerStats s = dns->stats();
    return HttpReply{200, json::object{{"enabled", true},
                                       {"rate_limit", rate},
                                       {"udp_queries", s.udp_queries},
                                       {"tcp_queries", s.tcp_queries},
                                       {"answered", s.answered},
                                       {"forwarded", s.forwarded},
                                       {"forward_failures", s.forward_failures},
                                       {"refused", s.refused},
                                       {"malformed", s.malformed},
                                       {"truncated", s.truncated},
                                       {"over_limit_refused", s.over_limit_refused},
                                       {"over_limit_dropped", s.over_limit_dropped}}};
  });
}

HttpReply handle_request(Controller& controller, Cluster* cluster, const std::string& method,
                         const std::string& target, const std::string& body) {
  Router router;
  add_controller_routes(router, controller);
  add_cluster_routes(router, cluster);
  return router.answer(method, target, body);
}

}  // namespace swarmnet::daemon
