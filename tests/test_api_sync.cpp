// POST ...?sync=later over a real socket (docs/api.md): the client has the
// reply before the daemon's sync has run, then reads the line the daemon
// writes once it has ("synced", or "failed: REASON"), and a daemon that
// closes without that line is not taken for one that synced.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <atomic>
#include <cstring>
#include <future>
#include <optional>
#include <thread>

#include "common/api_client.hpp"
#include "common/error.hpp"
#include "daemon/api_server.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using namespace std::chrono_literals;

namespace {

// A server whose routes hold their sync until the test lets it go.
struct Server {
  testing::TempDir dir;
  const std::string path = dir / "api.sock";
  boost::asio::io_context io;
  decltype(boost::asio::make_work_guard(io)) work = boost::asio::make_work_guard(io);
  daemon::Router router;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> synced = false;
  bool let_go_ = false;
  std::optional<daemon::ApiServer> server;
  std::thread thread;

  Server() {
    router.add("POST", "/ok", "other", [this](const daemon::ApiRequest&) {
      daemon::HttpReply r{201, boost::json::object{{"made", true}}};
      r.sync_after_reply = [this] {
        released.wait();
        synced = true;
      };
      return r;
    });
    router.add("POST", "/fail", "other", [this](const daemon::ApiRequest&) {
      daemon::HttpReply r{201, boost::json::object{{"made", true}}};
      r.sync_after_reply = [this] {
        released.wait();
        throw Error(Errc::unavailable, "fdatasync: Input/output error\nand more");
      };
      return r;
    });
    router.add("GET", "/plain", "other",
               [](const daemon::ApiRequest&) { return daemon::HttpReply{200, boost::json::object{{"made", false}}}; });
    server.emplace(io, router, path);
    thread = std::thread([this] { io.run(); });
  }
  void let_go() {
    if (!let_go_) release.set_value();
    let_go_ = true;
  }
  ~Server() {
    let_go();  // a test that failed early must not leave the server waiting
    server->close();
    work.reset();
    io.stop();
    thread.join();
  }
};

// A daemon played by hand on a socket of its own: it answers one request
// at a time with the bytes it is given.
struct FakeDaemon {
  testing::TempDir dir;
  const std::string path = dir / "fake.sock";
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  FakeDaemon() {
    REQUIRE(listener >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener, 4) == 0);
  }
  ~FakeDaemon() { ::close(listener); }

  // Answers one request with `reply`, in pieces split at '|' 20 ms apart,
  // then closes the connection (with `hold`, 1.5 s later).
  void answer(const std::string& reply, bool hold) const {
    int fd = ::accept(listener, nullptr, nullptr);
    char buf[4096];
    [[maybe_unused]] ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    size_t start = 0;
    for (size_t bar; (bar = reply.find('|', start)) != std::string::npos; start = bar + 1) {
      [[maybe_unused]] ssize_t m = ::send(fd, reply.data() + start, bar - start, MSG_NOSIGNAL);
      std::this_thread::sleep_for(20ms);
    }
    [[maybe_unused]] ssize_t m = ::send(fd, reply.data() + start, reply.size() - start, MSG_NOSIGNAL);
    if (hold) std::this_thread::sleep_for(1500ms);
    ::close(fd);
  }
  // answer() on a thread of its own, joined when this goes, whatever the
  // test did meanwhile.
  struct Answering {
    std::thread thread;
    ~Answering() { thread.join(); }
  };
  Answering answering(const std::string& reply, bool hold) const {
    return Answering{std::thread([this, reply, hold] { answer(reply, hold); })};
  }
};

}  // namespace

TEST_CASE("api sync: the reply comes before the sync, then the line that says it is durable", "[api]") {
  Server s;
  ApiClient client(s.path, 5s);
  PendingRequest add = client.send("POST", "/ok");
  // The server's sync waits for release: had the client waited for the
  // connection's end, this would time out instead.
  CHECK(add.result().at("made").as_bool());
  CHECK_FALSE(s.synced);
  // wait_synced() waits for the line: not done while the sync is held.
  auto waiting = std::async(std::launch::async, [&add] { add.wait_synced(); });
  CHECK(waiting.wait_for(200ms) == std::future_status::timeout);
  s.let_go();
  REQUIRE(waiting.wait_for(5s) == std::future_status::ready);
  waiting.get();
  CHECK(s.synced);
}

