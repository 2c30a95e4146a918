// The gossip node on real sockets: the Memberlist core driven by Boost.Asio.
// UDP on the gossip port carries probes and piggybacked gossip; a TCP
// listener on the same port serves push/pull exchanges (one request frame,
// one reply frame, each a u32 big-endian length + sealed bytes). Everything
// on the wire is sealed with the Keyring; what fails to open (foreign key,
// tampered, stale, replayed) or to decode is dropped and counted in stats().
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
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/gossip/keyring.hpp"
#include "daemon/gossip/memberlist.hpp"

namespace swarmnet::gossip {

// Associated data binding a sealed blob to its channel: a UDP packet cannot
// be replayed as a stream frame or the other way round.
inline const std::vector<uint8_t> kPacketChannel = {'s', 'w', 'n', '/', 'u', 'd', 'p'};
inline const std::vector<uint8_t> kStreamChannel = {'s', 'w', 'n', '/', 't', 'c', 'p'};

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
  // Gossips our departure and calls done() once it went out (or at timeout).
  void leave(std::chrono::milliseconds timeout, std::function<void()> done);
  void broadcast(Bytes data);

  std::vector<Member> members() const;
  Stats stats() const;
  Keyring& keyring() { return keyring_; }
  Address address() const { return bound_; }  // bound (not advertised) address
  const std::string& id() const { return id_; }

 private:
  struct Impl;
  void flush_locked();
  void on_datagram(const Address& from, std::span<const uint8_t> data);

  boost::asio::io_context& io_;
  Config config_;
  std::string id_, name_;
  Address bind_, bound_;
  Keyring& keyring_;
  Delegate& delegate_;

  mutable std::recursive_mutex mu_;
  std::unique_ptr<Memberlist> core_;
  std::shared_ptr<Impl> impl_;
  Stats wire_;  // transport-level counters; decode failures come from the core
  std::atomic<bool> stopped_{false};
};

}  // namespace swarmnet::gossip
