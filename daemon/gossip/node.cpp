#include "daemon/gossip/node.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <random>

#include "common/error.hpp"

namespace swarmnet::gossip {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using boost::system::error_code;

namespace {

const std::vector<uint8_t>& kUdpAad = kPacketChannel;
const std::vector<uint8_t>& kTcpAad = kStreamChannel;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

Address to_address(const asio::ip::address& ip, uint16_t port) {
  return Address{Ipv4Address(ip.is_v4() ? ip.to_v4().to_uint() : 0), port};
}

asio::ip::address_v4 to_asio(Ipv4Address ip) {
  return asio::ip::address_v4(ip.value());
}

std::string describe(const Address& a) {
  return to_string(a);
}

}  // namespace

struct Node::Impl {
  explicit Impl(asio::io_context& io) : dgram(io), acceptor(io), ticker(io) {}
  udp::socket dgram;
  tcp::acceptor acceptor;
  asio::steady_timer ticker;
  // A pending leave: done once the core says it went out, or at deadline.
  std::function<void()> leave_done;
  TimePoint leave_deadline{};
};

Node::Node(asio::io_context& io, Config config, std::string id, std::string name, Address bind,
           Keyring& keyring, Delegate& delegate)
    : io_(io),
      config_(config),
      id_(std::move(id)),
      name_(std::move(name)),
      bind_(bind),
      bound_(bind),
      keyring_(keyring),
      delegate_(delegate),
      impl_(std::make_shared<Impl>(io)) {
  // The core must leave room for the keyring's envelope in every packet.
  config_.packet_overhead = Keyring::kOverhead;
}

Node::~Node() {
  stop();
}

void Node::start() {
  std::lock_guard lock(mu_);
  auto& im = *impl_;
  error_code ec;
  // UDP first; with port 0 the kernel picks one and TCP must get the same.
  for (int attempt = 0; attempt < 10; ++attempt) {
    if (im.dgram.is_open()) im.dgram.close(ec);
    im.dgram.open(udp::v4(), ec);
    if (!ec) im.dgram.bind(udp::endpoint(to_asio(bind_.ip), bind_.port), ec);
    if (ec)
      throw Error(Errc::unavailable, "gossip: bind UDP " + describe(bind_) + ": " + ec.message());
    uint16_t port = im.dgram.local_endpoint().port();
    if (im.acceptor.is_open()) im.acceptor.close(ec);
    im.acceptor.open(tcp::v4(), ec);
    if (!ec) im.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) im.acceptor.bind(tcp::endpoint(to_asio(bind_.ip), port), ec);
    if (!ec) im.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) {
      bound_ = Address{bind_.ip, port};
      break;
    }
    if (bind_.port != 0 || attempt == 9)
      throw Error(Errc::unavailable,
                  "gossip: bind TCP " + describe(Address{bind_.ip, port}) + ": " + ec.message());
  }
  // Never block the io thread on a full socket buffer: drop instead, as the
  // network would.
  im.dgram.non_blocking(true, ec);

  std::random_device rd;
  Address advertise = bound_;
  if (config_.advertise.ip.value() != 0) advertise.ip = config_.advertise.ip;
  if (config_.advertise.port != 0) advertise.port = config_.advertise.port;
  core_ = std::make_unique<Memberlist>(config_, id_, name_, advertise, delegate_,
                                       std::mt19937_64((uint64_t(rd()) << 32) | rd()));
  core_->tick(Clock::now());
  stopped_ = false;

  auto impl = impl_;
  Node* self = this;

  // Datagrams.
  asio::co_spawn(
      io_,
      [impl, self]() -> asio::awaitable<void> {
        std::vector<uint8_t> buf(65536);
        for (;;) {
          udp::endpoint from;
          auto [ec, n] =
              co_await impl->dgram.async_receive_from(asio::buffer(buf), from, use_tuple);
          if (ec == asio::error::operation_aborted || !impl->dgram.is_open()) co_return;
          if (ec) continue;
          self->on_datagram(to_address(from.address(), from.port()),
                            std::span<const uint8_t>(buf.data(), n));
        }
      },
      asio::detached);

  // Push/pull streams: one request frame in, one reply frame out.
  asio::co_spawn(
      io_,
      [impl, self]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, sock] = co_await impl->acceptor.async_accept(use_tuple);
          if (ec == asio::error::operation_aborted || !impl->acceptor.is_open()) co_return;
          if (ec) continue;
          auto s = std::make_shared<tcp::socket>(std::move(sock));
          asio::co_spawn(
              impl->acceptor.get_executor(),
              [impl, self, s]() -> asio::awaitable<void> {
                asio::steady_timer watchdog(s->get_executor());
                watchdog.expires_after(self->config_.stream_timeout);
                // Closing the socket aborts a slow or stalled peer's read.
                watchdog.async_wait([s](error_code e) {
                  if (!e) s->close(e);
                });
                error_code rec;
                auto remote = s->remote_endpoint(rec);
                Address from = to_address(remote.address(), remote.port());
                uint8_t hdr[4];
                auto [e1, n1] = co_await asio::async_read(*s, asio::buffer(hdr), use_tuple);
                uint32_t len = (uint32_t(hdr[0]) << 24) | (uint32_t(hdr[1]) << 16) |
                               (uint32_t(hdr[2]) << 8) | hdr[3];
                if (e1 || len > self->config_.max_stream_bytes + Keyring::kOverhead) {
                  std::lock_guard lock(self->mu_);
                  self->wire_.stream_failures++;
                  watchdog.cancel();
                  co_return;
                }
                std::vector<uint8_t> body(len);
                auto [e2, n2] = co_await asio::async_read(*s, asio::buffer(body), use_tuple);
                if (e2) {
                  std::lock_guard lock(self->mu_);
                  self->wire_.stream_failures++;
                  watchdog.cancel();
                  co_return;
                }
                std::vector<uint8_t> frame;
                {
                  std::lock_guard lock(self->mu_);
                  self->wire_.streams_in++;
                  self->wire_.bytes_in += 4 + len;
                  auto plain = self->keyring_.open(body, kTcpAad);
                  if (!plain) {
                    self->wire_.auth_failures++;
                  } else if (self->core_) {
                    auto reply = self->core_->handle_stream(from, *plain, Clock::now());
                    self->flush_locked();
                    if (reply) {
                      auto sealed = self->keyring_.seal(*reply, kTcpAad);
                      uint32_t rl = static_cast<uint32_t>(sealed.size());
                      frame = {uint8_t(rl >> 24), uint8_t(rl >> 16), uint8_t(rl >> 8), uint8_t(rl)};
                      frame.insert(frame.end(), sealed.begin(), sealed.end());
                      self->wire_.bytes_out += frame.size();
                    }
                  }
                }
                if (!frame.empty()) co_await asio::async_write(*s, asio::buffer(frame), use_tuple);
                watchdog.cancel();
                error_code ignore;
                s->shutdown(tcp::socket::shutdown_both, ignore);
                s->close(ignore);
              },
              asio::detached);
        }
      },
      asio::detached);

  // Timers.
  asio::co_spawn(
      io_,
      [impl, self]() -> asio::awaitable<void> {
        for (;;) {
          impl->ticker.expires_after(self->config_.tick_interval);
          auto [ec] = co_await impl->ticker.async_wait(use_tuple);
          if (ec || self->stopped_) co_return;
          std::function<void()> leave_done;
          {
            std::lock_guard lock(self->mu_);
            auto now = Clock::now();
            self->core_->tick(now);
            self->flush_locked();
            if (impl->leave_done && (self->core_->leave_sent() || now >= impl->leave_deadline))
              leave_done = std::exchange(impl->leave_done, nullptr);
          }
          if (leave_done) leave_done();
        }
      },
      asio::detached);
}

