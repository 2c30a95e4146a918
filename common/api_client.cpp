#include "common/api_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/api.hpp"
#include "common/error.hpp"

namespace swarmnet {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {


int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                    std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

DaemonConnection::DaemonConnection(const std::string& socket_path) : where_("swarmnetd at " + socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    throw Error(Errc::invalid_argument, "daemon socket path too long: " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw_errno(Errc::internal, "socket", errno);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd_);
    throw_errno(Errc::unavailable, "cannot reach " + where_ + " (is swarmnetd running?)", err);
  }
}

DaemonConnection::~DaemonConnection() {
  if (fd_ >= 0) ::close(fd_);
}

DaemonConnection::DaemonConnection(DaemonConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), where_(std::move(other.where_)) {}

void DaemonConnection::send_all(const std::string& data) const {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::unavailable, "sending to " + where_, errno);
    }
    sent += static_cast<size_t>(n);
  }
}

ApiClient::ApiClient(std::string socket_path, std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout) {}

PendingRequest ApiClient::send(const std::string& method, const std::string& target,
                              const json::value* body) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  DaemonConnection conn(socket_path_);

  std::string payload = body ? json::serialize(*body) : std::string();
  // The program's name tells the daemon's metrics who calls (the CNI
  // plugin, the Docker driver, swarmnetctl).
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: swarmnetd\r\nConnection: close\r\nUser-Agent: " +
                    program_invocation_short_name + "\r\n";
  if (body) req += "Content-Type: application/json\r\n";
  req += "Content-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload;

  conn.send_all(req);
  return PendingRequest(std::move(conn), deadline, timeout_);
}

ApiResponse ApiClient::request(const std::string& method, const std::string& target,
                               const json::value* body) const {
  return send(method, target, body).response();
}

bool PendingRequest::read_more() {
  char chunk[16384];
  for (;;) {
    pollfd p{conn_.fd(), POLLIN, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline_));
    if (r == 0) {
      throw Error(Errc::unavailable,
                  conn_.where() + " did not answer within " + std::to_string(timeout_.count()) + " ms");
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::internal, "poll", errno);
    }
    ssize_t n = ::recv(conn_.fd(), chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::unavailable, "reading from " + conn_.where(), errno);
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return n > 0;
  }
}

ApiResponse PendingRequest::response() {
  const std::string& where = conn_.where();
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  bool eof = false;
  while (!parser.is_done()) {
    // What is buffered is parsed before reading more: put() stops at the end
    // of the header, and the body is often here already. Reading first would
    // wait for the daemon to close the connection, which it may do only
    // after work of its own (?sync=later's fdatasync).
    if (!buffer_.empty()) {
      boost::beast::error_code ec;
      const size_t used = parser.put(boost::asio::buffer(buffer_), ec);
      buffer_.erase(0, used);
      if (ec && ec != http::error::need_more) {
        throw Error(Errc::internal, "malformed HTTP reply from " + where + ": " + ec.message());
      }
      if (!ec && used > 0) continue;
    }
    if (eof) {
      // A daemon killed after accepting us: Beast would take the bare EOF
      // for an empty "200 OK", so say what it is.
      if (!parser.got_some()) throw Error(Errc::unavailable, where + " closed the connection without answering");
      boost::beast::error_code ec;
      parser.put_eof(ec);
      if (ec || !parser.is_done()) throw Error(Errc::unavailable, where + " closed the connection mid-reply");
      break;
    }
    eof = !read_more();
  }

  ApiResponse out;
  auto& res = parser.get();
  out.status = res.result_int();
  sync_pending_ = res[api::kSyncHeader] == api::kSyncAfterReply;
  responded_ = true;
  if (!res.body().empty()) {
    boost::system::error_code ec;
    out.body = json::parse(res.body(), ec);
    if (ec) throw Error(Errc::internal, "reply from " + where + " is not JSON: " + ec.message());
  }
  return out;
}

json::value ApiClient::call(const std::string& method, const std::string& target,
                            const json::value* body) const {
  return send(method, target, body).result();
}

void PendingRequest::wait_synced() {
  if (!responded_) throw Error(Errc::internal, "wait_synced() before the reply to the request was read");
  if (!sync_pending_) return;
  sync_pending_ = false;
  // The sync has its own time: the caller's work since the reply is not
  // counted against it.
  deadline_ = std::chrono::steady_clock::now() + timeout_;
  size_t end;
  while ((end = buffer_.find('\n')) == std::string::npos) {
    if (!read_more()) {
      throw Error(Errc::unavailable, conn_.where() + " closed the connection before the change was durable");
    }
  }
  const std::string line = buffer_.substr(0, end);
  if (line == api::kSyncedLine) return;
  throw Error(Errc::unavailable, conn_.where() + " could not make the change durable: " +
                                     (line.starts_with(api::kSyncFailedPrefix)
                                          ? line.substr(api::kSyncFailedPrefix.size())
                                          : "unexpected \"" + line + "\""));
}

json::value PendingRequest::result() {
  ApiResponse r = response();
  if (r.status >= 200 && r.status < 300) return std::move(r.body);
  api::ErrorBody e{"internal", "HTTP " + std::to_string(r.status)};
  if (r.body.is_object()) {
    try {
      e = json::value_to<api::ErrorBody>(r.body);
    } catch (const std::exception&) {
    }
  }
  throw Error(errc_from_string(e.code), e.message);
}

std::string url_segment(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace swarmnet
