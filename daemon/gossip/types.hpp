// Shared vocabulary of the gossip library: addresses, members, the delegate
// the application implements, timing configuration and counters.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::gossip {

using Bytes = std::vector<uint8_t>;
// The core never reads a clock itself; callers pass steady-clock time points
// (or virtual ones in the simulator), so the protocol runs in simulation.
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

enum class MemberStatus : uint8_t { alive = 0, suspect = 1, dead = 2, left = 3 };
std::string_view to_string(MemberStatus s);

struct Address {
  Ipv4Address ip;
  uint16_t port = 0;
  auto operator<=>(const Address&) const = default;
};
std::string to_string(const Address& a);

struct Member {
  std::string id, name;
  Address addr;
  uint32_t incarnation = 0;
  MemberStatus status = MemberStatus::alive;
};

class Delegate {
 public:
  virtual ~Delegate() = default;
  // Any status change incl. first sight (never called about ourselves).
  virtual void on_member_change(const Member& m) = 0;
  // A broadcast from another node. Its content must also be in what
  // local_state() returns (or be safe to lose, e.g. a request its sender
  // repeats): when the queue overflows, a push/pull delivers it instead.
  virtual void on_user_message(std::span<const uint8_t> data) = 0;
  virtual std::vector<uint8_t> local_state() = 0;  // sent in push/pull
  virtual void merge_remote_state(std::span<const uint8_t> data) = 0;
};

// Defaults are memberlist's DefaultLANConfig.
struct Config {
  Duration probe_interval = std::chrono::seconds(1);
  Duration probe_timeout = std::chrono::milliseconds(500);
  unsigned indirect_checks = 3;
  Duration gossip_interval = std::chrono::milliseconds(200);
  unsigned gossip_nodes = 3;
  // Dead nodes still receive gossip for a while, so a wrongly declared dead
  // node learns about it and can refute.
  Duration gossip_to_dead_time = std::chrono::seconds(30);
  // Dead and left members stay listed (and in push/pull) this long, so
  // operators see them; then they are forgotten. Until then a dead (not
  // left) member is retried every reconnect_interval with a push/pull, so
  // the two sides of a healed partition find each other again (memberlist
  // leaves this to serf; these are serf's defaults).
  Duration dead_reap_time = std::chrono::hours(24);
  Duration reconnect_interval = std::chrono::seconds(30);
  // Between those push/pulls, one dead (not left) member is pinged every
  // dead_ping_interval, round-robin; the first ack starts the push/pull at
  // once. When both sides of a healed cut think the other dead, nobody
  // probes across it, so without this the heal waits for the reconnect.
  Duration dead_ping_interval = std::chrono::seconds(1);
  unsigned suspicion_mult = 4;
  // Lifeguard: a suspicion starts at max_mult times the minimum and shrinks
  // towards the minimum with independent confirmations.
  unsigned suspicion_max_timeout_mult = 6;
  unsigned retransmit_mult = 4;
  Duration push_pull_interval = std::chrono::seconds(30);
  // Lifeguard local health: probe timeouts stretch up to this factor while
  // this node seems to be the slow one.
  unsigned awareness_max_multiplier = 8;
  // Largest UDP payload we emit (after sealing).
  size_t packet_mtu = 1400;
  // Bytes the transport adds around each packet (envelope.hpp: addresses
  // and the keyring's seal); the core leaves room for them when filling a
  // packet.
  size_t packet_overhead = 50;
  // Delivery of broadcasts. In a cluster of at most full_coverage_nodes,
  // each of our own broadcasts goes to every peer at least once (not only
  // to retransmit_limit random ones).
  size_t full_coverage_nodes = 128;
  // In a cluster of at most stream_confirm_nodes, each of our own
  // broadcasts also goes by stream to every peer (batched, backlog_age after
  // it was queued at the latest): datagrams bring it fast, the stream makes
  // sure whatever the packet loss.
  size_t stream_confirm_nodes = 32;
  // A backlog: more than backlog_messages of our own queued, or one queued
  // backlog_age ago that has gone nowhere yet (packets cannot keep up), or
  // one too large for a packet. Our own then go by stream, batched, to each
  // peer (in a small cluster; else to gossip_nodes peers per round), at most
  // one stream at a time per peer and one batch per peer per
  // stream_batch_spacing, stream_batch_bytes at most.
  size_t backlog_messages = 32;
  Duration backlog_age = std::chrono::milliseconds(500);
  size_t stream_batch_bytes = 1024 * 1024;
  Duration stream_batch_spacing = std::chrono::milliseconds(50);
  // The queue holds at most this many messages. What overflow drops is made
  // up for by a full push/pull with the peers (at most one such round per
  // full_sync_spacing); nothing is dropped silently.
  size_t max_queued_broadcasts = 4096;
  Duration full_sync_spacing = std::chrono::seconds(1);
  // Push/pull streams: largest payload accepted (its size is only believed
  // once the sender proved it has the key), time allowed for one exchange.
  // swarmnetd's state is about 820 bytes per endpoint (64-character
  // container id, netns path, name, service, half of them with two labels
  // and two aliases; measured with 2,000): 64 MiB hold some 80,000
  // endpoints and tombstones.
  size_t max_stream_bytes = 64 * 1024 * 1024;
  Duration stream_timeout = std::chrono::seconds(10);
  // Incoming streams: the time a peer has to send a frame's head (and so
  // prove it holds the key), and how many may be open at once from one
  // address and in total; more are closed as soon as they are accepted.
  Duration stream_auth_timeout = std::chrono::seconds(3);
  size_t max_streams_per_source = 8;
  size_t max_streams_total = 64;
  // User messages are de-duplicated by id for this long (and at most
  // user_dedup_capacity ids are remembered).
  Duration user_dedup_time = std::chrono::minutes(5);
  size_t user_dedup_capacity = 100000;
  // What the transport tells others to reach us at, when it differs from
  // the bind address (binding 0.0.0.0, NAT): a zero ip or port means "the
  // bound one".
  Address advertise{};
  // How often the transport drives the core's timers.
  Duration tick_interval = std::chrono::milliseconds(10);
};

struct Stats {
  uint64_t packets_in = 0, packets_out = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  uint64_t streams_in = 0, streams_out = 0;
  uint64_t auth_failures = 0;    // failed to open with any key, replayed or stale
  uint64_t decode_failures = 0;  // opened but malformed
  uint64_t stream_failures = 0;  // connect/read/write/timeouts on push-pull
  uint64_t streams_refused = 0;  // incoming streams closed at once: over a cap
  uint64_t stream_batches = 0;      // streams of broadcasts sent (backlog, large messages)
  uint64_t broadcasts_dropped = 0;  // by the queue's bound (each made up by a full sync)
  uint64_t full_syncs = 0;          // push/pull rounds with the peers after an overflow
  uint64_t push_pulls_in = 0;       // full state exchanges a peer started with us
  uint64_t push_pulls_out = 0;      // and that we started (periodic, join, reconnect, full sync)
};

}  // namespace swarmnet::gossip
