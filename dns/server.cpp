#include "dns/server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <future>
#include <mutex>
#include <unordered_map>

#include "common/accept_backoff.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "dns/rate_limit.hpp"

namespace swarmnet::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

constexpr size_t kBatch = 32;
constexpr size_t kMaxUdpQuery = 4096;  // larger datagrams are no query of ours
constexpr int kDrainRounds = 8;        // then let TCP and forwarded answers run
constexpr int kUdpReceiveBuffer = 8 << 20;
// Queries over the limit are logged at most this often, with the counts since
// the last line (a flood must not become a flood of log lines).
constexpr std::chrono::seconds kOverLimitLogInterval{10};

enum class Action { reply, forward, none };

asio::ip::address_v4 to_asio(Ipv4Address a) { return asio::ip::address_v4(a.value()); }

}  // namespace

struct Server::Impl {
  struct Listener {
    Ipv4Address address;
    udp::socket udp_socket;
    tcp::acceptor acceptor;
    explicit Listener(asio::io_context& io, Ipv4Address a) : address(a), udp_socket(io), acceptor(io) {}
  };

  // One UDP batch's buffers, reused (the server thread is the only user).
  struct Batch {
    mmsghdr in[kBatch];
    iovec in_iov[kBatch];
    sockaddr_in in_addr[kBatch];
    uint8_t in_buf[kBatch][kMaxUdpQuery];
    mmsghdr out[kBatch];
    iovec out_iov[kBatch];
    sockaddr_in out_addr[kBatch];
    uint8_t out_buf[kBatch][kEdnsUdpSize];
  };

  NameTable& table;
  ServerOptions options;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread;
  std::atomic<bool> started{false};
  Forwarder forwarder;
  std::map<uint32_t, std::shared_ptr<Listener>> listeners;  // server thread only
  mutable std::mutex listeners_mutex;                         // for listeners() from other threads
  std::vector<Ipv4Address> listener_addresses;
  std::unordered_map<uint32_t, size_t> outstanding;  // source ip -> forwarded queries in flight
  size_t tcp_connections = 0;
  std::unique_ptr<Batch> batch = std::make_unique<Batch>();
  SourceLimiter limiter;
  struct OverLimitReport {
    SourceLimiter::Clock::time_point last{};
    uint64_t refused = 0, dropped = 0;
  } over_limit_report;

  std::atomic<uint64_t> udp_queries{0}, tcp_queries{0}, answered{0}, forwarded{0},
      forward_failures{0}, refused{0}, malformed{0}, truncated{0}, over_limit_refused{0},
      over_limit_dropped{0};
  std::array<std::atomic<uint64_t>, 16> answers_by_rcode{};

  void count_answer(std::span<const uint8_t> message) {
    if (message.size() >= 4) ++answers_by_rcode[message[3] & 0x0f];
  }

  Impl(NameTable& t, ServerOptions o) : table(t), options(o), limiter(o.queries_per_second) {}

