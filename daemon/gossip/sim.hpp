// An in-process network of Memberlist cores on virtual time, for tests and
// the convergence benchmark: per-packet loss, latency with jitter, nodes
// that stop and restart, and partitions (groups that cannot reach each
// other) that heal. Streams (push/pull) are not lost but fail across a
// partition or to a stopped node, as a TCP connect would.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "daemon/gossip/memberlist.hpp"

namespace swarmnet::gossip::sim {

// Records what the core reports, and keeps a grow-only set of strings as
// "application state" so push/pull convergence can be checked. Like
// swarmnet's store, the state also holds every user message received (and
// Network::publish() puts the sender's own in), so a push/pull carries them.
class RecordingDelegate : public Delegate {
 public:
  void on_member_change(const Member& m) override { changes.push_back(m); }
  void on_user_message(std::span<const uint8_t> data) override {
    messages.emplace_back(data.begin(), data.end());
    message_at.push_back(clock ? *clock : TimePoint{});
    state.emplace(data.begin(), data.end());
  }
  std::vector<uint8_t> local_state() override;
  void merge_remote_state(std::span<const uint8_t> data) override;

  std::vector<Member> changes;
  std::vector<Bytes> messages;
  std::vector<TimePoint> message_at;  // when each of messages arrived
  std::set<std::string> state;
  const TimePoint* clock = nullptr;  // the network's virtual time
};

struct NetConfig {
  double loss = 0.0;  // probability a datagram is dropped
  Duration latency = std::chrono::milliseconds(1);
  Duration jitter = std::chrono::milliseconds(0);  // uniform extra delay in [0, jitter]
  Duration step = std::chrono::milliseconds(5);    // tick granularity
  uint64_t seed = 1;
};

class Network {
 public:
  Network(NetConfig net, Config node_config);
  ~Network();

  // Adds a node (not yet joined); returns its index. Address 10.0.x.y:7946.
  size_t add_node();
  // Node i writes `item` into its state and broadcasts it (as swarmnet
  // broadcasts a store change).
  void publish(size_t i, const std::string& item);
  // i pushes/pulls with seed j (as Memberlist::join).
  void join(size_t i, size_t seed);
  // Stopped nodes neither tick nor receive; restart() brings up a fresh
  // instance with the same id and address (its memory is lost, as after a
  // crash) and joins it through `seed`.
  void stop(size_t i);
  void restart(size_t i, size_t seed);
  bool is_up(size_t i) const { return nodes_[i].up; }
  // Nodes in different groups cannot talk; nodes in no group are in group 0.
  void partition(const std::vector<std::vector<size_t>>& groups);
  void heal();
  void set_loss(double loss) { net_.loss = loss; }

  void run_for(Duration d);
  // Runs until pred() holds (checked every step) or max elapses; returns
  // whether it held.
  bool run_until(const std::function<bool()>& pred, Duration max);

  TimePoint now() const { return now_; }
  size_t size() const { return nodes_.size(); }
  Memberlist& node(size_t i) { return *nodes_[i].core; }
  RecordingDelegate& delegate(size_t i) { return *nodes_[i].delegate; }
  std::string id(size_t i) const { return "node-" + std::to_string(i); }
  Address address(size_t i) const;
  // Status of `about` as node `observer` sees it (nullopt: unknown).
  std::optional<MemberStatus> view(size_t observer, size_t about) const;
  // Wire bytes a node sent (plaintext + the envelope per datagram), summed
  // over current and earlier instances.
  uint64_t bytes_sent(size_t i) const;
  uint64_t datagrams_dropped() const { return dropped_; }

 private:
  struct SimNode {
    std::unique_ptr<RecordingDelegate> delegate;
    std::unique_ptr<Memberlist> core;
    bool up = true;
    int group = 0;
    uint64_t bytes_before = 0;  // from earlier instances
  };
  enum class Kind { datagram, stream_request, stream_reply };
  struct Event {
    TimePoint at;
    uint64_t seq;
    size_t to;
    Address from;
    Kind kind;
    Bytes data;
    bool operator>(const Event& o) const { return std::tie(at, seq) > std::tie(o.at, o.seq); }
  };

  void make_core(size_t i);
  void flush(size_t i);
  void deliver(Event& e);
  bool reachable(size_t a, size_t b) const;
  Duration delay();

  NetConfig net_;
  Config config_;
  std::mt19937_64 rng_;
  TimePoint now_{};
  uint64_t seq_ = 0, dropped_ = 0;
  std::vector<SimNode> nodes_;
  std::map<Address, size_t> by_addr_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
};

}  // namespace swarmnet::gossip::sim
