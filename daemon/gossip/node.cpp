#include "daemon/gossip/node.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>
#include <map>
#include <random>

#include "common/accept_backoff.hpp"
#include "common/error.hpp"

namespace swarmnet::gossip {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using boost::system::error_code;

namespace {

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
  // Incoming streams open now, in all and per source address (touched on
  // the io thread only).
  size_t streams_open = 0;
  std::map<uint32_t, size_t> streams_from;
  LogThrottle refused_log{std::chrono::seconds(10)};
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
  // The core must leave room for the envelope in every packet.
  config_.packet_overhead = kPacketOverhead;
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
  advertise_ = bound_;
  if (config_.advertise.ip.value() != 0) advertise_.ip = config_.advertise.ip;
  if (config_.advertise.port != 0) advertise_.port = config_.advertise.port;
  core_ = std::make_unique<Memberlist>(config_, id_, name_, advertise_, delegate_,
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
  asio::co_spawn(io_, accept_streams(impl), asio::detached);

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

std::vector<Address> Node::own_addresses(const Address& local) const {
  return {advertise_, bound_, local};
}

void Node::on_datagram(const Address& from, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  wire_.packets_in++;
  wire_.bytes_in += data.size();
  const auto now = Keyring::WallClock::now();
  auto opened = open_packet(keyring_, data, own_addresses(bound_), now);
  if (!opened) {
    wire_.auth_failures++;
    return;
  }
  // Only key holders get here, so the map grows with the members, not with
  // whoever sends packets.
  clock_offsets_[opened->envelope.from] =
      opened->sent_ms - std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  if (!core_) return;
  core_->handle_packet(from, opened->payload, Clock::now());
  flush_locked();
}

asio::awaitable<void> Node::accept_streams(std::shared_ptr<Impl> impl) {
  AcceptBackoff backoff("gossip accept");
  for (;;) {
    auto [ec, sock] = co_await impl->acceptor.async_accept(use_tuple);
    if (ec == asio::error::operation_aborted || !impl->acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors, the connection waits in the backlog: no spinning.
      co_await backoff.failed(ec);
      continue;
    }
    backoff.succeeded();
    error_code rec;
    auto remote = sock.remote_endpoint(rec);
    if (rec) continue;  // already gone
    const uint32_t source = remote.address().to_v4().to_uint();
    auto it = impl->streams_from.find(source);
    const size_t from_source = it == impl->streams_from.end() ? 0 : it->second;
    if (impl->streams_open >= config_.max_streams_total ||
        from_source >= config_.max_streams_per_source) {
      {
        std::lock_guard lock(mu_);
        wire_.streams_refused++;
      }
      if (impl->refused_log.due()) {
        spdlog::warn(
            "gossip: refused a stream from {}: {} open from it, {} in all (caps {} and {}); {} "
            "more refused since the last line",
            remote.address().to_string(), from_source, impl->streams_open,
            config_.max_streams_per_source, config_.max_streams_total,
            impl->refused_log.skipped());
      }
      sock.close(rec);
      continue;
    }
    ++impl->streams_open;
    ++impl->streams_from[source];
    asio::co_spawn(impl->acceptor.get_executor(),
                   serve_stream(impl, std::make_shared<tcp::socket>(std::move(sock))),
                   asio::detached);
  }
}

asio::awaitable<void> Node::serve_stream(std::shared_ptr<Impl> impl,
                                         std::shared_ptr<tcp::socket> s) {
  error_code ec;
  const auto remote = s->remote_endpoint(ec);
  const auto local = s->local_endpoint(ec);
  const Address from = to_address(remote.address(), remote.port());
  // The slot taken by accept_streams is given back however this ends.
  struct Slot {
    Impl& im;
    uint32_t source;
    ~Slot() {
      --im.streams_open;
      if (--im.streams_from[source] == 0) im.streams_from.erase(source);
    }
  } slot{*impl, from.ip.value()};

  // Closing the socket aborts a slow or stalled peer's read.
  asio::steady_timer watchdog(s->get_executor());
  auto arm = [&](Duration limit) {
    watchdog.expires_after(limit);
    watchdog.async_wait([s](error_code e) {
      if (!e) s->close(e);
    });
  };
  auto fail = [&](uint64_t Stats::*counter) {
    std::lock_guard lock(mu_);
    wire_.*counter += 1;
    watchdog.cancel();
    s->close(ec);
  };

  // Until the head authenticates, the peer gets a short time and a few
  // bytes of memory.
  arm(config_.stream_auth_timeout);
  std::array<uint8_t, kFrameHeadSize> head_bytes;
  auto [e1, n1] = co_await asio::async_read(*s, asio::buffer(head_bytes), use_tuple);
  if (e1) {
    fail(&Stats::stream_failures);
    co_return;
  }
  auto head = open_frame_head(keyring_, head_bytes,
                              own_addresses(to_address(local.address(), local.port())),
                              config_.max_stream_bytes);
  if (!head) {
    fail(&Stats::auth_failures);
    co_return;
  }

  // The peer holds the key: its frame's size is believed now.
  arm(config_.stream_timeout);
  std::vector<uint8_t> body(head->body_size);
  auto [e2, n2] = co_await asio::async_read(*s, asio::buffer(body), use_tuple);
  if (e2) {
    fail(&Stats::stream_failures);
    co_return;
  }
  std::optional<Bytes> frame;
  {
    std::lock_guard lock(mu_);
    wire_.streams_in++;
    wire_.bytes_in += kFrameHeadSize + body.size();
    auto plain = open_frame_body(keyring_, *head, body);
    if (!plain) {
      wire_.auth_failures++;
    } else if (core_) {
      auto reply = core_->handle_stream(from, *plain, Clock::now());
      flush_locked();
      // Back to the sender, from the address it reached us at (what it
      // checks).
      if (reply) frame = stream_frame(Envelope{head->envelope.to, head->envelope.from}, *reply);
      if (frame) wire_.bytes_out += frame->size();
    }
  }
  if (frame) co_await asio::async_write(*s, asio::buffer(*frame), use_tuple);
  watchdog.cancel();
  s->shutdown(tcp::socket::shutdown_both, ec);
  s->close(ec);
}

asio::awaitable<void> Node::exchange(Address to, Bytes frame, ExchangeDone done) {
  auto s = std::make_shared<tcp::socket>(co_await asio::this_coro::executor);
  asio::steady_timer watchdog(s->get_executor());
  watchdog.expires_after(config_.stream_timeout);
  watchdog.async_wait([s](error_code e) {
    if (!e) s->close(e);
  });
  Outcome outcome = Outcome::no_answer;
  std::optional<Bytes> reply;
  auto [e0] = co_await s->async_connect(tcp::endpoint(to_asio(to.ip), to.port), use_tuple);
  if (!e0) {
    error_code ec;
    const auto local = s->local_endpoint(ec);
    auto [e1, n1] = co_await asio::async_write(*s, asio::buffer(frame), use_tuple);
    std::array<uint8_t, kFrameHeadSize> head_bytes;
    if (!e1) {
      auto [e2, n2] = co_await asio::async_read(*s, asio::buffer(head_bytes), use_tuple);
      if (!e2) {
        auto head = open_frame_head(keyring_, head_bytes,
                                    own_addresses(to_address(local.address(), local.port())),
                                    config_.max_stream_bytes);
        // The reply must come from whom we asked.
        if (!head || head->envelope.from != to) {
          outcome = Outcome::refused;
        } else {
          std::vector<uint8_t> body(head->body_size);
          auto [e3, n3] = co_await asio::async_read(*s, asio::buffer(body), use_tuple);
          if (!e3) {
            reply = open_frame_body(keyring_, *head, body);
            outcome = reply ? Outcome::ok : Outcome::refused;
            std::lock_guard lock(mu_);
            wire_.bytes_in += kFrameHeadSize + body.size();
          }
        }
      }
    }
  }
  watchdog.cancel();
  error_code ignore;
  s->close(ignore);
  done(outcome, std::move(reply));
}

std::optional<Bytes> Node::stream_frame(const Envelope& envelope, std::span<const uint8_t> payload) {
  if (payload.size() > config_.max_stream_bytes) {
    // No node would take it; say so rather than fail in silence at the peer.
    spdlog::error("gossip: a {}-byte push/pull state to {} is over the {}-byte stream limit; not sent",
                  payload.size(), describe(envelope.to), config_.max_stream_bytes);
    wire_.stream_failures++;
    return std::nullopt;
  }
  return seal_frame(keyring_, envelope, payload);
}

void Node::flush_locked() {
  if (!core_ || stopped_) return;
  for (auto& out : core_->take_outbox()) {
    if (!out.reliable_stream) {
      auto sealed = seal_packet(keyring_, Envelope{advertise_, out.to}, out.plaintext);
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
    auto frame = stream_frame(Envelope{advertise_, out.to}, out.plaintext);
    if (!frame) continue;
    wire_.streams_out++;
    wire_.bytes_out += frame->size();
    Address to = out.to;
    asio::co_spawn(io_,
                   exchange(to, std::move(*frame),
                            [this, to](Outcome outcome, std::optional<Bytes> reply) {
                              std::lock_guard lock(mu_);
                              if (stopped_) return;
                              if (outcome == Outcome::no_answer) wire_.stream_failures++;
                              if (outcome == Outcome::refused) wire_.auth_failures++;
                              if (!reply) {
                                core_->stream_failed(to, Clock::now());
                                flush_locked();
                                return;
                              }
                              core_->handle_packet(to, *reply, Clock::now());
                              flush_locked();
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
  for (const auto& seed : seeds) {
    auto frame = stream_frame(Envelope{advertise_, seed}, core_->push_pull_request(true));
    if (!frame) {
      asio::post(io_, [st, seed] {
        st->errors += (st->errors.empty() ? "" : "; ") + describe(seed) + ": state too large";
        if (--st->pending == 0)
          st->done("gossip: could not join any seed (" + st->errors + ")");
      });
      continue;
    }
    wire_.streams_out++;
    wire_.bytes_out += frame->size();
    asio::co_spawn(
        io_,
        exchange(seed, std::move(*frame),
                 [this, st, seed](Outcome outcome, std::optional<Bytes> reply) {
                   std::optional<std::string> err;
                   {
                     std::lock_guard lock(mu_);
                     if (outcome == Outcome::no_answer) {
                       wire_.stream_failures++;
                       // A seed drops a stream sealed with a key it lacks
                       // without a word (no oracle for attackers), so a
                       // wrong key looks like silence from here: say both.
                       err = describe(seed) +
                             ": no answer (the seed is down or unreachable, or it refused our "
                             "cluster key: is the join token current?)";
                     } else if (outcome == Outcome::refused) {
                       // The seed answered with a key we do not have, or
                       // not as the address we reached it at.
                       wire_.auth_failures++;
                       err = describe(seed) + ": reply failed authentication";
                     } else if (!stopped_) {
                       auto before = core_->stats().decode_failures;
                       core_->handle_packet(seed, *reply, Clock::now());
                       flush_locked();
                       if (core_->stats().decode_failures != before)
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
  // Posted, as broadcast() is: a change broadcast just before is queued
  // ahead of the leave, and goes out before it.
  asio::post(io_, [this, timeout, done = std::move(done)]() mutable { leave_now(timeout, std::move(done)); });
}

void Node::leave_now(std::chrono::milliseconds timeout, std::function<void()> done) {
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
  // Queued on the io thread, not here: the caller (the daemon's thread, on
  // every change) must not wait for mu_, which a push/pull holds while its
  // Delegate reads the whole state (daemon/push_pull_state.hpp).
  asio::post(io_, [this, data = std::move(data)]() mutable {
    std::lock_guard lock(mu_);
    if (!core_ || stopped_) return;
    try {
      core_->broadcast(std::move(data));
    } catch (const std::exception& e) {
      spdlog::error("gossip: broadcast not sent: {}", e.what());
    }
  });
}

std::vector<Member> Node::members() const {
  std::lock_guard lock(mu_);
  if (!core_) return {};
  return core_->members();
}

std::map<Address, int64_t> Node::clock_offsets() const {
  std::lock_guard lock(mu_);
  return clock_offsets_;
}

size_t Node::queued_broadcasts() const {
  std::lock_guard lock(mu_);
  return core_ ? core_->queued_broadcasts() : 0;
}

Stats Node::stats() const {
  std::lock_guard lock(mu_);
  Stats s = wire_;
  if (core_) {
    const Stats core = core_->stats();
    s.decode_failures = core.decode_failures;
    s.stream_batches = core.stream_batches;
    s.broadcasts_dropped = core.broadcasts_dropped;
    s.full_syncs = core.full_syncs;
    s.push_pulls_in = core.push_pulls_in;
    s.push_pulls_out = core.push_pulls_out;
  }
  return s;
}

}  // namespace swarmnet::gossip