  template <class Fn>
  void run_on_io(Fn&& fn) {
    if (!started || thread.get_id() == std::this_thread::get_id()) {
      fn();
      return;
    }
    std::promise<void> done;
    asio::post(io, [&] {
      try {
        fn();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
    done.get_future().get();
  }

  void note_over_limit(Ipv4Address source, bool dropped, SourceLimiter::Clock::time_point now) {
    ++(dropped ? over_limit_dropped : over_limit_refused);
    OverLimitReport& r = over_limit_report;
    ++(dropped ? r.dropped : r.refused);
    if (now - r.last < kOverLimitLogInterval) return;
    spdlog::warn("DNS: over the per-container limit of {} queries a second: {} answered REFUSED, {} "
                 "dropped since the last such line (the latest from {})",
                 limiter.rate(), r.refused, r.dropped, source.str());
    r = {now, 0, 0};
  }

  // Decides what to do with one query; on `reply` the answer is in `out`.
  // `now` is read once per batch: the limiter needs no finer clock.
  Action answer(std::span<const uint8_t> packet, Ipv4Address source, Ipv4Address destination,
                bool over_tcp, std::span<uint8_t> out, size_t& out_len, SourceLimiter::Clock::time_point now) {
    const SourceLimiter::Verdict verdict = limiter.admit(source.value(), now);
    // Over TCP a query is never dropped: the client would wait on an open
    // connection (and TCP paces itself: one query at a time per connection).
    if (verdict == SourceLimiter::Verdict::drop && !over_tcp) {
      note_over_limit(source, true, now);
      return Action::none;
    }
    Query query;
    ParseResult parsed = parse_query(packet, query);
    if (verdict != SourceLimiter::Verdict::answer) {
      // The question is echoed: glibc ignores an answer whose question does
      // not match its query (and would wait out its timeout after all).
      const bool refusable = parsed.status == ParseStatus::ok;
      note_over_limit(source, !refusable, now);
      if (!refusable) return Action::none;
      ResponseWriter writer(out, query, kClassicUdpSize);
      writer.set_rcode(Rcode::refused);
      out_len = writer.finish();
      return Action::reply;
    }
    switch (parsed.status) {
      case ParseStatus::ok:
        break;
      case ParseStatus::drop:
        ++malformed;
        return Action::none;
      case ParseStatus::format_error:
      case ParseStatus::not_implemented:
        ++malformed;
        out_len = write_error_reply(packet,
                                    parsed.status == ParseStatus::format_error ? Rcode::format_error
                                                                               : Rcode::not_implemented,
                                    out);
        return out_len ? Action::reply : Action::none;
      case ParseStatus::bad_version: {
        ++malformed;
        ResponseWriter writer(out, query, kClassicUdpSize);
        writer.set_extended_rcode(1);  // BADVERS = 16: upper bits 1, lower 0
        out_len = writer.finish();
        return Action::reply;
      }
    }
    const size_t limit = over_tcp ? out.size() : std::min(out.size(), query.max_udp_answer());
    ResponseWriter writer(out, query, limit);
    switch (table.respond(query, source, destination, writer)) {
      case Outcome::answered:
        ++answered;
        if (writer.truncated()) ++truncated;
        out_len = writer.finish();
        return Action::reply;
      case Outcome::refused:
        ++refused;
        writer.set_rcode(Rcode::refused);
        out_len = writer.finish();
        return Action::reply;
      case Outcome::outside:
        break;
    }
    if (forwarder && outstanding[source.value()] < options.max_forwards_per_source) return Action::forward;
    // No upstream, or this client already has its share in flight.
    ++forward_failures;
    writer.set_rcode(Rcode::server_failure);
    out_len = writer.finish();
    return Action::reply;
  }

  // Forwards `packet` and calls `reply` with the bytes to send back.
  void forward(std::span<const uint8_t> packet, Ipv4Address source, bool over_tcp,
               std::function<void(std::span<const uint8_t>)> reply) {
    ++forwarded;
    ++outstanding[source.value()];
    auto query = std::make_shared<std::vector<uint8_t>>(packet.begin(), packet.end());
    forwarder(*query, over_tcp, [this, query, source, reply = std::move(reply)](std::span<const uint8_t> answer) {
      if (auto it = outstanding.find(source.value()); it != outstanding.end() && --it->second == 0)
        outstanding.erase(it);
      if (!answer.empty()) {
        reply(answer);
        return;
      }
      ++forward_failures;
      Query q;
      if (parse_query(*query, q).status != ParseStatus::ok) return;
      uint8_t buf[kClassicUdpSize];
      ResponseWriter writer(buf, q, sizeof buf);
      writer.set_rcode(Rcode::server_failure);
      size_t n = writer.finish();
      reply({buf, n});
    });
  }

  // ---- UDP ----

  void udp_wait(std::shared_ptr<Listener> l) {
    l->udp_socket.async_wait(udp::socket::wait_read, [this, l](const boost::system::error_code& ec) {
      if (ec || !l->udp_socket.is_open()) return;
      udp_drain(*l);
      udp_wait(l);
    });
  }

  // One message of a batch: its address and its single buffer.
  static void point(mmsghdr& m, sockaddr_in& address, iovec& iov, uint8_t* buffer, size_t size) {
    iov = {buffer, size};
    m.msg_hdr = {};
    m.msg_hdr.msg_name = &address;
    m.msg_hdr.msg_namelen = sizeof(sockaddr_in);
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
  }

  void udp_drain(Listener& l) {
    Batch& b = *batch;
    const int fd = l.udp_socket.native_handle();
    for (int round = 0; round < kDrainRounds; ++round) {
      for (size_t i = 0; i < kBatch; ++i) point(b.in[i], b.in_addr[i], b.in_iov[i], b.in_buf[i], kMaxUdpQuery);
      int n = ::recvmmsg(fd, b.in, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;
      udp_queries += static_cast<uint64_t>(n);
      const auto now = SourceLimiter::Clock::now();
      unsigned replies = 0;
      for (int i = 0; i < n; ++i) {
        if (b.in[i].msg_hdr.msg_flags & MSG_TRUNC) {
          ++malformed;
          continue;
        }
        std::span<const uint8_t> packet(b.in_buf[i], b.in[i].msg_len);
        Ipv4Address source(ntohl(b.in_addr[i].sin_addr.s_addr));
        size_t len = 0;
        Action action = answer(packet, source, l.address, false, b.out_buf[replies], len, now);
        if (action == Action::reply) {
          count_answer({b.out_buf[replies], len});
          b.out_addr[replies] = b.in_addr[i];
          point(b.out[replies], b.out_addr[replies], b.out_iov[replies], b.out_buf[replies], len);
          ++replies;
        } else if (action == Action::forward) {
          sockaddr_in to = b.in_addr[i];
          // The listener itself, not its descriptor: if it is removed before
          // the upstream answers, the answer is dropped instead of going out
          // of a closed (or reused) descriptor.
          forward(packet, source, false, [this, listener = listeners.at(l.address.value()), to](std::span<const uint8_t> bytes) {
            if (!listener->udp_socket.is_open()) return;
            count_answer(bytes);
            // Non-blocking: under overload a reply is dropped, as a
            // datagram may be; the client retries.
            ::sendto(listener->udp_socket.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT,
                     reinterpret_cast<const sockaddr*>(&to), sizeof to);
          });
        }
      }
      unsigned sent = 0;
      while (sent < replies) {
        int m = ::sendmmsg(fd, b.out + sent, replies - sent, MSG_DONTWAIT);
        if (m <= 0) break;  // socket buffer full: the rest are dropped
        sent += static_cast<unsigned>(m);
      }
      if (static_cast<size_t>(n) < kBatch) return;
    }
  }

  // ---- TCP ----

  asio::awaitable<void> tcp_accept(std::shared_ptr<Listener> l) {
    AcceptBackoff backoff("dns tcp accept");
    while (l->acceptor.is_open()) {
      boost::system::error_code ec;
      tcp::socket socket = co_await l->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!l->acceptor.is_open()) co_return;
        // Out of descriptors, the connection waits in the backlog: no spinning.
        co_await backoff.failed(ec);
        continue;
      }
      backoff.succeeded();
      if (tcp_connections >= options.max_tcp_connections) continue;  // closed by going out of scope
      asio::co_spawn(io, tcp_session(std::move(socket), l->address), asio::detached);
    }
  }

  asio::awaitable<void> tcp_session(tcp::socket socket, Ipv4Address local) {
    ++tcp_connections;
    struct Count {
      size_t& n;
      ~Count() { --n; }
    } count{tcp_connections};
    auto sock = std::make_shared<tcp::socket>(std::move(socket));
    boost::system::error_code ec;
    auto remote = sock->remote_endpoint(ec);
    if (ec) co_return;
    Ipv4Address source(remote.address().to_v4().to_uint());
    asio::steady_timer idle(io);
    std::vector<uint8_t> query(kMaxMessageSize), reply(kMaxMessageSize + 2);
    while (true) {
      // The connection closes when idle too long (RFC 7766 6.2.3).
      idle.expires_after(options.tcp_idle_timeout);
      idle.async_wait([sock](const boost::system::error_code& e) {
        if (!e) sock->close();
      });
      uint8_t length_bytes[2];
      co_await asio::async_read(*sock, asio::buffer(length_bytes), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      size_t length = static_cast<size_t>(length_bytes[0]) << 8 | length_bytes[1];
      co_await asio::async_read(*sock, asio::buffer(query.data(), length),
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      idle.cancel();
      ++tcp_queries;
      std::span<const uint8_t> packet(query.data(), length);
      size_t len = 0;
      Action action = answer(packet, source, local, true, {reply.data() + 2, kMaxMessageSize}, len,
                             SourceLimiter::Clock::now());
      if (action == Action::none) break;  // not a query: drop the connection
      if (action == Action::forward) {
        std::vector<uint8_t> upstream_answer = co_await asio::async_initiate<
            decltype(asio::use_awaitable), void(std::vector<uint8_t>)>(
            [&](auto handler) {
              auto h = std::make_shared<decltype(handler)>(std::move(handler));
              forward(packet, source, true, [h](std::span<const uint8_t> bytes) {
                (*h)(std::vector<uint8_t>(bytes.begin(), bytes.end()));
              });
            },
            asio::use_awaitable);
        len = std::min(upstream_answer.size(), kMaxMessageSize);
        std::memcpy(reply.data() + 2, upstream_answer.data(), len);
      }
      count_answer({reply.data() + 2, len});
      reply[0] = static_cast<uint8_t>(len >> 8);
      reply[1] = static_cast<uint8_t>(len);
      co_await asio::async_write(*sock, asio::buffer(reply.data(), len + 2),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    idle.cancel();
    sock->close(ec);
  }

  // ---- listeners ----

  void open_listener(Ipv4Address address) {
    if (listeners.count(address.value())) return;
    auto l = std::make_shared<Listener>(io, address);
    const udp::endpoint uep(to_asio(address), options.port);
    const int one = 1;
    try {
      l->udp_socket.open(udp::v4());
      // The gateway address appears only with the network's bridge.
      ::setsockopt(l->udp_socket.native_handle(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
      // A queue that absorbs a stall of the thread at a busy client's rate.
      // SO_RCVBUF is capped by net.core.rmem_max (208 KiB by default, some
      // 500 queries); SO_RCVBUFFORCE (CAP_NET_ADMIN, which swarmnetd has) is not.
      if (::setsockopt(l->udp_socket.native_handle(), SOL_SOCKET, SO_RCVBUFFORCE, &kUdpReceiveBuffer,
                       sizeof kUdpReceiveBuffer) != 0) {
        l->udp_socket.set_option(asio::socket_base::receive_buffer_size(kUdpReceiveBuffer));
      }
      l->udp_socket.non_blocking(true);
      l->udp_socket.bind(uep);
      l->acceptor.open(tcp::v4());
      ::setsockopt(l->acceptor.native_handle(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
      l->acceptor.set_option(asio::socket_base::reuse_address(true));
      l->acceptor.bind(tcp::endpoint(to_asio(address), options.port));
      l->acceptor.listen(64);
    } catch (const boost::system::system_error& e) {
      throw Error(Errc::unavailable, "DNS: cannot listen on " + address.str() + ":" +
                                         std::to_string(options.port) + ": " + e.code().message());
    }
    listeners[address.value()] = l;
    udp_wait(l);
    asio::co_spawn(io, tcp_accept(l), asio::detached);
    std::lock_guard lock(listeners_mutex);
    listener_addresses.push_back(address);
  }

  void close_listener(Ipv4Address address) {
    auto it = listeners.find(address.value());
    if (it == listeners.end()) return;
    boost::system::error_code ec;
    it->second->udp_socket.close(ec);
    it->second->acceptor.close(ec);
    listeners.erase(it);
    std::lock_guard lock(listeners_mutex);
    std::erase(listener_addresses, address);
  }
};

Server::Server(NameTable& table, ServerOptions options) : impl_(std::make_unique<Impl>(table, options)) {}

Server::~Server() { stop(); }

void Server::stop() {
  if (impl_->started && impl_->thread.joinable()) {
    asio::post(impl_->io, [this] {
      std::vector<Ipv4Address> all;
      for (const auto& [ip, l] : impl_->listeners) all.push_back(l->address);
      for (Ipv4Address a : all) impl_->close_listener(a);
      impl_->work.reset();
      impl_->io.stop();
    });
    impl_->thread.join();
  }
}

boost::asio::io_context& Server::io() { return impl_->io; }

void Server::set_forwarder(Forwarder forwarder) {
  impl_->run_on_io([&] { impl_->forwarder = std::move(forwarder); });
}

void Server::start() {
  if (impl_->started.exchange(true)) return;
  impl_->thread = std::thread([this] {
    while (true) {
      try {
        impl_->io.run();
        return;
      } catch (const std::exception& e) {
        // A bug in one handler must not end DNS for every container.
        spdlog::error("DNS server: {}", e.what());
      }
    }
  });
}

void Server::add_listener(Ipv4Address address) {
  impl_->run_on_io([&] { impl_->open_listener(address); });
}

void Server::remove_listener(Ipv4Address address) {
  impl_->run_on_io([&] { impl_->close_listener(address); });
}

std::vector<Ipv4Address> Server::listeners() const {
  std::lock_guard lock(impl_->listeners_mutex);
  return impl_->listener_addresses;
}

ServerStats Server::stats() const {
  const Impl& i = *impl_;
  ServerStats s{i.udp_queries,      i.tcp_queries, i.answered,  i.forwarded,
                i.forward_failures, i.refused,     i.malformed, i.truncated,
                i.over_limit_refused, i.over_limit_dropped};
  for (size_t r = 0; r < s.answers_by_rcode.size(); ++r) s.answers_by_rcode[r] = i.answers_by_rcode[r];
  return s;
}

}  // namespace swarmnet::dns
