#include "dns/upstream.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/time.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/error.hpp"
#include "common/log.hpp"

namespace swarmnet::dns {

namespace asio = boost::asio;

namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxQuerySize = 65535;
// c-ares 1.18 cuts a UDP answer to this size when it ignores truncation
// (its EDNS mode, which would lift the limit, rewrites queries on SERVFAIL).
constexpr size_t kAresUdpClip = 512;

uint16_t get_u16(std::span<const uint8_t> m, size_t at) {
  return static_cast<uint16_t>(m[at] << 8 | m[at + 1]);
}

// The offset just past the domain name at `pos`, or 0 if it runs off the end
// of the message. A pointer ends a name, so this never follows one.
size_t skip_name(std::span<const uint8_t> m, size_t pos) {
  for (int labels = 0; labels <= 128; ++labels) {  // 255 bytes hold at most 128 labels
    if (pos >= m.size()) return 0;
    const uint8_t len = m[pos];
    if ((len & 0xC0) == 0xC0) return pos + 2 <= m.size() ? pos + 2 : 0;
    if ((len & 0xC0) != 0) return 0;  // reserved label types
    if (len == 0) return pos + 1;
    pos += 1 + len;
  }
  return 0;
}

// The offset just past the question section, or 0 if it is malformed.
size_t questions_end(std::span<const uint8_t> m) {
  if (m.size() < kHeaderSize) return 0;
  size_t pos = kHeaderSize;
  for (unsigned i = 0, n = get_u16(m, 4); i < n; ++i) {
    pos = skip_name(m, pos);
    if (pos == 0 || pos + 4 > m.size()) return 0;
    pos += 4;
  }
  return pos;
}

// Whether the records the header counts end exactly at the message's end.
bool is_whole_message(std::span<const uint8_t> m) {
  size_t pos = questions_end(m);
  if (pos == 0) return false;
  const unsigned records = get_u16(m, 6) + get_u16(m, 8) + get_u16(m, 10);
  for (unsigned i = 0; i < records; ++i) {
    pos = skip_name(m, pos);
    if (pos == 0 || pos + 10 > m.size()) return false;
    pos += 10 + get_u16(m, pos + 8);
    if (pos > m.size()) return false;
  }
  return pos == m.size();
}

std::string server_string(const ares_addr_port_node& node) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(node.family, &node.addr, text, sizeof text);
  const unsigned port = node.udp_port ? node.udp_port : 53;
  return node.family == AF_INET6 ? "[" + std::string(text) + "]:" + std::to_string(port)
                                 : std::string(text) + ":" + std::to_string(port);
}

void init_ares_library() {
  static std::once_flag once;
  static int status = ARES_SUCCESS;
  std::call_once(once, [] { status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (status != ARES_SUCCESS)
    throw Error(Errc::unavailable, std::string("c-ares: ") + ares_strerror(status));
}

}  // namespace

class Upstream::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, Options options);
  ~Impl();
  void forward(std::span<const uint8_t> query, bool over_tcp, Done done);
  std::vector<std::string> servers() const { return server_names_; }
  size_t outstanding() const { return pending_.size(); }

 private:
  // One socket c-ares asked us to watch. The descriptor never owns the fd:
  // c-ares closes it, after telling us (state 0, 0) so we release it first.
  struct Watch {
    Watch(asio::io_context& io, int fd, uint64_t generation)
        : descriptor(io, fd), generation(generation) {}
    asio::posix::stream_descriptor descriptor;
    uint64_t generation;  // tells a handler of a closed socket from one of a new socket on the same fd
    bool want_read = false, want_write = false;
    bool reading = false, writing = false;
  };

  struct Channel {
    explicit Channel(asio::io_context& io) : timer(io) {}
    Impl* owner = nullptr;
    ares_channel ares = nullptr;
    std::unordered_map<int, std::unique_ptr<Watch>> watches;
    asio::steady_timer timer;  // c-ares' next timeout (ares_timeout)
  };

  // One query in flight in c-ares. It lives until c-ares calls back (which it
  // always does, once), even when the deadline has already answered it.
  struct Pending {
    Pending(asio::io_context& io, Impl* owner, uint64_t key) : owner(owner), key(key), deadline(io) {}
    Impl* owner;
    uint64_t key;
    uint16_t client_id = 0;
    bool over_tcp = false;
    Done done;  // empty once answered
    asio::steady_timer deadline;
  };

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);

  void init_channel(Channel& channel, int flags);
  void configure_servers();
  void socket_state(Channel& channel, int fd, bool readable, bool writable);
  void arm(Channel& channel, int fd, Watch& watch);
  void on_ready(Channel& channel, int fd, uint64_t generation, bool read, boost::system::error_code ec);
  void schedule_timeout(Channel& channel);
  void on_deadline(uint64_t key);
  void answer(Pending& pending, int status, unsigned char* abuf, int alen);
  void fail_later(Done done);
  static void call(Done& done, std::span<const uint8_t> answer);

  asio::io_context& io_;
  Options options_;
  Channel udp_;
  Channel tcp_;
  std::vector<std::string> server_names_;
  std::unordered_map<uint64_t, std::unique_ptr<Pending>> pending_;
  uint64_t next_key_ = 1;
  uint64_t next_generation_ = 1;
  bool in_send_ = false;     // inside ares_send: c-ares may fail a query synchronously
  bool destroying_ = false;  // inside ares_destroy: callbacks must not call anyone
};

