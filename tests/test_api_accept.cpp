// The API's accept loop when the process has run out of descriptors: it
// backs off instead of spinning (a review saw 597,000 log lines and a whole
// CPU in 7 s), logs a line or two, and serves the clients that waited as
// soon as descriptors are free again.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <cstring>
#include <sstream>
#include <thread>

#include "daemon/api_server.hpp"
#include "daemon/controller.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using namespace std::chrono_literals;

namespace {

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

size_t count_lines_with(const std::string& text, const std::string& needle) {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

// What the server answered on fd, waiting up to `wait`.
std::string read_reply(int fd, std::chrono::milliseconds wait) {
  std::string got;
  auto end = std::chrono::steady_clock::now() + wait;
  while (got.find("\r\n\r\n") == std::string::npos && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  return got;
}

}  // namespace

TEST_CASE("api server: out of descriptors, the accept loop backs off and then serves",
          "[api][limits]") {
  testing::TempDir dir;
  testing::FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "test");
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  const std::string path = dir / "api.sock";
  daemon::Router router;
  daemon::add_controller_routes(router, controller);
  daemon::ApiServer server(io, router, path);

  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  std::thread io_thread([&] { io.run(); });

  // The clients' sockets exist before the descriptors run out (connecting
  // takes none on the client's side).
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    clients.push_back(fd);
  }
  int base = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(base >= 0);
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 256);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> filler;
  for (int fd; (fd = ::fcntl(base, F_DUPFD_CLOEXEC, 0)) >= 0;) filler.push_back(fd);
  REQUIRE(errno == EMFILE);

  const double cpu_before = cpu_seconds();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  const std::string request = "GET /v1/status HTTP/1.1\r\nHost: swarmnetd\r\n\r\n";
  for (int fd : clients) {
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == ssize_t(request.size()));
  }
  std::this_thread::sleep_for(2s);
  const double cpu_used = cpu_seconds() - cpu_before;
  const std::string during = log.str();

  for (int fd : filler) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  ::close(base);

  // Backing off: little CPU (a spinning loop takes the whole 2 s) and one
  // line per 10 s, not one per attempt.
  CHECK(cpu_used < 0.5);
  CHECK(count_lines_with(during, "api accept") >= 1);
  CHECK(count_lines_with(during, "api accept") <= 2);
  CHECK(during.find("Too many open files") != std::string::npos);

  // Descriptors are back: the clients that waited are answered.
  for (int fd : clients) {
    CHECK(read_reply(fd, 2s).rfind("HTTP/1.1 200", 0) == 0);
    ::close(fd);
  }

  server.close();
  work.reset();
  io.stop();
  io_thread.join();
  spdlog::set_default_logger(previous);
}
