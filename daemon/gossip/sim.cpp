#include "daemon/gossip/sim.hpp"

namespace swarmnet::gossip::sim {

std::vector<uint8_t> RecordingDelegate::local_state() {
  // Each string as a u32 length (big-endian) + bytes.
  std::vector<uint8_t> out;
  for (const auto& s : state) {
    uint32_t n = static_cast<uint32_t>(s.size());
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(n >> shift));
    out.insert(out.end(), s.begin(), s.end());
  }
  return out;
}

void RecordingDelegate::merge_remote_state(std::span<const uint8_t> data) {
  size_t i = 0;
  while (data.size() - i >= 4) {
    size_t n = (size_t(data[i]) << 24) | (size_t(data[i + 1]) << 16) | (size_t(data[i + 2]) << 8) |
               data[i + 3];
    i += 4;
    if (n > data.size() - i) return;
    state.emplace(reinterpret_cast<const char*>(data.data() + i), n);
    i += n;
  }
}

Network::Network(NetConfig net, Config node_config)
    : net_(net), config_(node_config), rng_(net.seed), now_(TimePoint{} + std::chrono::hours(1)) {}

Network::~Network() = default;

Address Network::address(size_t i) const {
  return Address{Ipv4Address(0x0A000000u + static_cast<uint32_t>(i) + 1), 7946};
}

void Network::make_core(size_t i) {
  auto& n = nodes_[i];
  n.delegate = std::make_unique<RecordingDelegate>();
  n.delegate->clock = &now_;
  n.core = std::make_unique<Memberlist>(config_, id(i), id(i), address(i), *n.delegate,
                                        std::mt19937_64(rng_()));
}

size_t Network::add_node() {
  size_t i = nodes_.size();
  nodes_.emplace_back();
  make_core(i);
  by_addr_[address(i)] = i;
  nodes_[i].core->tick(now_);
  flush(i);
  return i;
}

void Network::join(size_t i, size_t seed) {
  nodes_[i].core->join({address(seed)}, now_);
  flush(i);
}

void Network::publish(size_t i, const std::string& item) {
  nodes_[i].delegate->state.insert(item);
  nodes_[i].core->broadcast(Bytes(item.begin(), item.end()));
  flush(i);
}

void Network::stop(size_t i) {
  nodes_[i].up = false;
}

void Network::restart(size_t i, size_t seed) {
  auto& n = nodes_[i];
  n.bytes_before +=
      n.core->stats().bytes_out + n.core->stats().packets_out * config_.packet_overhead;
  make_core(i);
  n.up = true;
  n.core->tick(now_);
  join(i, seed);
}

void Network::partition(const std::vector<std::vector<size_t>>& groups) {
  for (auto& n : nodes_) n.group = 0;
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i : groups[g]) nodes_[i].group = static_cast<int>(g) + 1;
}

void Network::heal() {
  for (auto& n : nodes_) n.group = 0;
}

bool Network::reachable(size_t a, size_t b) const {
  return nodes_[a].up && nodes_[b].up && nodes_[a].group == nodes_[b].group;
}

Duration Network::delay() {
  Duration d = net_.latency;
  if (net_.jitter.count() > 0) {
    std::uniform_int_distribution<int64_t> j(0, net_.jitter.count());
    d += Duration(j(rng_));
  }
  return d;
}

std::optional<MemberStatus> Network::view(size_t observer, size_t about) const {
  auto m = nodes_[observer].core->member(id(about));
  if (!m) return std::nullopt;
  return m->status;
}

uint64_t Network::bytes_sent(size_t i) const {
  const auto& n = nodes_[i];
  auto s = n.core->stats();
  return n.bytes_before + s.bytes_out + s.packets_out * config_.packet_overhead;
}

void Network::flush(size_t i) {
  for (auto& out : nodes_[i].core->take_outbox()) {
    auto it = by_addr_.find(out.to);
    if (it == by_addr_.end()) continue;
    size_t to = it->second;
    if (!reachable(i, to)) {
      dropped_++;
      continue;
    }
    if (!out.reliable_stream) {
      std::bernoulli_distribution lost(net_.loss);
      if (lost(rng_)) {
        dropped_++;
        continue;
      }
    }
    events_.push(Event{now_ + delay(), seq_++, to, address(i),
                       out.reliable_stream ? Kind::stream_request : Kind::datagram,
                       std::move(out.plaintext)});
  }
}

void Network::deliver(Event& e) {
  size_t to = e.to;
  size_t from = by_addr_.at(e.from);
  // What a node sent before it stopped still arrives; datagrams in flight
  // when a partition starts are lost with it.
  if (!nodes_[to].up || nodes_[from].group != nodes_[to].group) {
    dropped_++;
    return;
  }
  auto& core = *nodes_[to].core;
  switch (e.kind) {
    case Kind::datagram:
    case Kind::stream_reply:
      core.handle_packet(e.from, e.data, now_);
      break;
    case Kind::stream_request:
      if (auto reply = core.handle_stream(e.from, e.data, now_))
        events_.push(Event{now_ + delay(), seq_++, from, address(to), Kind::stream_reply,
                           std::move(*reply)});
      break;
  }
  flush(to);
}

void Network::run_for(Duration d) {
  run_until([] { return false; }, d);
}

bool Network::run_until(const std::function<bool()>& pred, Duration max) {
  TimePoint end = now_ + max;
  while (now_ < end) {
    if (pred()) return true;
    now_ += net_.step;
    while (!events_.empty() && events_.top().at <= now_) {
      // Moving out of top() is safe: the element is popped right after.
      Event e = std::move(const_cast<Event&>(events_.top()));
      events_.pop();
      deliver(e);
    }
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!nodes_[i].up) continue;
      nodes_[i].core->tick(now_);
      flush(i);
    }
  }
  return pred();
}

}  // namespace swarmnet::gossip::sim
