// The membership protocol without I/O: SWIM failure detection with
// Lifeguard's refinements, piggybacked dissemination and push/pull
// anti-entropy, after hashicorp/memberlist. The caller feeds it packets and
// the time, and sends what it leaves in the outbox; it never reads a clock,
// touches a socket or spawns a thread, so the same code runs on Asio
// (node.hpp) and in the simulator (sim.hpp).
//
// Protocol, per probe interval: ping one member (randomized round-robin);
// no ack within the probe timeout -> ask `indirect_checks` others to ping it
// (ping-req), which nack if they get nothing either; no ack by the end of the
// interval -> suspect it. The suspicion is gossiped; its timeout is
// suspicion_mult * log10(n) * probe_interval at least, starting up to
// suspicion_max_timeout_mult times that and shrinking with each independent
// confirmation (Lifeguard). A suspected node that hears of it refutes with a
// higher incarnation; otherwise it is declared dead when the timer fires.
// A leaving node gossips "dead" about itself, which others record as left.
//
// Not thread-safe: one caller at a time (the transport serializes).
#pragma once

#include <deque>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/gossip/broadcast_queue.hpp"
#include "daemon/gossip/codec.hpp"
#include "daemon/gossip/types.hpp"

namespace swarmnet::gossip {

struct OutPacket {
  Address to;
  Bytes plaintext;
  // true: a push/pull request for a stream (TCP); the reply goes back into
  // handle_packet. false: a datagram (UDP).
  bool reliable_stream = false;
};

// memberlist's formulas (util.go), exposed for tests and the benchmark.
Duration suspicion_timeout(unsigned mult, size_t n, Duration interval);
unsigned retransmit_limit(unsigned mult, size_t n);
Duration push_pull_scale(Duration interval, size_t n);
// Lifeguard: time left on a suspicion with `confirmations` of `k` wanted.
Duration remaining_suspicion_time(unsigned confirmations, unsigned k, Duration elapsed,
                                  Duration min, Duration max);

class Memberlist {
 public:
  Memberlist(Config config, std::string self_id, std::string self_name, Address self_addr,
             Delegate& delegate, std::mt19937_64 rng);

  // A datagram (or a stream reply) from `from`. Malformed input is counted
  // in stats().decode_failures and otherwise ignored.
  void handle_packet(const Address& from, std::span<const uint8_t> plaintext, TimePoint now);
  // A push/pull request arriving on a stream; returns the reply to send back
  // on the same stream (nullopt: not a valid request, close the stream).
  std::optional<Bytes> handle_stream(const Address& from, std::span<const uint8_t> plaintext,
                                     TimePoint now);
  // Runs due timers: probes, suspicions, gossip, push/pull.
  void tick(TimePoint now);
  // The transport's stream to `to` ended without an answer (refused, reset,
  // timed out): broadcasts it carried go again with the next stream.
  void stream_failed(const Address& to, TimePoint now);
  std::vector<OutPacket> take_outbox();

  // Queues a push/pull join with each seed (reliable outbox entries).
  void join(const std::vector<Address>& seeds, TimePoint now);
  // The push/pull message the transport sends itself (Node::join).
  Bytes push_pull_request(bool join);
  // Gossips our departure; others will mark us "left". After this we no
  // longer refute.
  void leave(TimePoint now);
  // The leave has gone out at least once (or there is no one to tell).
  bool leave_sent() const;
  bool leaving() const { return leaving_; }

  // Application data, spread to every member (each receives it once; the
  // sender's own Delegate does not get it). One larger than a packet goes
  // by stream. Throws Error(invalid_argument) above max_broadcast_bytes().
  // Dropped while this node knows no other member and has not asked to
  // join: those who join later get the application's state by push/pull.
  void broadcast(Bytes data);
  size_t max_broadcast_bytes() const;

  std::vector<Member> members() const;  // including ourselves
  std::optional<Member> member(const std::string& id) const;
  size_t num_alive() const { return alive_count_; }  // alive or suspect, ourselves included
  Stats stats() const { return stats_; }
  size_t queued_broadcasts() const { return queue_.size(); }
  unsigned health_score() const { return awareness_; }
  uint32_t incarnation() const { return incarnation_; }
  const std::string& id() const { return self_id_; }
  const Address& address() const { return self_addr_; }
  const Config& config() const { return config_; }

 private:
  struct NodeState {
    Member m;
    TimePoint state_change{};
  };
  struct Suspicion {
    TimePoint start;
    Duration min, max;
    unsigned k = 0, confirmations = 0;
    std::set<std::string> confirmed_by;
    TimePoint deadline;
  };
  struct Probe {
    std::string target;
    uint32_t seq = 0;
    TimePoint indirect_at, deadline;
    bool indirect_sent = false;
    unsigned expected_nacks = 0, nacks = 0;
  };
  struct Relay {
    uint32_t orig_seq;
    std::string reply_id;
    Address reply_to;
    bool want_nack;
    TimePoint deadline;
  };