void Node::stop() {
  std::lock_guard lock(mu_);
  if (stopped_.exchange(true)) return;
  error_code ec;
  impl_->dgram.close(ec);
  impl_->acceptor.close(ec);
  impl_->ticker.cancel();
  // A leave still waiting is over: nothing more will go out.
  if (impl_->leave_done) asio::post(io_, std::exchange(impl_->leave_done, nullptr));
}

void Node::on_datagram(const Address& from, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  wire_.packets_in++;
  wire_.bytes_in += data.size();
  auto plain = keyring_.open(data, kUdpAad);
  if (!plain) {
    wire_.auth_failures++;
    return;
  }
  if (!core_) return;
  core_->handle_packet(from, *plain, Clock::now());
  flush_locked();
}

namespace {

// One push/pull exchange as the client; calls done(reply plaintext) or
// done(nullopt) on any failure.
asio::awaitable<void> exchange(tcp::endpoint to, std::vector<uint8_t> frame, Duration timeout,
                               size_t max_bytes,
                               std::function<void(std::optional<std::vector<uint8_t>>)> done) {
  auto s = std::make_shared<tcp::socket>(co_await asio::this_coro::executor);
  asio::steady_timer watchdog(s->get_executor());
  watchdog.expires_after(timeout);
  watchdog.async_wait([s](error_code e) {
    if (!e) s->close(e);
  });
  std::optional<std::vector<uint8_t>> result;
  auto [e0] = co_await s->async_connect(to, use_tuple);
  if (!e0) {
    auto [e1, n1] = co_await asio::async_write(*s, asio::buffer(frame), use_tuple);
    uint8_t hdr[4];
    if (!e1) {
      auto [e2, n2] = co_await asio::async_read(*s, asio::buffer(hdr), use_tuple);
      uint32_t len =
          (uint32_t(hdr[0]) << 24) | (uint32_t(hdr[1]) << 16) | (uint32_t(hdr[2]) << 8) | hdr[3];
      if (!e2 && len <= max_bytes + Keyring::kOverhead) {
        std::vector<uint8_t> body(len);
        auto [e3, n3] = co_await asio::async_read(*s, asio::buffer(body), use_tuple);
        if (!e3) result = std::move(body);
      }
    }
  }
  watchdog.cancel();
  error_code ignore;
  s->close(ignore);
  done(std::move(result));
}

}  // namespace