Upstream::Impl::Impl(asio::io_context& io, Options options)
    : io_(io), options_(std::move(options)), udp_(io), tcp_(io) {
  if (options_.tries < 1) options_.tries = 1;
  if (options_.timeout.count() < 1) options_.timeout = std::chrono::milliseconds(1);
  init_ares_library();
  udp_.owner = this;
  tcp_.owner = this;
  // NOCHECKRESP: a REFUSED or SERVFAIL answer is the upstream's answer, to be
  // relayed, not a reason to try the next server. IGNTC: a truncated UDP
  // answer goes back as it is; the client retries over TCP (to tcp_).
  try {
    init_channel(udp_, ARES_FLAG_NOCHECKRESP | ARES_FLAG_IGNTC);
    init_channel(tcp_, ARES_FLAG_NOCHECKRESP | ARES_FLAG_USEVC);
    configure_servers();
  } catch (...) {
    // No query and no socket yet: destroying the channels calls nobody.
    for (Channel* channel : {&udp_, &tcp_})
      if (channel->ares) ares_destroy(channel->ares);
    throw;
  }
}

void Upstream::Impl::init_channel(Channel& channel, int flags) {
  ares_options opts{};
  opts.flags = flags;
  opts.timeout = static_cast<int>(std::min<int64_t>(options_.timeout.count(), 3600'000));
  opts.tries = options_.tries;
  opts.sock_state_cb = &Impl::on_socket_state;
  opts.sock_state_cb_data = &channel;
  const int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  // Without ARES_FLAG_STAYOPEN c-ares closes its sockets whenever no query is
  // left, so the UDP source port changes over time: a little less to guess
  // for someone spoofing answers than one port forever.
  if (int status = ares_init_options(&channel.ares, &opts, mask); status != ARES_SUCCESS) {
    channel.ares = nullptr;
    throw Error(Errc::unavailable, std::string("c-ares: cannot initialise: ") + ares_strerror(status));
  }
}

void Upstream::Impl::configure_servers() {
  std::vector<ares_addr_port_node> nodes;
  if (!options_.servers.empty()) {
    for (const auto& [address, port] : options_.servers) {
      ares_addr_port_node node{};
      node.family = AF_INET;
      node.addr.addr4.s_addr = address.network_order();
      node.udp_port = node.tcp_port = port;
      nodes.push_back(node);
    }
  } else {
    ares_addr_port_node* list = nullptr;
    if (int status = ares_get_servers_ports(udp_.ares, &list); status != ARES_SUCCESS)
      throw Error(Errc::unavailable, std::string("c-ares: cannot read nameservers: ") + ares_strerror(status));
    for (auto* node = list; node; node = node->next) nodes.push_back(*node);
    ares_free_data(list);
  }
  std::erase_if(nodes, [&](const ares_addr_port_node& node) {
    if (node.family != AF_INET) return false;
    const Ipv4Address address(ntohl(node.addr.addr4.s_addr));
    const bool excluded = std::find(options_.exclude.begin(), options_.exclude.end(), address) !=
                          options_.exclude.end();
    if (excluded) spdlog::info("dns upstream: skipping nameserver {} (swarmnet's own address)", address.str());
    return excluded;
  });
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
    server_names_.push_back(server_string(nodes[i]));
  }
  ares_addr_port_node* head = nodes.empty() ? nullptr : nodes.data();
  for (Channel* channel : {&udp_, &tcp_}) {
    if (int status = ares_set_servers_ports(channel->ares, head); status != ARES_SUCCESS)
      throw Error(Errc::unavailable, std::string("c-ares: cannot set nameservers: ") + ares_strerror(status));
  }
  if (nodes.empty()) spdlog::warn("dns upstream: no nameserver to forward to; outside names get SERVFAIL");
}

Upstream::Impl::~Impl() {
  destroying_ = true;
  // ares_destroy ends every query (ARES_EDESTRUCTION, ignored in on_answer)
  // and closes every socket, telling on_socket_state first.
  for (Channel* channel : {&udp_, &tcp_}) {
    if (channel->ares) ares_destroy(channel->ares);
    channel->ares = nullptr;
    for (auto& [fd, watch] : channel->watches) watch->descriptor.release();
    channel->watches.clear();
  }
  pending_.clear();
}

void Upstream::Impl::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto& channel = *static_cast<Channel*>(data);
  try {
    channel.owner->socket_state(channel, fd, readable != 0, writable != 0);
  } catch (const std::exception& e) {
    // Not watching the socket only delays: the query's deadline still fails it.
    spdlog::error("dns upstream: cannot watch socket {}: {}", fd, e.what());
  }
}