TEST_CASE("api sync: a sync that failed is an error with its reason, on one line", "[api]") {
  Server s;
  ApiClient client(s.path, 5s);
  PendingRequest add = client.send("POST", "/fail");
  CHECK(add.result().at("made").as_bool());
  s.let_go();
  try {
    add.wait_synced();
    FAIL("wait_synced returned");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::unavailable);
    CHECK_THAT(e.what(), Catch::Contains("could not make the change durable: fdatasync: Input/output error and more"));
  }
}

TEST_CASE("api sync: wait_synced before the reply was read is a mistake, not a wait", "[api]") {
  Server s;
  ApiClient client(s.path, 5s);
  PendingRequest add = client.send("POST", "/ok");
  CHECK_THROWS_WITH(add.wait_synced(), Catch::Contains("before the reply"));
}

TEST_CASE("api sync: a reply without the header needs no wait", "[api]") {
  Server s;
  ApiClient client(s.path, 5s);
  PendingRequest get = client.send("GET", "/plain");
  CHECK_FALSE(get.result().at("made").as_bool());
  get.wait_synced();  // returns at once
  s.let_go();
}

TEST_CASE("api sync: a daemon that closes after the reply without the line has not synced", "[api]") {
  FakeDaemon daemon;
  const std::string reply =
      "HTTP/1.1 201 Created\r\nSwarmnet-Sync: after-reply\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
  ApiClient client(daemon.path, 5s);
  auto add_then_sync = [&](const std::string& sent) {
    const auto answering = daemon.answering(sent, false);
    PendingRequest add = client.send("POST", "/x");
    add.result();
    add.wait_synced();
  };
  // Killed after the reply:
  CHECK_THROWS_WITH(add_then_sync(reply), Catch::Contains("closed the connection before the change was durable"));
  CHECK_NOTHROW(add_then_sync(reply + "synced\n"));  // the control: with the line
}

// The reply parser, rewritten to parse what it has before it reads more,
// against every shape of reply a server may send.
TEST_CASE("api client: every shape of reply, and the ways a daemon can fail to give one", "[api]") {
  FakeDaemon daemon;
  std::chrono::steady_clock::duration took{};
  auto ask = [&](const std::string& reply, bool hold = false, std::chrono::milliseconds timeout = 5s) {
    const auto answering = daemon.answering(reply, hold);
    const auto started = std::chrono::steady_clock::now();
    auto answer = ApiClient(daemon.path, timeout).request("GET", "/x");
    took = std::chrono::steady_clock::now() - started;
    return answer;
  };
  // Kept open after a whole reply: the client does not wait for the end
  // (the server holds the connection 1.5 s).
  auto r = ask("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n|{\"a\":1}|\n", true);
  CHECK(took < 1s);
  CHECK(r.status == 200);
  CHECK(r.body.at("a").as_int64() == 1);
  r = ask("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"|\r\n3\r\n:2}\r\n0\r\n\r\n", true);
  CHECK(r.body.at("a").as_int64() == 2);
  r = ask("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"a\"|:3}");  // the body ends with the connection
  CHECK(r.body.at("a").as_int64() == 3);
  r = ask("HTTP/1.1 204 No Content\r\n\r\n", true);
  CHECK(r.status == 204);
  CHECK(r.body.is_null());
  CHECK_THROWS_WITH(ask("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{\"a\""), Catch::Contains("mid-reply"));
  CHECK_THROWS_WITH(ask(""), Catch::Contains("without answering"));
  CHECK_THROWS_WITH(ask("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{", true, 300ms),
                    Catch::Contains("did not answer within 300 ms"));
  CHECK_THROWS_WITH(ask("HTTQ/9 what\r\n\r\n"), Catch::Contains("malformed HTTP reply"));
}
