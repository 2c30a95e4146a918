#include "daemon/api_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>

#include "common/accept_backoff.hpp"
#include "common/error.hpp"
#include "common/event.hpp"
#include "common/json_fields.hpp"
#include "daemon/cluster.hpp"
#include "daemon/events.hpp"

namespace swarmnet::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t kBodyLimit = 1 << 20;
constexpr auto kIdleTimeout = std::chrono::seconds(60);
// How long an ADD waits for another node to hand over an address block.
constexpr auto kBlockWaitStep = std::chrono::milliseconds(100);
constexpr int kBlockWaitSteps = 50;

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

HttpReply error_reply(Errc code, const std::string& message) {
  return {http_status(code), json::value_from(api::ErrorBody{std::string(to_string(code)), message})};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "/v1/networks/a%2Fb/x" -> {"v1", "networks", "a/b", "x"}; query ignored.
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
      if (target[j] == '%' && j + 2 < end &&
          hex_value(target[j + 1]) >= 0 && hex_value(target[j + 2]) >= 0) {
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

HttpReply route(Controller& c, Cluster* cluster, const std::string& method,
                const std::vector<std::string>& p, const std::string& body) {
  auto is = [&](std::initializer_list<const char*> fixed) {
    if (p.size() < fixed.size()) return false;
    size_t i = 0;
    for (const char* f : fixed) {
      if (f[0] != '*' && p[i] != f) return false;
      ++i;
    }
    return true;
  };
  const size_t n = p.size();
  if (n == 2 && is({"v1", "status"}) && method == "GET") return {200, json::value_from(c.status())};
  if (n == 2 && is({"v1", "networks"})) {
    if (method == "GET") return {200, encode_list(c.list_networks())};
    if (method == "POST") {
      return {201, json::value_from(c.create_network(decode<api::NetworkCreate>(body, "network")))};
    }
  }
  if (n == 3 && is({"v1", "networks", "*"})) {
    if (method == "GET") return {200, json::value_from(c.inspect_network(p[2]))};
    if (method == "DELETE") {
      c.remove_network(p[2]);
      return {204, nullptr};
    }
  }
  if (n == 4 && is({"v1", "networks", "*", "endpoints"})) {
    if (method == "GET") return {200, encode_list(c.list_endpoints(p[2]))};
    if (method == "POST") {
      auto [ep, created] = c.create_endpoint(p[2], decode<api::EndpointCreate>(body, "endpoint"));
      return {created ? 201u : 200u, json::value_from(ep)};
    }
  }
  if (n == 6 && is({"v1", "networks", "*", "endpoints", "*", "*"})) {
    if (method == "GET") return {200, json::value_from(c.get_endpoint(p[2], p[4], p[5]))};
    if (method == "PATCH") {
      return {200, json::value_from(c.update_endpoint(
                       p[2], p[4], p[5], decode<api::EndpointUpdate>(body, "endpoint update")))};
    }
    if (method == "DELETE") {
      c.delete_endpoint(p[2], p[4], p[5]);
      return {204, nullptr};
    }
  }
  if (n == 2 && is({"v1", "cluster"}) && method == "GET") {
    return {200, cluster ? need_cluster(cluster).status_json() : json::value(json::object{{"active", false}})};
  }
  if (n == 2 && is({"v1", "nodes"}) && method == "GET") return {200, need_cluster(cluster).nodes_json()};
  if (n == 3 && is({"v1", "nodes", "*"}) && method == "DELETE") {
    return {200, need_cluster(cluster).remove_node(p[2])};
  }
  if (n == 3 && is({"v1", "cluster", "init"}) && method == "POST") {
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
  if (n == 3 && is({"v1", "cluster", "token"}) && method == "GET") {
    return {200, json::object{{"token", need_cluster(cluster).token()}}};
  }
  if (n == 3 && is({"v1", "cluster", "rotate-key"}) && method == "POST") {
    need_cluster(cluster).rotate_key();
    return {202, json::object{{"status", "rotation started"}}};
  }
  if (n == 3 && is({"v1", "cluster", "force-new-cluster"}) && method == "POST") {
    return {200, json::object{{"dropped", need_cluster(cluster).force_new_cluster()}}};
  }
  if (n == 4 && is({"v1", "networks", "*", "gc"}) && method == "POST") {
    return {200, json::value_from(c.gc(p[2], decode<api::GcRequest>(body, "gc request")))};
  }
  return error_reply(Errc::not_found, "no route for " + method + " /" + [&] {
    std::string s;
    for (size_t i = 0; i < p.size(); ++i) s += (i ? "/" : "") + p[i];
    return s;
  }());
}

}  // namespace

HttpReply handle_request(Controller& controller, Cluster* cluster, const std::string& method,
                         const std::string& target, const std::string& body, const RouteHandlers* extra) {
  try {
    const std::vector<std::string> path = split_path(target);
    if (extra) {
      for (const RouteHandler& handler : *extra)
        if (auto reply = handler(method, path, body)) return std::move(*reply);
    }
    return route(controller, cluster, method, path, body);
  } catch (const BlockNeeded& e) {
    HttpReply r = error_reply(e.code(), e.what());
    r.block_needed_for = e.network_id();
    return r;
  } catch (const Error& e) {
    if (e.code() == Errc::internal) spdlog::error("{} {}: {}", method, target, e.what());
    return error_reply(e.code(), e.what());
  } catch (const std::exception& e) {
    // Boost.JSON conversion errors and the like: the body was not what we expect.
    spdlog::error("{} {}: {}", method, target, e.what());
    return error_reply(Errc::internal, e.what());
  }
}

namespace {

// join and leave finish later (the gossip exchange): the reply waits for them.
struct Pending {
  bool finished = false;
  std::optional<std::string> error;
  asio::steady_timer timer;
  explicit Pending(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
};

asio::awaitable<HttpReply> cluster_async(Cluster& cluster, const std::string& what,
                                         const std::string& body) {
  auto pending = std::make_shared<Pending>(co_await asio::this_coro::executor);
  auto finish = [pending](std::optional<std::string> error) {
    pending->finished = true;
    pending->error = std::move(error);
    pending->timer.cancel();
  };
  try {
    if (what == "join") {
      json::value v = json_fields::parse(body, "cluster join");
      const auto& o = json_fields::as_object(v, "body");
      cluster.join(json_fields::required_string(o, "token"), advertise_of(o), finish);
    } else {
      cluster.leave([finish] { finish(std::nullopt); });
    }
  } catch (const Error& e) {
    co_return error_reply(e.code(), e.what());
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

using ApiStream = beast::basic_stream<local, asio::any_io_executor, beast::unlimited_rate_policy>;

// A stream of events may wait as long as a write to its client.
constexpr auto kEventWriteTimeout = std::chrono::seconds(30);

// GET /v1/events: one JSON event a line in a chunked reply that lasts until
// the client goes, or falls so far behind that the bus cuts it off (the
// last line says so, daemon/events.hpp). A client that stops reading is let
// go after kEventWriteTimeout.
asio::awaitable<void> stream_events(ApiStream& stream, unsigned version, std::string_view query, EventBus& bus) {
  EventFilter filter;
  std::optional<HttpReply> refused;
  try {
    filter = EventFilter::from_query(query);
  } catch (const Error& e) {
    refused = error_reply(e.code(), e.what());
  }
  if (refused) {
    const HttpReply& reply = *refused;
    http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
    res.set(http::field::content_type, "application/json");
    res.body() = json::serialize(reply.body);
    res.keep_alive(false);
    res.prepare_payload();
    stream.expires_after(kIdleTimeout);
    co_await http::async_write(stream, res, asio::use_awaitable);
    co_return;
  }
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

asio::awaitable<void> serve_connection(local::socket socket, Controller& controller,
                                       Cluster* cluster, EventBus* events, std::shared_ptr<RouteHandlers> extra,
                                       std::shared_ptr<RequestObserver> observer) {
  ApiStream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(kBodyLimit);
      stream.expires_after(kIdleTimeout);
      co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
      auto& req = parser.get();
      const auto started = std::chrono::steady_clock::now();
      const std::string target(req.target());
      if (events && req.method() == http::verb::get && split_path(target) == std::vector<std::string>{"v1", "events"}) {
        const auto q = target.find('?');
        co_await stream_events(stream, req.version(),
                               q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1),
                               *events);
        break;
      }
      HttpReply reply;
      if (cluster && req.method() == http::verb::post &&
          (target == "/v1/cluster/join" || target == "/v1/cluster/leave")) {
        reply = co_await cluster_async(*cluster, target.substr(12), req.body());
      } else {
        reply = handle_request(controller, cluster, std::string(req.method_string()), target,
                               req.body(), extra.get());
      }
      // Out of addresses here but other nodes own blocks: ask, wait for a
      // block to arrive by gossip, retry; the caller sees only the outcome.
      for (int attempt = 0; !reply.block_needed_for.empty() && attempt < kBlockWaitSteps; ++attempt) {
        controller.request_block(reply.block_needed_for);
        asio::steady_timer timer(co_await asio::this_coro::executor);
        timer.expires_after(kBlockWaitStep);
        co_await timer.async_wait(asio::use_awaitable);
        reply = handle_request(controller, cluster, std::string(req.method_string()), target,
                               req.body(), extra.get());
      }
      http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
      res.set(http::field::server, "swarmnetd");
      if (!reply.body.is_null()) {
        res.set(http::field::content_type, "application/json");
        res.body() = json::serialize(reply.body);
      }
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      if (*observer) {
        const json::object* o = reply.status >= 400 ? reply.body.if_object() : nullptr;
        const json::value* code = o ? o->if_contains("code") : nullptr;
        const auto method = req.method_string();
        const auto agent = req[http::field::user_agent];
        (*observer)(RequestRecord{
            std::string_view(method.data(), method.size()), target, std::string_view(agent.data(), agent.size()),
            reply.status,
            code && code->is_string() ? std::string_view(code->get_string()) : std::string_view(),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()});
      }
      stream.expires_after(kIdleTimeout);
      co_await http::async_write(stream, res, asio::use_awaitable);
      if (!res.keep_alive()) break;
    }
  } catch (const boost::system::system_error& e) {
    if (e.code() != http::error::end_of_stream && e.code() != asio::error::eof &&
        e.code() != beast::error::timeout && e.code() != asio::error::connection_reset &&
        e.code() != asio::error::broken_pipe) {
      spdlog::warn("api connection: {}", e.code().message());
      // A malformed request gets a 400 if the socket still takes it.
      if (e.code().category() == http::make_error_code(http::error::bad_target).category()) {
        http::response<http::string_body> res{http::status::bad_request, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = json::serialize(json::value_from(
            api::ErrorBody{"invalid_argument", "malformed HTTP request: " + e.code().message()}));
        res.keep_alive(false);
        res.prepare_payload();
        boost::system::error_code ignored;
        http::write(stream, res, ignored);
      }
    }
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(local::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(local::acceptor& acceptor, Controller& controller,
                                  Cluster* cluster, EventBus* events, std::shared_ptr<RouteHandlers> extra,
                                  std::shared_ptr<RequestObserver> observer) {
  AcceptBackoff backoff("api accept");
  for (;;) {
    boost::system::error_code ec;
    local::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors, the connection waits in the backlog: no spinning.
      co_await backoff.failed(ec);
      continue;
    }
    backoff.succeeded();
    asio::co_spawn(acceptor.get_executor(),
                   serve_connection(std::move(socket), controller, cluster, events, extra, observer),
                   asio::detached);
  }
}

}  // namespace

ApiServer::ApiServer(asio::io_context& io, Controller& controller, Cluster* cluster,
                     std::string socket_path, EventBus* events)
    : io_(io),
      controller_(controller),
      cluster_(cluster),
      events_(events),
      socket_path_(std::move(socket_path)),
      acceptor_(io) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(socket_path_).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(Errc::internal, "cannot create " + dir.string() + ": " + ec.message());
  }
  if (fs::exists(socket_path_)) {
    // Another daemon answering there must not be cut off; a dead one's file goes.
    local::socket probe(io);
    boost::system::error_code ec;
    probe.connect(local::endpoint(socket_path_), ec);
    if (!ec) {
      throw Error(Errc::conflict, "another swarmnetd is already serving " + socket_path_);
    }
    ::unlink(socket_path_.c_str());
  }
  acceptor_.open(local());
  // umask for the bind so the socket is never briefly reachable by others.
  mode_t old = ::umask(0177);
  boost::system::error_code ec;
  acceptor_.bind(local::endpoint(socket_path_), ec);
  ::umask(old);
  if (ec) throw Error(Errc::internal, "cannot bind " + socket_path_ + ": " + ec.message());
  ::chmod(socket_path_.c_str(), 0600);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(io_, accept_loop(acceptor_, controller_, cluster_, events_, extra_, observer_), asio::detached);
  spdlog::info("API listening on {}", socket_path_);
}

ApiServer::~ApiServer() { close(); }

void ApiServer::close() {
  if (!acceptor_.is_open()) return;
  boost::system::error_code ec;
  acceptor_.close(ec);
  ::unlink(socket_path_.c_str());
}

}  // namespace swarmnet::daemon