  void ensure_started(TimePoint now);
  void handle_message(const Address& from, const Message& msg, TimePoint now, bool in_compound);
  void on_ping(const Address& from, const Ping& p);
  void on_indirect_ping(const IndirectPing& p, TimePoint now);
  void on_ack(uint32_t seq, TimePoint now);
  void on_nack(uint32_t seq);
  void on_alive(const Alive& a, TimePoint now);
  void on_suspect(const Suspect& s, TimePoint now);
  void on_dead(const Dead& d, TimePoint now);
  // via_stream: it came over a stream (reliably, from its origin in a small
  // cluster).
  void on_user(const UserMsg& u, TimePoint now, bool via_stream);
  std::optional<Bytes> handle_user_stream(const Message& msg, TimePoint now);
  void merge_remote(const PushPull& pp, TimePoint now);
  PushPull local_state(bool join, bool reply);

  void start_probe(TimePoint now);
  void send_indirect(TimePoint now);
  void probe_failed(TimePoint now);
  void gossip(TimePoint now);
  void stream_backlog(TimePoint now);
  void full_sync(TimePoint now);
  void send_stream(const std::string& peer, std::vector<Bytes> msgs, TimePoint now);
  void expire_unanswered_streams(TimePoint now);
  // Round-robin over the live (and recently dead) members in random order:
  // every peer gets a gossip packet once per pass.
  std::vector<std::string> gossip_targets(size_t k, TimePoint now);
  std::vector<std::string> live_peers() const;
  BroadcastQueue::Target target(const std::string& id) const;
  bool backlogged(TimePoint now) const;
  bool stream_free(const std::string& peer, TimePoint now) const;
  void note_dropped(size_t n);
  bool small_cluster() const { return alive_count_ <= config_.full_coverage_nodes; }
  bool confirm_by_stream() const { return alive_count_ <= config_.stream_confirm_nodes; }
  const std::string* id_at(const Address& a) const;
  void push_pull(TimePoint now);
  void check_suspicions(TimePoint now);
  void reap(TimePoint now);
  void reconnect(TimePoint now);
  void reconnect_to(const NodeState& st, TimePoint now);
  bool recently_exchanged(const std::string& id, TimePoint now) const;
  void ping_dead(TimePoint now);

  void refute(uint32_t seen_incarnation);
  void set_status(NodeState& st, MemberStatus s, TimePoint now);
  void notify(const NodeState& st);
  // dest: the member id at `to` ("" if unknown), so piggybacked gossip
  // knows who got it.
  void send(const std::string& dest, const Address& to, const Message& msg,
            const std::optional<Message>& extra = {});
  void enqueue_broadcast(const std::string& key, const Message& msg);
  std::vector<std::string> random_members(size_t k, TimePoint now, const std::string& exclude,
                                          bool include_recent_dead);
  void adjust_awareness(int delta);
  Duration scale(Duration d) const { return d * (awareness_ + 1); }

  Config config_;
  std::string self_id_, self_name_;
  Address self_addr_;
  Delegate& delegate_;
  std::mt19937_64 rng_;

  bool started_ = false;
  TimePoint last_now_{};  // latest time the caller gave us (for broadcast())
  bool leaving_ = false;
  // This node has asked to join a cluster (its own broadcasts are queued
  // from then on, even while it knows no other member).
  bool joined_ = false;
  uint32_t incarnation_ = 1;
  uint32_t seq_ = 0;
  unsigned awareness_ = 0;
  size_t alive_count_ = 1;

  std::unordered_map<std::string, NodeState> nodes_;
  std::vector<std::string> probe_order_;
  size_t probe_index_ = 0;
  std::unordered_map<std::string, Suspicion> suspicions_;
  // No suspicion fires before this (a lower bound), so most ticks skip the scan.
  TimePoint next_suspicion_check_{};
  std::optional<Probe> probe_;
  std::unordered_map<uint32_t, Relay> relays_;
  // Pings to dead members in flight (seq -> member, sent at): an ack means
  // the member is reachable again, and a push/pull with it follows.
  std::unordered_map<uint32_t, std::pair<std::string, TimePoint>> dead_pings_;
  size_t dead_ping_index_ = 0;
  // When we last sent a member our state for a reconnect or a revival
  // (erased when it is reaped), so one comeback costs one exchange.
  std::unordered_map<std::string, TimePoint> exchanged_at_;

  TimePoint next_probe_{}, next_gossip_{}, next_push_pull_{}, next_reap_{}, next_reconnect_{},
      next_dead_ping_{};

  BroadcastQueue queue_;
  std::vector<std::string> gossip_order_;
  size_t gossip_index_ = 0;
  // Per peer: no broadcast stream to it before this (one in flight, or spacing).
  std::unordered_map<std::string, TimePoint> stream_busy_until_;
  // Peers a stream of broadcasts is on its way to, not answered yet.
  std::set<std::string> streams_unanswered_;
  bool full_sync_needed_ = false;
  TimePoint next_full_sync_{};
  std::unordered_map<uint64_t, TimePoint> seen_user_;
  std::deque<std::pair<TimePoint, uint64_t>> seen_user_order_;

  std::vector<OutPacket> outbox_;
  Stats stats_;
};

}  // namespace swarmnet::gossip