void Node::flush_locked() {
  if (!core_ || stopped_) return;
  for (auto& out : core_->take_outbox()) {
    if (!out.reliable_stream) {
      auto sealed = keyring_.seal(out.plaintext, kUdpAad);
      error_code ec;
      impl_->dgram.send_to(asio::buffer(sealed), udp::endpoint(to_asio(out.to.ip), out.to.port), 0,
                           ec);
      if (!ec) {
        wire_.packets_out++;
        wire_.bytes_out += sealed.size();
      }
      continue;
    }
    // A periodic push/pull (or reconnect): the reply goes into the core.
    auto sealed = keyring_.seal(out.plaintext, kTcpAad);
    uint32_t l = static_cast<uint32_t>(sealed.size());
    std::vector<uint8_t> frame = {uint8_t(l >> 24), uint8_t(l >> 16), uint8_t(l >> 8), uint8_t(l)};
    frame.insert(frame.end(), sealed.begin(), sealed.end());
    wire_.streams_out++;
    wire_.bytes_out += frame.size();
    Address to = out.to;
    Node* self = this;
    auto impl = impl_;
    asio::co_spawn(io_,
                   exchange(tcp::endpoint(to_asio(to.ip), to.port), std::move(frame),
                            config_.stream_timeout, config_.max_stream_bytes,
                            [self, impl, to](std::optional<std::vector<uint8_t>> reply) {
                              std::lock_guard lock(self->mu_);
                              if (self->stopped_) return;
                              if (!reply) {
                                self->wire_.stream_failures++;
                                return;
                              }
                              self->wire_.bytes_in += reply->size() + 4;
                              auto plain = self->keyring_.open(*reply, kTcpAad);
                              if (!plain) {
                                self->wire_.auth_failures++;
                                return;
                              }
                              self->core_->handle_packet(to, *plain, Clock::now());
                              self->flush_locked();
                            }),
                   asio::detached);
  }
}

