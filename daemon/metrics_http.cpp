#include "daemon/metrics_http.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sstream>

#include "common/accept_backoff.hpp"
#include "common/error.hpp"
#include "common/ipv4.hpp"

namespace swarmnet::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(10);
constexpr size_t kHeaderLimit = 8 * 1024;
// What Prometheus sends in Accept for the text format; the answer says it.
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

tcp::endpoint parse_metrics_address(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return Error(Errc::invalid_argument, "--metrics-addr " + text + ": " + why + " (expected IP:PORT or [IPv6]:PORT)");
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) throw bad("no port");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    throw bad("an IPv6 address goes in brackets");
  }
  const auto port = parse_port(text.substr(colon + 1));
  if (!port || *port == 0) throw bad("the port must be a number from 1 to 65535");
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) throw bad("\"" + host + "\" is not an IP address");
  return {address, *port};
}

struct MetricsServer::State {
  State(asio::io_context& io, const metrics::Registry& r) : acceptor(io), registry(r) {}
  tcp::acceptor acceptor;
  const metrics::Registry& registry;
  size_t connections = 0;
};

namespace {

using State = std::shared_ptr<void>;

http::response<http::string_body> answer(const http::request<http::empty_body>& req,
                                         const metrics::Registry& registry) {
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  auto reply = [&](http::status status, std::string body, const char* type) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "swarmnetd");
    res.set(http::field::content_type, type);
    res.body() = std::move(body);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return res;
  };
  if (path != "/metrics") return reply(http::status::not_found, "only /metrics is served here\n", "text/plain");
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    auto res = reply(http::status::method_not_allowed, "GET /metrics\n", "text/plain");
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  auto res = reply(http::status::ok, registry.render(), kContentType);
  if (req.method() == http::verb::head) {
    const auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

asio::awaitable<void> serve(tcp::socket socket, std::shared_ptr<MetricsServer::State> state) {
  ++state->connections;
  struct Count {
    size_t& n;
    ~Count() { --n; }
  } count{state->connections};
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(kHeaderLimit);
  try {
    for (;;) {
      // No request here has a body: a body is refused by the parser's limit.
      http::request_parser<http::empty_body> parser;
      parser.header_limit(kHeaderLimit);
      stream.expires_after(kIdleTimeout);
      co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
      auto res = answer(parser.get(), state->registry);
      stream.expires_after(kIdleTimeout);
      co_await http::async_write(stream, res, asio::use_awaitable);
      if (!res.keep_alive()) break;
    }
  } catch (const boost::system::system_error& e) {
    // A peer that goes away or sends garbage only loses its connection.
    spdlog::debug("metrics connection: {}", e.code().message());
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(std::shared_ptr<MetricsServer::State> state) {
  AcceptBackoff backoff("metrics accept");
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await state->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !state->acceptor.is_open()) co_return;
    if (ec) {
      co_await backoff.failed(ec);
      continue;
    }
    backoff.succeeded();
    // Over the cap the connection is closed at once (by going out of scope):
    // a scraper retries at its next interval.
    if (state->connections >= MetricsServer::kMaxConnections) continue;
    asio::co_spawn(state->acceptor.get_executor(), serve(std::move(socket), state), asio::detached);
  }
}

}  // namespace

MetricsServer::MetricsServer(asio::io_context& io, tcp::endpoint address, const metrics::Registry& registry)
    : state_(std::make_shared<State>(io, registry)) {
  boost::system::error_code ec;
  auto& a = state_->acceptor;
  a.open(address.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && address.address().is_v6()) a.set_option(asio::ip::v6_only(true), ec);
  if (!ec) a.bind(address, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::ostringstream where;
    where << address;
    throw Error(Errc::unavailable, "metrics: cannot listen on " + where.str() + ": " + ec.message());
  }
  asio::co_spawn(io, accept_loop(state_), asio::detached);
  std::ostringstream where;
  where << local_endpoint();
  spdlog::info("metrics: Prometheus metrics on http://{}/metrics", where.str());
}

MetricsServer::~MetricsServer() { close(); }

void MetricsServer::close() {
  boost::system::error_code ec;
  state_->acceptor.close(ec);
}

tcp::endpoint MetricsServer::local_endpoint() const {
  boost::system::error_code ec;
  return state_->acceptor.local_endpoint(ec);
}

}  // namespace swarmnet::daemon