void Upstream::Impl::socket_state(Channel& channel, int fd, bool readable, bool writable) {
  auto it = channel.watches.find(fd);
  if (!readable && !writable) {
    if (it != channel.watches.end()) {
      boost::system::error_code ignored;
      it->second->descriptor.cancel(ignored);
      it->second->descriptor.release();
      channel.watches.erase(it);
    }
    return;
  }
  if (it == channel.watches.end()) {
    it = channel.watches.emplace(fd, std::make_unique<Watch>(io_, fd, next_generation_++)).first;
  }
  Watch& watch = *it->second;
  watch.want_read = readable;
  watch.want_write = writable;
  arm(channel, fd, watch);
}

void Upstream::Impl::arm(Channel& channel, int fd, Watch& watch) {
  // Waits only: c-ares does the reading and writing (ares_process_fd).
  // Re-armed in the handler that processed the socket, before the reactor
  // polls again, so no edge of the edge-triggered epoll is lost.
  std::weak_ptr<Impl> weak = weak_from_this();
  if (watch.want_read && !watch.reading) {
    watch.reading = true;
    watch.descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                                [weak, &channel, fd, generation = watch.generation](boost::system::error_code ec) {
                                  if (auto self = weak.lock()) self->on_ready(channel, fd, generation, true, ec);
                                });
  }
  if (watch.want_write && !watch.writing) {
    watch.writing = true;
    watch.descriptor.async_wait(asio::posix::stream_descriptor::wait_write,
                                [weak, &channel, fd, generation = watch.generation](boost::system::error_code ec) {
                                  if (auto self = weak.lock()) self->on_ready(channel, fd, generation, false, ec);
                                });
  }
}

void Upstream::Impl::on_ready(Channel& channel, int fd, uint64_t generation, bool read,
                              boost::system::error_code ec) {
  auto it = channel.watches.find(fd);
  if (it == channel.watches.end() || it->second->generation != generation) return;  // socket closed since
  (read ? it->second->reading : it->second->writing) = false;
  if (ec) return;
  ares_process_fd(channel.ares, read ? fd : ARES_SOCKET_BAD, read ? ARES_SOCKET_BAD : fd);
  it = channel.watches.find(fd);  // processing may have closed the socket
  if (it != channel.watches.end() && it->second->generation == generation) arm(channel, fd, *it->second);
  schedule_timeout(channel);
}

void Upstream::Impl::schedule_timeout(Channel& channel) {
  timeval storage{};
  const timeval* next = ares_timeout(channel.ares, nullptr, &storage);
  if (!next) {
    channel.timer.cancel();
    return;
  }
  channel.timer.expires_after(std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec));
  std::weak_ptr<Impl> weak = weak_from_this();
  channel.timer.async_wait([weak, &channel](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      ares_process_fd(channel.ares, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // retries and timeouts
      self->schedule_timeout(channel);
    }
  });
}

