// swarmnetd's DNS server: answers containers at each network's gateway
// address (the same address on every host: the anycast gateway), over UDP
// and TCP, from the NameTable; forwards outside names upstream.
//
// It runs on a thread of its own with its own io_context, so a busy daemon
// (fsync, netlink) never delays an answer, and a query flood never delays the
// daemon. UDP is served in batches (recvmmsg/sendmmsg): one wake-up of the
// loop answers up to kBatch queries, which is what lets one thread outrun
// dnsmasq. Per-source fairness: each source has so many queries a second
// answered, then REFUSED, then dropped (dns/rate_limit.hpp); the firewall's
// per-source meter on port 53 (daemon/firewall.hpp) drops a flood's excess
// in the kernel, before it fills the socket's queue. Each source is also
// limited in how many forwarded queries it may have outstanding, so one
// container cannot use up the upstream budget.
#pragma once

#include <boost/asio/io_context.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <thread>

#include "common/ipv4.hpp"
#include "dns/name_table.hpp"

namespace swarmnet::dns {

// Sends a raw query upstream; `done` gets the raw answer, or an empty span on
// failure (then the client gets SERVFAIL). Called and completing on the
// server's thread. The c-ares Upstream (dns/upstream.hpp) is the real one.
using ForwardDone = std::function<void(std::span<const uint8_t> answer)>;
using Forwarder = std::function<void(std::span<const uint8_t> query, bool over_tcp, ForwardDone done)>;

struct ServerOptions {
  uint16_t port = 53;
  size_t max_forwards_per_source = 64;   // outstanding upstream queries of one client
  unsigned queries_per_second = 0;       // answered per source (SourceLimiter); 0: no limit
  size_t max_tcp_connections = 256;
  std::chrono::milliseconds tcp_idle_timeout{10000};
};

struct ServerStats {
  uint64_t udp_queries = 0;
  uint64_t tcp_queries = 0;
  uint64_t answered = 0;       // from the name table (records, NODATA, NXDOMAIN)
  uint64_t forwarded = 0;
  uint64_t forward_failures = 0;
  uint64_t refused = 0;        // the source is no container of this host
  uint64_t malformed = 0;      // FORMERR, NOTIMP, BADVERS, or dropped
  uint64_t truncated = 0;      // UDP answers with TC set
  uint64_t over_limit_refused = 0;  // past queries_per_second: answered REFUSED
  uint64_t over_limit_dropped = 0;  // past SourceLimiter::ceiling: dropped unanswered
  // Answers sent, by the RCODE of their header (forwarded answers too).
  std::array<uint64_t, 16> answers_by_rcode{};
};

class Server {
 public:
  Server(NameTable& table, ServerOptions options);
  ~Server();  // stops the thread, closes every socket
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The io_context of the server's thread (for the upstream forwarder).
  boost::asio::io_context& io();
  void set_forwarder(Forwarder forwarder);

  // Starts the thread. Listeners can be added before or after.
  void start();
  // Closes every listener and ends the thread (the io_context stays, so
  // whatever runs on it, like the upstream forwarder, can be destroyed
  // safely afterwards). Idempotent; the destructor calls it.
  void stop();

  // Answers on address:port (UDP and TCP). The address need not exist yet
  // (IP_FREEBIND: a network's gateway appears with its bridge). Blocks until
  // the sockets are bound on the server's thread; throws Error(unavailable)
  // if the port is taken. Adding an address twice is a no-op.
  void add_listener(Ipv4Address address);
  void remove_listener(Ipv4Address address);
  std::vector<Ipv4Address> listeners() const;

  ServerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace swarmnet::dns
