// The gossip node on real sockets: the Memberlist core driven by Boost.Asio.
// UDP on the gossip port carries probes and piggybacked gossip; a TCP
// listener on the same port serves push/pull exchanges (one request frame,
// one reply frame). Everything on the wire is in an envelope (envelope.hpp:
// sender and recipient addresses, sealed with the Keyring); what is
// addressed to another node or fails to open (foreign key, tampered, stale,
// replayed) or to decode is dropped and counted in stats().
//
// The TCP port is open to anyone on the underlay, before any authentication,
// so it is guarded: at most Config::max_streams_per_source streams from one
// address and max_streams_total in all (more are closed when accepted); a
// peer has stream_auth_timeout to send the fixed-size head of its frame,
// which must authenticate before the body's size is believed (at most
// max_stream_bytes) and its buffer allocated; the whole exchange has
// stream_timeout. Out of descriptors, the accept loop backs off
// (common/accept_backoff.hpp) instead of spinning.
//
// Threading: the io_context runs on one thread. The public methods may be
// called from any thread (a mutex guards the core); callbacks (done, and the
// Delegate's) run on the io thread with that mutex held, so a Delegate may
// call back into broadcast()/members() but must not block.
// start() and stop() touch the sockets: call them on the io thread (or
// before it runs / after it stopped).
// Lifetime: stop() and let the io_context stop (or run its pending handlers)
// before destroying a Node: in-flight operations refer to it.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/gossip/envelope.hpp"
#include "daemon/gossip/keyring.hpp"
#include "daemon/gossip/memberlist.hpp"

namespace swarmnet::gossip {

class Node {
 public:
  Node(boost::asio::io_context& io, Config config, std::string id, std::string name, Address bind,
       Keyring& keyring, Delegate& delegate);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Binds UDP and TCP on the same port (port 0: one chosen by the kernel,
  // see address()) and starts the loops. Throws Error(unavailable) if the
  // port cannot be bound.
  void start();
  // Closes the sockets and stops the timers without a leave: to others this
  // node simply fell silent (as after a crash).
  void stop();

  // Push/pull with each seed; done(nullopt) once at least one answered,
  // done(message) if none did.
  void join(std::vector<Address> seeds, std::function<void(std::optional<std::string>)> done);
  // Gossips our departure and calls done() once it went out (or at timeout),
  // after the broadcasts asked for before it.
  void leave(std::chrono::milliseconds timeout, std::function<void()> done);
  // Queues `data` for every other member; returns at once (the io thread
  // queues it; a failure, such as a message too large, is logged there).
  void broadcast(Bytes data);

  std::vector<Member> members() const;
  Stats stats() const;
  // Messages waiting in the broadcast queue (ours and those we relay).
  size_t queued_broadcasts() const;
  // By sender (its advertised address): its wall clock minus ours, in ms,
  // when its last authenticated datagram arrived. That is the clock skew
  // plus the one-way delay (well under a millisecond on a LAN); a skew
  // beyond the keyring's replay window shows as no datagram at all.
  std::map<Address, int64_t> clock_offsets() const;
  Keyring& keyring() { return keyring_; }
  Address address() const { return bound_; }  // bound (not advertised) address
  const std::string& id() const { return id_; }

 private:
  struct Impl;
  // How a push/pull exchange we started ended.
  enum class Outcome { ok, no_answer, refused };
  using ExchangeDone = std::function<void(Outcome, std::optional<Bytes> reply)>;

  void leave_now(std::chrono::milliseconds timeout, std::function<void()> done);
  void flush_locked();
  void on_datagram(const Address& from, std::span<const uint8_t> data);
  boost::asio::awaitable<void> accept_streams(std::shared_ptr<Impl> impl);
  boost::asio::awaitable<void> serve_stream(std::shared_ptr<Impl> impl,
                                            std::shared_ptr<boost::asio::ip::tcp::socket> s);
  // Sends one request frame to `to` and reads the reply; done runs with mu_
  // not held.
  boost::asio::awaitable<void> exchange(Address to, Bytes frame, ExchangeDone done);
  // The sealed stream frame, or nullopt (logged, counted) if the payload is
  // larger than any node accepts. Call with mu_ held.
  std::optional<Bytes> stream_frame(const Envelope& envelope, std::span<const uint8_t> payload);
  // The addresses a frame may be sent to to reach us (envelope.hpp).
  std::vector<Address> own_addresses(const Address& local) const;

  boost::asio::io_context& io_;
  Config config_;
  std::string id_, name_;
  Address bind_, bound_;
  Address advertise_;  // what others know us by: the sender in our envelopes
  Keyring& keyring_;
  Delegate& delegate_;

  mutable std::recursive_mutex mu_;
  std::unique_ptr<Memberlist> core_;
  std::shared_ptr<Impl> impl_;
  Stats wire_;  // transport-level counters; decode failures come from the core
  std::map<Address, int64_t> clock_offsets_;
  std::atomic<bool> stopped_{false};
};

}  // namespace swarmnet::gossip