void Upstream::Impl::forward(std::span<const uint8_t> query, bool over_tcp, Done done) {
  if (!done) return;
  if (query.size() < kHeaderSize || query.size() > kMaxQuerySize || server_names_.empty() ||
      pending_.size() >= options_.max_outstanding) {
    fail_later(std::move(done));
    return;
  }
  const uint64_t key = next_key_++;
  auto pending = std::make_unique<Pending>(io_, this, key);
  pending->client_id = get_u16(query, 0);
  pending->over_tcp = over_tcp;
  pending->done = std::move(done);
  // c-ares' own retries double the timeout on each round; this deadline is
  // what bounds the client's wait.
  pending->deadline.expires_after(options_.timeout * options_.tries);
  std::weak_ptr<Impl> weak = weak_from_this();
  pending->deadline.async_wait([weak, key](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->on_deadline(key);
  });
  Pending* raw = pending.get();
  pending_.emplace(key, std::move(pending));

  Channel& channel = over_tcp ? tcp_ : udp_;
  in_send_ = true;
  ares_send(channel.ares, query.data(), static_cast<int>(query.size()), &Impl::on_answer, raw);
  in_send_ = false;
  schedule_timeout(channel);
}

void Upstream::Impl::on_deadline(uint64_t key) {
  auto it = pending_.find(key);
  if (it == pending_.end() || !it->second->done) return;
  Done done = std::move(it->second->done);
  it->second->done = nullptr;
  spdlog::debug("dns upstream: no answer within {} ms", (options_.timeout * options_.tries).count());
  call(done, {});
}

void Upstream::Impl::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* pending = static_cast<Pending*>(arg);
  Impl& self = *pending->owner;
  if (status == ARES_EDESTRUCTION || self.destroying_) return;  // ~Impl frees the Pending
  self.answer(*pending, status, abuf, alen);
}

void Upstream::Impl::answer(Pending& pending, int status, unsigned char* abuf, int alen) {
  auto it = pending_.find(pending.key);
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> owned = std::move(it->second);
  pending_.erase(it);
  owned->deadline.cancel();
  if (!owned->done) return;  // the deadline has answered already
  Done done = std::move(owned->done);

  if (status != ARES_SUCCESS || !abuf || alen < static_cast<int>(kHeaderSize)) {
    spdlog::debug("dns upstream: query failed: {}", ares_strerror(status));
    // Only failures come synchronously out of ares_send; `done` is never
    // called inside forward.
    if (in_send_)
      fail_later(std::move(done));
    else
      call(done, {});
    return;
  }
  // c-ares gave the query its own id; the client expects its own back. The
  // buffer is c-ares' and unused by it after this callback.
  abuf[0] = static_cast<unsigned char>(owned->client_id >> 8);
  abuf[1] = static_cast<unsigned char>(owned->client_id & 0xff);
  std::span<uint8_t> message(abuf, static_cast<size_t>(alen));
  if (!owned->over_tcp && message.size() == kAresUdpClip && !is_whole_message(message)) {
    // c-ares cut a larger UDP answer (an EDNS client's) to 512 bytes: relay
    // what a truncating server would send, the question with TC set, so the
    // client asks again over TCP.
    const size_t end = questions_end(message);
    if (end == 0) {
      call(done, {});
      return;
    }
    message[2] |= 0x02;                                        // TC
    std::fill(message.begin() + 6, message.begin() + 12, 0);  // no records
    message = message.first(end);
  }
  call(done, message);
}

void Upstream::Impl::fail_later(Done done) {
  std::weak_ptr<Impl> weak = weak_from_this();
  asio::post(io_, [weak, done = std::move(done)]() mutable {
    if (weak.lock()) call(done, {});
  });
}

void Upstream::Impl::call(Done& done, std::span<const uint8_t> answer) {
  // Also called from inside c-ares (a C library): nothing may unwind through it.
  try {
    done(answer);
  } catch (const std::exception& e) {
    spdlog::error("dns upstream: answer handler failed: {}", e.what());
  } catch (...) {
    spdlog::error("dns upstream: answer handler failed");
  }
}

Upstream::Upstream(asio::io_context& io, Options options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {}

Upstream::~Upstream() = default;

void Upstream::forward(std::span<const uint8_t> query, bool over_tcp, Done done) {
  impl_->forward(query, over_tcp, std::move(done));
}

std::vector<std::string> Upstream::servers() const { return impl_->servers(); }

size_t Upstream::outstanding() const { return impl_->outstanding(); }

}  // namespace swarmnet::dns
