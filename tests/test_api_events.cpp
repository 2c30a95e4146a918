// GET /v1/events through the real API server on a unix socket: a client
// that stops reading never holds the daemon up (events keep being
// published, other requests answered, other streams served), and it is
// cut off with a last line saying events were lost, then the stream ends.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <cstring>
#include <future>
#include <thread>

#include "daemon/api_server.hpp"
#include "daemon/controller.hpp"
#include "daemon/events.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using namespace std::chrono_literals;

namespace {

// receive_buffer: 0 leaves the system's default.
int connect_to(const std::string& path, const std::string& request, int receive_buffer = 0) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (receive_buffer) REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer) == 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == ssize_t(request.size()));
  return fd;
}

// Reads until `done` says so, the peer closes, or `wait` passes.
std::string read_until(int fd, std::chrono::milliseconds wait, const std::function<bool(const std::string&)>& done) {
  std::string got;
  const auto end = std::chrono::steady_clock::now() + wait;
  while (!done(got) && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  return got;
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("api server: a client that stops reading events is cut off, nobody else waits for it", "[api][events]") {
  testing::TempDir dir;
  testing::FakeDataplane dataplane;
  daemon::Store store(dir.path());
  daemon::Controller controller(store, dataplane, "test");
  daemon::EventBus bus;
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  const std::string path = dir / "api.sock";
  daemon::Router router;
  daemon::add_controller_routes(router, controller);
  daemon::add_event_routes(router, bus);
  daemon::ApiServer server(io, router, path);
  std::thread io_thread([&] { io.run(); });
  // Runs f on the daemon's thread (the bus belongs to it) and waits.
  auto on_io = [&](auto f) {
    std::promise<void> done;
    boost::asio::post(io, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  };
  auto subscribers = [&] {
    size_t n = 0;
    on_io([&] { n = bus.subscribers(); });
    return n;
  };

  // The slow client asks for everything, with a small receive buffer, and
  // then reads nothing; the other wants only the last event.
  const int slow = connect_to(path, "GET /v1/events HTTP/1.1\r\nHost: swarmnetd\r\n\r\n", 4096);
  const int other = connect_to(path, "GET /v1/events?filter=id%3Dlast HTTP/1.1\r\nHost: swarmnetd\r\n\r\n");
  for (int i = 0; i < 100 && subscribers() < 2; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(subscribers() == 2);

  // Twenty times the bound, in batches as the daemon's changes come.
  constexpr int kEvents = 20 * int(daemon::EventBus::kDefaultQueueLimit);
  const auto start = std::chrono::steady_clock::now();
  for (int sent = 0; sent < kEvents; sent += 500) {
    on_io([&] {
      for (int i = sent; i < sent + 500; ++i)
        bus.publish(Event{0, "endpoint", "create", "e" + std::to_string(i), {{"network", "front"}, {"ip", "10.0.0.2"}}});
    });
  }
  on_io([&] { bus.publish(Event{0, "node", "die", "last", {{"name", "host2"}}}); });
  const double publish_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("published " << kEvents << " events in " << publish_s << " s");
  CHECK(publish_s < 5.0);  // a blocked daemon would wait out the 30 s write timeout

  // Meanwhile the daemon answers: another request, and the other stream.
  const int status = connect_to(path, "GET /v1/status HTTP/1.1\r\nHost: swarmnetd\r\nConnection: close\r\n\r\n");
  CHECK(read_until(status, 2s, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; })
            .rfind("HTTP/1.1 200", 0) == 0);
  ::close(status);
  const std::string other_got =
      read_until(other, 2s, [](const std::string& s) { return s.find("\"id\":\"last\"") != std::string::npos; });
  CHECK(other_got.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(other_got.find("Transfer-Encoding: chunked") != std::string::npos);
  CHECK(count(other_got, "\"time_nano\"") == 1);  // only what its filter asked for

  // The slow one, reading at last: what fitted in its queue, then the line
  // saying it lost the rest, then the end of the stream.
  const std::string slow_got =
      read_until(slow, 10s, [](const std::string& s) { return s.ends_with("\r\n0\r\n\r\n"); });
  CHECK(slow_got.rfind("HTTP/1.1 200", 0) == 0);
  const auto lost = slow_got.find("\"type\":\"events\",\"action\":\"lost\"");
  REQUIRE(lost != std::string::npos);
  CHECK(slow_got.find("\"time_nano\"", lost) == std::string::npos);  // the lost line is the last
  CHECK(slow_got.ends_with("\r\n0\r\n\r\n"));
  const size_t received = count(slow_got, "\"action\":\"create\"");
  INFO("the slow client got " << received << " events");
  CHECK(received >= daemon::EventBus::kDefaultQueueLimit);
  CHECK(received < size_t(kEvents));
  char byte;
  CHECK(::recv(slow, &byte, 1, 0) == 0);  // closed by the daemon
  for (int i = 0; i < 100 && subscribers() > 1; ++i) std::this_thread::sleep_for(10ms);
  CHECK(subscribers() == 1);

  // A client that hangs up ends its stream (no subscription left behind).
  ::close(other);
  for (int i = 0; i < 100 && subscribers() > 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(subscribers() == 0);
  ::close(slow);

  // A bad filter is refused before any stream starts.
  const int bad = connect_to(path, "GET /v1/events?filter=colour%3Dred HTTP/1.1\r\nHost: swarmnetd\r\n\r\n");
  const std::string refused = read_until(bad, 2s, [](const std::string& s) { return s.find("unknown key") != std::string::npos; });
  CHECK(refused.rfind("HTTP/1.1 400", 0) == 0);
  ::close(bad);

  server.close();
  work.reset();
  io.stop();
  io_thread.join();
}
