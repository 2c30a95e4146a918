#include "daemon/api_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
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
#include "common/api.hpp"
#include "common/error.hpp"
#include "common/free_memory.hpp"

namespace swarmnet::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t kBodyLimit = 1 << 20;
constexpr auto kIdleTimeout = std::chrono::seconds(60);

asio::awaitable<void> serve_connection(local::socket socket, const Router& router,
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
      ApiRequest request{std::string(req.method_string()), target, std::move(req.body()), {}};
      HttpReply reply = co_await router.dispatch(request);
      if (reply.stream) {
        co_await reply.stream(stream, req.version());
        break;
      }
      http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
      res.set(http::field::server, "swarmnetd");
      if (!reply.body.is_null()) {
        res.set(http::field::content_type, "application/json");
        res.body() = json::serialize(reply.body);
      }
      res.keep_alive(req.keep_alive() && !reply.sync_after_reply);
      if (reply.sync_after_reply) res.set(api::kSyncHeader, api::kSyncAfterReply);
      res.prepare_payload();
      if (*observer) {
        const json::object* o = reply.status >= 400 ? reply.body.if_object() : nullptr;
        const json::value* code = o ? o->if_contains("code") : nullptr;
        const auto agent = req[http::field::user_agent];
        (*observer)(RequestRecord{
            request.operation, std::string_view(agent.data(), agent.size()), reply.status,
            code && code->is_string() ? std::string_view(code->get_string()) : std::string_view(),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()});
      }
      // The body is sent from its serialized copy: its tree goes now, so
      // that a large reply does not hold both while the client reads.
      reply.body = nullptr;
      stream.expires_after(kIdleTimeout);
      if (reply.sync_after_reply) {
        // The sync runs whether the client is still there or not.
        boost::system::error_code write_error;
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, write_error));
        std::string line = std::string(api::kSyncedLine) + "\n";
        try {
          reply.sync_after_reply();
        } catch (const std::exception& e) {
          spdlog::error("api: {} {}: the change was not made durable: {}", request.method, target, e.what());
          line = std::string(api::kSyncFailedPrefix) + e.what() + "\n";
          std::replace(line.begin(), line.end() - 1, '\n', ' ');
        }
        if (!write_error) co_await asio::async_write(stream, asio::buffer(line), asio::use_awaitable);
        break;
      }
      co_await http::async_write(stream, res, asio::use_awaitable);
      const bool keep_alive = res.keep_alive();
      const size_t body_bytes = res.body().size();
      // Assigning an empty string would keep the capacity: swap it out.
      std::string().swap(res.body());
      // A large reply was a large tree and its text, both freed now: give
      // the pages back rather than keep them (common/free_memory.hpp).
      if (body_bytes >= kReturnFreeMemoryAfterBytes) return_free_memory();
      if (!keep_alive) break;
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

asio::awaitable<void> accept_loop(local::acceptor& acceptor, const Router& router,
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
                   serve_connection(std::move(socket), router, observer),
                   asio::detached);
  }
}

}  // namespace

ApiServer::ApiServer(asio::io_context& io, const Router& router, std::string socket_path)
    : io_(io),
      router_(router),
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
  asio::co_spawn(io_, accept_loop(acceptor_, router_, observer_), asio::detached);
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
