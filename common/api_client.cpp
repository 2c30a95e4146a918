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

ApiResponse PendingRequest::response() {
  const std::string& where = conn_.where();
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  std::string buffer;
  char chunk[16384];
  bool eof = false;
  while (!parser.is_done()) {
    if (!eof) {
      pollfd p{conn_.fd(), POLLIN, 0};
      int r = ::poll(&p, 1, remaining_ms(deadline_));
      if (r == 0) throw Error(Errc::unavailable, where + " did not answer within " +
                                                     std::to_string(timeout_.count()) + " ms");
      if (r < 0) {
        if (errno == EINTR) continue;
        throw_errno(Errc::internal, "poll", errno);
      }
      ssize_t n = ::recv(conn_.fd(), chunk, sizeof(chunk), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno(Errc::unavailable, "reading from " + where, errno);
      }
      if (n == 0) eof = true;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    boost::beast::error_code ec;
    if (eof && !parser.got_some() && buffer.empty()) {
      // A daemon killed after accepting us: Beast would take the bare EOF
      // for an empty "200 OK", so say what it is.
      throw Error(Errc::unavailable, where + " closed the connection without answering");
    }
    if (eof && buffer.empty()) {
      parser.put_eof(ec);
      if (ec || !parser.is_done()) throw Error(Errc::unavailable, where + " closed the connection mid-reply");
      break;
    }
    size_t used = parser.put(boost::asio::buffer(buffer), ec);
    if (ec == http::error::need_more) {
      ec = {};
      if (eof) {
        buffer.erase(0, used);
        parser.put_eof(ec);
        if (ec || !parser.is_done()) throw Error(Errc::unavailable, where + " closed the connection mid-reply");
        break;
      }
    } else if (ec) {
      throw Error(Errc::internal, "malformed HTTP reply from " + where + ": " + ec.message());
    }
    buffer.erase(0, used);
  }

  ApiResponse out;
  auto& res = parser.get();
  out.status = res.result_int();
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