void Node::join(std::vector<Address> seeds, std::function<void(std::optional<std::string>)> done) {
  struct State {
    size_t pending = 0, ok = 0;
    std::string errors;
    std::function<void(std::optional<std::string>)> done;
  };
  auto st = std::make_shared<State>();
  st->pending = seeds.size();
  st->done = std::move(done);
  if (seeds.empty()) {
    asio::post(io_, [st] { st->done(std::string("gossip: no seed to join")); });
    return;
  }
  std::lock_guard lock(mu_);
  if (!core_) throw Error(Errc::internal, "gossip: join before start");
  Node* self = this;
  for (const auto& seed : seeds) {
    auto sealed = keyring_.seal(core_->push_pull_request(true), kTcpAad);
    uint32_t l = static_cast<uint32_t>(sealed.size());
    std::vector<uint8_t> frame = {uint8_t(l >> 24), uint8_t(l >> 16), uint8_t(l >> 8), uint8_t(l)};
    frame.insert(frame.end(), sealed.begin(), sealed.end());
    wire_.streams_out++;
    wire_.bytes_out += frame.size();
    asio::co_spawn(
        io_,
        exchange(tcp::endpoint(to_asio(seed.ip), seed.port), std::move(frame),
                 config_.stream_timeout, config_.max_stream_bytes,
                 [self, st, seed](std::optional<std::vector<uint8_t>> reply) {
                   std::optional<std::string> err;
                   {
                     std::lock_guard lock(self->mu_);
                     if (!reply) {
                       self->wire_.stream_failures++;
                       // A seed drops a stream sealed with a key it lacks
                       // without a word (no oracle for attackers), so a
                       // wrong key looks like silence from here: say both.
                       err = describe(seed) +
                             ": no answer (the seed is down or unreachable, or it refused our "
                             "cluster key: is the join token current?)";
                     } else if (auto plain = self->keyring_.open(*reply, kTcpAad); !plain) {
                       // The seed answered with a key we do not have.
                       self->wire_.auth_failures++;
                       err = describe(seed) + ": reply failed authentication";
                     } else if (!self->stopped_) {
                       auto before = self->core_->stats().decode_failures;
                       self->core_->handle_packet(seed, *plain, Clock::now());
                       self->flush_locked();
                       if (self->core_->stats().decode_failures != before)
                         err = describe(seed) + ": malformed reply";
                     }
                   }
                   if (err) {
                     st->errors += (st->errors.empty() ? "" : "; ") + *err;
                   } else {
                     st->ok++;
                   }
                   if (--st->pending == 0)
                     st->done(st->ok > 0
                                  ? std::nullopt
                                  : std::optional<std::string>("gossip: could not join any seed (" +
                                                               st->errors + ")"));
                 }),
        asio::detached);
  }
}

void Node::leave(std::chrono::milliseconds timeout, std::function<void()> done) {
  std::lock_guard lock(mu_);
  if (!core_ || stopped_) {
    asio::post(io_, std::move(done));
    return;
  }
  core_->leave(Clock::now());
  impl_->leave_done = std::move(done);
  impl_->leave_deadline = Clock::now() + timeout;
}

void Node::broadcast(Bytes data) {
  std::lock_guard lock(mu_);
  if (core_) core_->broadcast(std::move(data));
}

std::vector<Member> Node::members() const {
  std::lock_guard lock(mu_);
  if (!core_) return {};
  return core_->members();
}

Stats Node::stats() const {
  std::lock_guard lock(mu_);
  Stats s = wire_;
  if (core_) s.decode_failures = core_->stats().decode_failures;
  return s;
}

}  // namespace swarmnet::gossip
