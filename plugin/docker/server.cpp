#include "plugin/docker/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <filesystem>
#include <thread>

#include "common/error.hpp"
#include "common/log.hpp"

namespace swarmnet::docker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t kBodyLimit = 1 << 20;

bool someone_answers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

void serve(Driver& driver, int fd) {
  asio::io_context io;
  local::socket socket(io);
  boost::system::error_code ec;
  socket.assign(local(), fd, ec);
  if (ec) {
    ::close(fd);
    return;
  }
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    http::read(socket, buffer, parser, ec);
    if (ec) {
      if (ec != http::error::end_of_stream && ec != asio::error::eof &&
          ec != asio::error::connection_reset) {
        spdlog::debug("plugin connection: {}", ec.message());
        // A body too large or not HTTP: say so before closing.
        http::response<http::string_body> res{http::status::bad_request, 11};
        res.set(http::field::content_type, kContentType);
        res.body() = json::serialize(error_reply(Protocol::network, "bad request: " + ec.message()));
        res.prepare_payload();
        http::write(socket, res, ec);
      }
      return;
    }
    const auto& req = parser.get();
    std::string method(req.target());
    method = method.substr(0, method.find('?'));
    spdlog::debug("call {} {}", method, req.body());
    auto [status, reply] = driver.handle(method, req.body());
    http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
    res.set(http::field::content_type, kContentType);
    res.keep_alive(req.keep_alive());
    res.body() = json::serialize(reply);
    res.prepare_payload();
    spdlog::debug("reply {} {}", method, res.body());
    http::write(socket, res, ec);
    if (ec || !req.keep_alive()) return;
  }
}

}  // namespace

PluginServer::PluginServer(Driver& driver, std::string socket_path)
    : driver_(driver), socket_path_(std::move(socket_path)) {
  std::error_code fec;
  std::filesystem::create_directories(std::filesystem::path(socket_path_).parent_path(), fec);
  if (fec) throw Error(Errc::internal, "cannot create the directory of " + socket_path_ + ": " + fec.message());
  if (someone_answers(socket_path_)) {
    throw Error(Errc::conflict, "another plugin answers on " + socket_path_);
  }
  ::unlink(socket_path_.c_str());
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw_errno(Errc::internal, "socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof(addr.sun_path)) {
    throw Error(Errc::invalid_argument, "socket path too long: " + socket_path_);
  }
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path_.c_str());
  // Only root (dockerd) may talk to the plugin.
  mode_t old = ::umask(0177);
  int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::umask(old);
  if (rc != 0) throw_errno(Errc::internal, "bind " + socket_path_, err);
  if (::listen(listen_fd_, 64) != 0) throw_errno(Errc::internal, "listen " + socket_path_, errno);
}

PluginServer::~PluginServer() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void PluginServer::run() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (stopping_) break;
      if (errno == EMFILE || errno == ENFILE) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (errno == EINVAL || errno == EBADF) break;  // shut down
      continue;
    }
    std::thread([this, fd] {
      try {
        serve(driver_, fd);
      } catch (const std::exception& e) {
        spdlog::error("plugin connection: {}", e.what());
      }
    }).detach();
  }
}

void PluginServer::stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) {
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    ::unlink(socket_path_.c_str());
  }
}

}  // namespace swarmnet::docker
