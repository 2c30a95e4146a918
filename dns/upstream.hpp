// Forwarding of outside names: the raw query goes to the host's nameservers
// (resolv.conf, or a given list) through c-ares, and the raw answer comes
// back for the DNS server to relay unchanged.
//
// c-ares runs on the caller's io_context: its sockets are watched by Asio and
// its timeouts by an Asio timer, so forwarding never blocks the serving loop.
// Two c-ares channels: one over UDP for queries that came over UDP (a
// truncated upstream answer is relayed as it is, TC set, and the client
// retries over TCP itself) and one over TCP for queries that came over TCP.
//
// Threading: every call, and the destructor, on the io_context's thread (or
// while it is not running); the io_context runs on one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "common/ipv4.hpp"

namespace swarmnet::dns {

class Upstream {
 public:
  struct Options {
    // Empty: the nameservers of /etc/resolv.conf (c-ares' default init).
    std::vector<std::pair<Ipv4Address, uint16_t>> servers;
    // Nameservers never to use, whatever the port: the daemon's own DNS
    // addresses, so a resolv.conf that points at swarmnet does not loop.
    std::vector<Ipv4Address> exclude;
    // Per attempt. A query fails (the caller answers SERVFAIL) after
    // timeout * tries in all, however many servers there are.
    std::chrono::milliseconds timeout{1000};
    int tries = 2;
    // Queries in flight at once; more fail at once. Bounds memory and
    // sockets' work whatever the clients send.
    size_t max_outstanding = 1024;
  };

  // The answer, with the query's id; empty on failure (timeout, refused,
  // too many outstanding, malformed). Valid only during the call.
  using Done = std::function<void(std::span<const uint8_t> answer)>;

  // Throws Error(unavailable) if c-ares cannot be initialised.
  Upstream(boost::asio::io_context& io, Options options);
  // Cancels every query in flight: their `done` are destroyed, never called.
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  // Sends the raw query upstream (over TCP if `over_tcp`) and calls `done`
  // later, exactly once, on the io_context's thread (never inside forward).
  // Never blocks. Do not destroy the Upstream from inside `done`.
  void forward(std::span<const uint8_t> query, bool over_tcp, Done done);

  // The nameservers in use, "ip:port", for logs.
  std::vector<std::string> servers() const;
  // Queries c-ares still holds (those failed by the deadline included, until
  // c-ares lets go of them).
  size_t outstanding() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace swarmnet::dns
