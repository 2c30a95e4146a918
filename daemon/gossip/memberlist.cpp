#include "daemon/gossip/memberlist.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/error.hpp"

namespace swarmnet::gossip {

Duration suspicion_timeout(unsigned mult, size_t n, Duration interval) {
  // Larger clusters take longer to spread a refutation, so they wait longer.
  double node_scale = std::max(1.0, std::log10(std::max<double>(1.0, static_cast<double>(n))));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(interval).count();
  return std::chrono::milliseconds(
      static_cast<int64_t>(mult * node_scale * static_cast<double>(ms)));
}

unsigned retransmit_limit(unsigned mult, size_t n) {
  double node_scale = std::ceil(std::log10(static_cast<double>(n) + 1.0));
  return mult * static_cast<unsigned>(node_scale);
}

Duration push_pull_scale(Duration interval, size_t n) {
  // Above 32 nodes, a full state sync gets more expensive; do it less often
  // so the cluster-wide TCP load stays flat.
  constexpr size_t kThreshold = 32;
  if (n <= kThreshold) return interval;
  double mult = std::ceil(std::log2(static_cast<double>(n)) - std::log2(double(kThreshold))) + 1.0;
  return interval * static_cast<int64_t>(mult);
}

Duration remaining_suspicion_time(unsigned confirmations, unsigned k, Duration elapsed,
                                  Duration min, Duration max) {
  double frac = k == 0 ? 1.0 : std::log(confirmations + 1.0) / std::log(k + 1.0);
  double max_s = std::chrono::duration<double>(max).count();
  double min_s = std::chrono::duration<double>(min).count();
  double raw = max_s - frac * (max_s - min_s);
  Duration timeout = std::chrono::milliseconds(static_cast<int64_t>(std::floor(1000.0 * raw)));
  if (timeout < min) timeout = min;
  return timeout - elapsed;
}

Memberlist::Memberlist(Config config, std::string self_id, std::string self_name, Address self_addr,
                       Delegate& delegate, std::mt19937_64 rng)
    : config_(config),
      self_id_(std::move(self_id)),
      self_name_(std::move(self_name)),
      self_addr_(self_addr),
      delegate_(delegate),
      rng_(rng),
      queue_(config_.max_queued_broadcasts) {
  if (self_id_.empty() || self_id_.size() > kMaxIdLength)
    throw Error(Errc::invalid_argument, "gossip: node id must be 1..64 bytes");
  if (self_name_.size() > kMaxNameLength)
    throw Error(Errc::invalid_argument, "gossip: node name longer than 255 bytes");
  if (config_.packet_mtu < config_.packet_overhead + 128)
    throw Error(Errc::invalid_argument, "gossip: packet MTU too small");
  NodeState self{Member{self_id_, self_name_, self_addr_, incarnation_, MemberStatus::alive}, {}};
  nodes_.emplace(self_id_, std::move(self));
  probe_order_.push_back(self_id_);
}

void Memberlist::ensure_started(TimePoint now) {
  last_now_ = std::max(last_now_, now);
  if (started_) return;
  started_ = true;
  // Random phases, so a cluster started at once does not probe and gossip
  // in lockstep.
  auto stagger = [&](Duration d) {
    std::uniform_int_distribution<int64_t> dist(0, std::max<int64_t>(1, d.count()) - 1);
    return now + Duration(dist(rng_));
  };
  next_probe_ = stagger(config_.probe_interval);
  next_gossip_ = stagger(config_.gossip_interval);
  next_push_pull_ = stagger(config_.push_pull_interval);
  next_reap_ = now + std::chrono::seconds(1);
  next_reconnect_ = stagger(config_.reconnect_interval);
  next_dead_ping_ = stagger(config_.dead_ping_interval);
  enqueue_broadcast(self_id_, Alive{incarnation_, self_id_, self_name_, self_addr_});
}

// ---- input ----------------------------------------------------------------

void Memberlist::handle_packet(const Address& from, std::span<const uint8_t> plaintext,
                               TimePoint now) {
  ensure_started(now);
  stats_.packets_in++;
  stats_.bytes_in += plaintext.size();
  auto msg = decode(plaintext);
  if (!msg) {
    stats_.decode_failures++;
    return;
  }
  if (auto* c = std::get_if<Compound>(&*msg)) {
    // An empty compound is a peer's answer to a stream of broadcasts: the
    // next batch may go.
    if (c->parts.empty()) {
      if (const std::string* id = id_at(from)) {
        stream_busy_until_[*id] = now + config_.stream_batch_spacing;
        if (streams_unanswered_.erase(*id)) queue_.stream_answered(target(*id));
      }
      return;
    }
    for (const auto& part : c->parts) {
      auto inner = decode(part);
      // decode() allows a compound at top level only; refuse one nested.
      if (!inner || std::holds_alternative<Compound>(*inner)) {
        stats_.decode_failures++;
        continue;
      }
      handle_message(from, *inner, now, true);
    }
    return;
  }
  handle_message(from, *msg, now, false);
}

std::optional<Bytes> Memberlist::handle_stream(const Address& /*from*/,
                                               std::span<const uint8_t> plaintext, TimePoint now) {
  ensure_started(now);
  stats_.streams_in++;
  stats_.bytes_in += plaintext.size();
  auto msg = decode(plaintext);
  if (msg && (std::holds_alternative<UserMsg>(*msg) || std::holds_alternative<Compound>(*msg)))
    return handle_user_stream(*msg, now);
  auto* pp = msg ? std::get_if<PushPull>(&*msg) : nullptr;
  if (!pp || pp->reply) {
    stats_.decode_failures++;
    return std::nullopt;
  }
  // Merge first, then reply: if the peer thought us dead, the merge makes
  // us refute, and the reply carries the new incarnation that brings us
  // back to life on its side (a reply from before the merge left that to
  // gossip, which does not go to members it thinks dead).
  stats_.push_pulls_in++;
  merge_remote(*pp, now);
  Bytes reply = encode(local_state(false, true));
  stats_.bytes_out += reply.size();
  return reply;
}

std::optional<Bytes> Memberlist::handle_user_stream(const Message& msg, TimePoint now) {
  // Broadcasts too large for a packet, or a backlog, in one stream: a user
  // message or a compound of them, nothing else.
  std::vector<UserMsg> msgs;
  if (auto* u = std::get_if<UserMsg>(&msg)) msgs.push_back(*u);
  if (auto* c = std::get_if<Compound>(&msg)) {
    for (const auto& part : c->parts) {
      auto inner = decode(part);
      auto* u = inner ? std::get_if<UserMsg>(&*inner) : nullptr;
      if (!u) {
        stats_.decode_failures++;
        return std::nullopt;
      }
      msgs.push_back(std::move(*u));
    }
  }
  if (msgs.empty()) {
    stats_.decode_failures++;
    return std::nullopt;
  }
  for (const auto& u : msgs) on_user(u, now, true);
  Bytes reply = encode_compound({});
  stats_.bytes_out += reply.size();
  return reply;
}

void Memberlist::handle_message(const Address& from, const Message& msg, TimePoint now,
                                bool in_compound) {
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, Ping>) {
          on_ping(from, m);
        } else if constexpr (std::is_same_v<T, IndirectPing>) {
          on_indirect_ping(m, now);
        } else if constexpr (std::is_same_v<T, Ack>) {
          on_ack(m.seq, now);
        } else if constexpr (std::is_same_v<T, Nack>) {
          on_nack(m.seq);
        } else if constexpr (std::is_same_v<T, Alive>) {
          on_alive(m, now);
        } else if constexpr (std::is_same_v<T, Suspect>) {
          on_suspect(m, now);
        } else if constexpr (std::is_same_v<T, Dead>) {
          on_dead(m, now);
        } else if constexpr (std::is_same_v<T, UserMsg>) {
          on_user(m, now, false);
        } else if constexpr (std::is_same_v<T, PushPull>) {
          // Only a reply to our own request comes back as a packet; a
          // request must arrive on a stream. Not piggybacked either.
          if (!m.reply || in_compound) {
            stats_.decode_failures++;
            return;
          }
          merge_remote(m, now);
        } else {
          stats_.decode_failures++;  // compound inside compound: refused
        }
      },
      msg);
}

void Memberlist::on_ping(const Address& from, const Ping& p) {
  // A ping meant for a previous owner of this address is not ours to answer:
  // acking it would keep a dead node alive.
  if (!p.target_id.empty() && p.target_id != self_id_) return;
  Address to = p.source.port != 0 ? p.source : from;
  send(p.source_id, to, Ack{p.seq});
}

void Memberlist::on_indirect_ping(const IndirectPing& p, TimePoint now) {
  uint32_t local = ++seq_;
  relays_[local] = Relay{p.seq, p.source_id, p.source, p.want_nack, now + config_.probe_timeout};
  send(p.target_id, p.target, Ping{local, p.target_id, self_id_, self_addr_});
}

void Memberlist::on_ack(uint32_t seq, TimePoint now) {
  if (probe_ && probe_->seq == seq) {
    probe_.reset();
    adjust_awareness(-1);
    return;
  }
  if (auto dp = dead_pings_.find(seq); dp != dead_pings_.end()) {
    auto it = nodes_.find(dp->second.first);
    dead_pings_.erase(dp);
    if (it != nodes_.end() && it->second.m.status == MemberStatus::dead && !leaving_)
      reconnect_to(it->second, now);
    return;
  }
  auto it = relays_.find(seq);
  if (it != relays_.end()) {
    send(it->second.reply_id, it->second.reply_to, Ack{it->second.orig_seq});
    relays_.erase(it);
  }
}

void Memberlist::on_nack(uint32_t seq) {
  if (probe_ && probe_->seq == seq) probe_->nacks++;
}

void Memberlist::on_alive(const Alive& a, TimePoint now) {
  if (a.node_id.empty()) return;
  if (a.node_id == self_id_) {
    // Someone claims a newer life of ours (a previous run of this node, or
    // stale gossip after a restart): outbid it.
    if (!leaving_ &&
        (a.incarnation > incarnation_ || (a.incarnation == incarnation_ && a.addr != self_addr_)))
      refute(a.incarnation);
    return;
  }
  auto it = nodes_.find(a.node_id);
  if (it == nodes_.end()) {
    NodeState st{Member{a.node_id, a.name, a.addr, a.incarnation, MemberStatus::alive}, now};
    auto [ins, _] = nodes_.emplace(a.node_id, std::move(st));
    alive_count_++;
    // Insert at a random position so new nodes are probed soon but not all
    // by everybody at once.
    std::uniform_int_distribution<size_t> pos(0, probe_order_.size());
    probe_order_.insert(probe_order_.begin() + static_cast<ptrdiff_t>(pos(rng_)), a.node_id);
    enqueue_broadcast(a.node_id, a);
    notify(ins->second);
    return;
  }
  NodeState& st = it->second;
  if (a.incarnation <= st.m.incarnation) return;  // old news
  suspicions_.erase(a.node_id);
  bool changed = st.m.status != MemberStatus::alive || st.m.addr != a.addr || st.m.name != a.name;
  const bool revived = st.m.status == MemberStatus::dead || st.m.status == MemberStatus::left;
  st.m.incarnation = a.incarnation;
  st.m.addr = a.addr;
  st.m.name = a.name;
  set_status(st, MemberStatus::alive, now);
  enqueue_broadcast(a.node_id, a);
  if (changed) notify(st);
  // What either side wrote while the other was away reached neither (a
  // broadcast goes to live members only). In a small cluster every member
  // that sees another come back exchanges state with it, so each write of
  // the time apart is everywhere within a round trip, not at the next
  // push/pull; in a large one the push/pulls do it (N^2 streams otherwise).
  if (revived && confirm_by_stream() && !leaving_ && !recently_exchanged(a.node_id, now))
    reconnect_to(st, now);
}

bool Memberlist::recently_exchanged(const std::string& id, TimePoint now) const {
  auto it = exchanged_at_.find(id);
  return it != exchanged_at_.end() && now - it->second < 2 * config_.dead_ping_interval;
}

void Memberlist::on_suspect(const Suspect& s, TimePoint now) {
  auto it = nodes_.find(s.node_id);
  if (it == nodes_.end()) return;
  NodeState& st = it->second;
  if (s.incarnation < st.m.incarnation) return;

  auto sus = suspicions_.find(s.node_id);
  if (sus != suspicions_.end()) {
    // Lifeguard: an independent confirmation shortens the timer; re-gossip
    // it so others can count it too.
    Suspicion& x = sus->second;
    if (x.confirmations < x.k && x.confirmed_by.insert(s.from_id).second) {
      x.confirmations++;
      x.deadline =
          now + remaining_suspicion_time(x.confirmations, x.k, now - x.start, x.min, x.max);
      next_suspicion_check_ = std::min(next_suspicion_check_, x.deadline);
      enqueue_broadcast(s.node_id, s);
    }
    return;
  }
  if (st.m.status != MemberStatus::alive) return;

  if (s.node_id == self_id_) {
    if (leaving_) return;
    // Being suspected hints that we are the slow one (Lifeguard).
    adjust_awareness(1);
    refute(s.incarnation);
    return;
  }

  enqueue_broadcast(s.node_id, s);
  st.m.incarnation = s.incarnation;
  set_status(st, MemberStatus::suspect, now);

  size_t n = alive_count_;
  // Confirmations wanted; with a tiny cluster there are not enough peers to
  // confirm, so start at the minimum.
  unsigned k = config_.suspicion_mult > 2 ? config_.suspicion_mult - 2 : 0;
  if (n < k + 2) k = 0;
  Suspicion x;
  x.start = now;
  x.min = suspicion_timeout(config_.suspicion_mult, n, config_.probe_interval);
  x.max = k == 0 ? x.min : x.min * config_.suspicion_max_timeout_mult;
  x.k = k;
  x.confirmed_by.insert(s.from_id);  // the accuser does not confirm itself
  x.deadline = now + (k == 0 ? x.min : x.max);
  next_suspicion_check_ = std::min(next_suspicion_check_, x.deadline);
  suspicions_[s.node_id] = std::move(x);
  notify(st);
}

void Memberlist::on_dead(const Dead& d, TimePoint now) {
  auto it = nodes_.find(d.node_id);
  if (it == nodes_.end()) return;
  NodeState& st = it->second;
  if (d.incarnation < st.m.incarnation) return;
  suspicions_.erase(d.node_id);
  if (st.m.status == MemberStatus::dead || st.m.status == MemberStatus::left) return;

  if (d.node_id == self_id_ && !leaving_) {
    refute(d.incarnation);
    return;
  }
  enqueue_broadcast(d.node_id, d);
  st.m.incarnation = d.incarnation;
  set_status(st, d.from_id == d.node_id ? MemberStatus::left : MemberStatus::dead, now);
  if (probe_ && probe_->target == d.node_id) probe_.reset();
  notify(st);
}

void Memberlist::on_user(const UserMsg& u, TimePoint now, bool via_stream) {
  if (seen_user_.count(u.msg_id)) return;
  // Forget old ids first; the cap bounds memory under a flood.
  while (!seen_user_order_.empty() &&
         (seen_user_order_.front().first + config_.user_dedup_time < now ||
          seen_user_order_.size() >= config_.user_dedup_capacity)) {
    seen_user_.erase(seen_user_order_.front().second);
    seen_user_order_.pop_front();
  }
  seen_user_.emplace(u.msg_id, now);
  seen_user_order_.emplace_back(now, u.msg_id);
  // Spread it on (epidemic), then deliver. Not where its origin reaches
  // every peer itself: by stream up to stream_confirm_nodes, and up to
  // full_coverage_nodes when it came by stream (a datagram from its origin
  // may have been lost elsewhere, so those are relayed for redundancy).
  bool origin_covers = confirm_by_stream() || (via_stream && small_cluster());
  if (!origin_covers) {
    Bytes enc = encode(u);
    bool large = enc.size() > config_.packet_mtu - config_.packet_overhead - kCompoundHeader - kCompoundPerPart;
    note_dropped(queue_.queue({}, std::move(enc), BroadcastQueue::Kind::relay, large, now));
  }
  delegate_.on_user_message(u.data);
}

void Memberlist::merge_remote(const PushPull& pp, TimePoint now) {
  for (const auto& m : pp.members) {
    switch (m.status) {
      case MemberStatus::alive:
        on_alive(Alive{m.incarnation, m.id, m.name, m.addr}, now);
        break;
      case MemberStatus::left:
        on_dead(Dead{m.incarnation, m.id, m.id}, now);
        break;
      case MemberStatus::dead:
      case MemberStatus::suspect:
        // Someone else's verdict of death becomes a suspicion here: the node
        // gets its chance to refute, as in memberlist.
        on_suspect(Suspect{m.incarnation, m.id, self_id_}, now);
        break;
    }
  }
  delegate_.merge_remote_state(pp.user_state);
}

PushPull Memberlist::local_state(bool join, bool reply) {
  PushPull pp;
  pp.join = join;
  pp.reply = reply;
  pp.members.reserve(nodes_.size());
  for (const auto& [id, st] : nodes_) pp.members.push_back(st.m);
  pp.user_state = delegate_.local_state();
  return pp;
}

// ---- timers ---------------------------------------------------------------

void Memberlist::tick(TimePoint now) {
  ensure_started(now);
  if (probe_) {
    if (!probe_->indirect_sent && now >= probe_->indirect_at) send_indirect(now);
    if (probe_ && now >= probe_->deadline) probe_failed(now);
  }
  if (!probe_ && now >= next_probe_) {
    next_probe_ = now + scale(config_.probe_interval);
    if (!leaving_) start_probe(now);
  }
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (now >= it->second.deadline) {
      if (it->second.want_nack) send(it->second.reply_id, it->second.reply_to, Nack{it->second.orig_seq});
      it = relays_.erase(it);
    } else {
      ++it;
    }
  }
  check_suspicions(now);
  if (now >= next_gossip_) {
    next_gossip_ = now + config_.gossip_interval;
    gossip(now);
  }
  expire_unanswered_streams(now);
  stream_backlog(now);
  if (full_sync_needed_ && now >= next_full_sync_) full_sync(now);
  if (now >= next_push_pull_) {
    next_push_pull_ = now + push_pull_scale(config_.push_pull_interval, alive_count_);
    if (!leaving_) push_pull(now);
  }
  if (now >= next_reconnect_) {
    next_reconnect_ = now + config_.reconnect_interval;
    if (!leaving_) reconnect(now);
  }
  if (now >= next_dead_ping_) {
    next_dead_ping_ = now + config_.dead_ping_interval;
    if (!leaving_) ping_dead(now);
  }
  if (now >= next_reap_) {
    // Reaping works on a scale of hours; once a second is plenty, and only
    // when someone is dead or left (a scan of all members otherwise).
    next_reap_ = now + std::chrono::seconds(1);
    if (nodes_.size() > alive_count_ + (leaving_ ? 1 : 0)) reap(now);
  }
}

void Memberlist::start_probe(TimePoint now) {
  // Randomized round-robin: walk a shuffled list, reshuffle at the end.
  for (size_t tries = 0; tries < probe_order_.size(); ++tries) {
    if (probe_index_ >= probe_order_.size()) {
      probe_index_ = 0;
      std::shuffle(probe_order_.begin(), probe_order_.end(), rng_);
    }
    const std::string& id = probe_order_[probe_index_++];
    if (id == self_id_) continue;
    const NodeState& st = nodes_.at(id);
    if (st.m.status == MemberStatus::dead || st.m.status == MemberStatus::left) continue;

    Probe p;
    p.target = id;
    p.seq = ++seq_;
    p.indirect_at = now + scale(config_.probe_timeout);
    p.deadline = now + scale(config_.probe_interval);
    probe_ = p;
    std::optional<Message> extra;
    // Lifeguard's buddy system: tell a suspect it is suspected, so it can
    // refute at once instead of waiting for the gossip to reach it.
    if (st.m.status == MemberStatus::suspect) extra = Suspect{st.m.incarnation, id, self_id_};
    send(id, st.m.addr, Ping{p.seq, id, self_id_, self_addr_}, extra);
    return;
  }
}

void Memberlist::send_indirect(TimePoint now) {
  probe_->indirect_sent = true;
  auto it = nodes_.find(probe_->target);
  if (it == nodes_.end()) return;
  auto helpers = random_members(config_.indirect_checks, now, probe_->target, false);
  for (const auto& h : helpers) {
    const NodeState& hs = nodes_.at(h);
    if (hs.m.status != MemberStatus::alive) continue;
    probe_->expected_nacks++;
    send(h, hs.m.addr,
         IndirectPing{probe_->seq, probe_->target, it->second.m.addr, self_id_, self_addr_, true});
  }
}

void Memberlist::probe_failed(TimePoint now) {
  Probe p = *probe_;
  probe_.reset();
  // Lifeguard: missing nacks mean our own links (or we) are the trouble,
  // so slow down; nacks all in means the target really is quiet.
  if (p.expected_nacks > 0) {
    if (p.nacks < p.expected_nacks) adjust_awareness(static_cast<int>(p.expected_nacks - p.nacks));
  } else {
    adjust_awareness(1);
  }
  auto it = nodes_.find(p.target);
  if (it == nodes_.end()) return;
  on_suspect(Suspect{it->second.m.incarnation, p.target, self_id_}, now);
}

void Memberlist::check_suspicions(TimePoint now) {
  if (now < next_suspicion_check_) return;
  std::vector<std::string> expired;
  next_suspicion_check_ = TimePoint::max();
  for (const auto& [id, x] : suspicions_) {
    if (now >= x.deadline)
      expired.push_back(id);
    else
      next_suspicion_check_ = std::min(next_suspicion_check_, x.deadline);
  }
  for (const auto& id : expired) {
    auto it = nodes_.find(id);
    suspicions_.erase(id);
    if (it == nodes_.end() || it->second.m.status != MemberStatus::suspect) continue;
    on_dead(Dead{it->second.m.incarnation, id, self_id_}, now);
  }
}

void Memberlist::gossip(TimePoint now) {
  if (queue_.size() == 0) return;
  auto targets = gossip_targets(config_.gossip_nodes, now);
  size_t budget = config_.packet_mtu - config_.packet_overhead - kCompoundHeader;
  // In a large cluster a backlog of our own goes by stream to this round's
  // targets (in a small one stream_backlog() sends it to every peer).
  bool own_by_stream = !small_cluster() && backlogged(now);
  for (const auto& id : targets) {
    auto t = target(id);
    auto msgs = queue_.take(t, kCompoundPerPart, budget, kMaxCompoundParts);
    if (!msgs.empty()) {
      Bytes pkt = msgs.size() == 1 ? std::move(msgs.front()) : encode_compound(msgs);
      stats_.packets_out++;
      stats_.bytes_out += pkt.size();
      outbox_.push_back(OutPacket{nodes_.at(id).m.addr, std::move(pkt), false});
    }
    if (!t.id.empty() && (queue_.large_count() > 0 || own_by_stream) && stream_free(id, now))
      send_stream(id, queue_.take_stream(t, own_by_stream, config_.stream_batch_bytes, kMaxCompoundParts),
                  now);
  }
}

bool Memberlist::backlogged(TimePoint now) const {
  if (queue_.own_count() == 0 && queue_.large_count() == 0) return false;
  if (queue_.own_count() > config_.backlog_messages || queue_.large_count() > 0) return true;
  auto oldest = queue_.oldest_waiting_own(confirm_by_stream(), small_cluster());
  return oldest && now - *oldest >= config_.backlog_age;
}

bool Memberlist::stream_free(const std::string& peer, TimePoint now) const {
  auto it = stream_busy_until_.find(peer);
  return it == stream_busy_until_.end() || now >= it->second;
}

void Memberlist::stream_backlog(TimePoint now) {
  if (!small_cluster() || !backlogged(now)) return;
  for (const auto& peer : live_peers()) {
    if (!stream_free(peer, now)) continue;
    send_stream(peer,
                queue_.take_stream(target(peer), true, config_.stream_batch_bytes, kMaxCompoundParts),
                now);
  }
}

void Memberlist::send_stream(const std::string& peer, std::vector<Bytes> msgs, TimePoint now) {
  if (msgs.empty()) return;
  Bytes req = msgs.size() == 1 ? std::move(msgs.front()) : encode_compound(msgs);
  stats_.streams_out++;
  stats_.stream_batches++;
  stats_.bytes_out += req.size();
  outbox_.push_back(OutPacket{nodes_.at(peer).m.addr, std::move(req), true});
  // Until the peer answers (or the stream times out): one at a time.
  stream_busy_until_[peer] = now + config_.stream_timeout;
  streams_unanswered_.insert(peer);
}

void Memberlist::stream_failed(const Address& to, TimePoint now) {
  const std::string* id = id_at(to);
  if (!id || !streams_unanswered_.erase(*id)) return;
  queue_.stream_lost(*id);
  stream_busy_until_[*id] = now + config_.stream_batch_spacing;
}

void Memberlist::expire_unanswered_streams(TimePoint now) {
  // The transport says when a stream fails; a stream it lost without a word
  // (or one to a peer that went away) ends at its deadline.
  for (auto it = streams_unanswered_.begin(); it != streams_unanswered_.end();) {
    auto busy = stream_busy_until_.find(*it);
    if (busy == stream_busy_until_.end() || now >= busy->second) {
      queue_.stream_lost(*it);
      it = streams_unanswered_.erase(it);
    } else {
      ++it;
    }
  }
}

void Memberlist::full_sync(TimePoint now) {
  full_sync_needed_ = false;
  next_full_sync_ = now + config_.full_sync_spacing;
  auto peers = small_cluster() ? live_peers() : random_members(config_.gossip_nodes, now, {}, false);
  if (peers.empty()) return;
  stats_.full_syncs++;
  Bytes req = encode(local_state(false, false));
  for (const auto& peer : peers) {
    stats_.push_pulls_out++;
    stats_.streams_out++;
    stats_.bytes_out += req.size();
    outbox_.push_back(OutPacket{nodes_.at(peer).m.addr, req, true});
  }
}

void Memberlist::note_dropped(size_t n) {
  if (n == 0) return;
  stats_.broadcasts_dropped += n;
  full_sync_needed_ = true;
}

void Memberlist::push_pull(TimePoint now) {
  auto peer = random_members(1, now, {}, false);
  if (peer.empty()) return;
  const NodeState& st = nodes_.at(peer.front());
  if (st.m.status != MemberStatus::alive) return;
  Bytes req = encode(local_state(false, false));
  stats_.push_pulls_out++;
  stats_.streams_out++;
  stats_.bytes_out += req.size();
  outbox_.push_back(OutPacket{st.m.addr, std::move(req), true});
}

void Memberlist::reconnect(TimePoint now) {
  std::vector<const NodeState*> dead;
  for (const auto& [id, st] : nodes_)
    if (st.m.status == MemberStatus::dead) dead.push_back(&st);
  if (dead.empty()) return;
  std::uniform_int_distribution<size_t> pick(0, dead.size() - 1);
  reconnect_to(*dead[pick(rng_)], now);
}

void Memberlist::reconnect_to(const NodeState& st, TimePoint now) {
  exchanged_at_[st.m.id] = now;
  // A full exchange: the peer learns that we think it dead and refutes
  // before it replies (handle_stream merges first), so its reply brings it
  // back to life here; if it thought us dead, we refute on its reply, and
  // our alive news reaches it as it is now a live peer.
  Bytes req = encode(local_state(true, false));
  stats_.push_pulls_out++;
  stats_.streams_out++;
  stats_.bytes_out += req.size();
  outbox_.push_back(OutPacket{st.m.addr, std::move(req), true});
}

void Memberlist::ping_dead(TimePoint now) {
  // Unanswered pings are dropped after a few intervals (the peer is still away).
  std::erase_if(dead_pings_,
                [&](const auto& e) { return now - e.second.second > 4 * config_.dead_ping_interval; });
  if (nodes_.size() <= alive_count_) return;  // nobody dead or left
  // Round-robin by position in the probe order (it holds every member).
  for (size_t tries = 0; tries < probe_order_.size(); ++tries) {
    if (dead_ping_index_ >= probe_order_.size()) dead_ping_index_ = 0;
    const std::string& id = probe_order_[dead_ping_index_++];
    const NodeState& st = nodes_.at(id);
    if (st.m.status != MemberStatus::dead) continue;
    const uint32_t seq = ++seq_;
    dead_pings_[seq] = {id, now};
    send(id, st.m.addr, Ping{seq, id, self_id_, self_addr_});
    return;
  }
}

void Memberlist::reap(TimePoint now) {
  std::vector<std::string> gone;
  for (const auto& [id, st] : nodes_)
    if ((st.m.status == MemberStatus::dead || st.m.status == MemberStatus::left) &&
        st.state_change + config_.dead_reap_time < now && id != self_id_)
      gone.push_back(id);
  if (gone.empty()) return;
  for (const auto& id : gone) {
    nodes_.erase(id);
    exchanged_at_.erase(id);
  }
  std::erase_if(probe_order_, [&](const std::string& id) { return !nodes_.count(id); });
  probe_index_ = std::min(probe_index_, probe_order_.size());
}

// ---- actions --------------------------------------------------------------

void Memberlist::join(const std::vector<Address>& seeds, TimePoint now) {
  ensure_started(now);
  for (const auto& s : seeds) {
    Bytes req = push_pull_request(true);
    stats_.streams_out++;
    stats_.bytes_out += req.size();
    outbox_.push_back(OutPacket{s, std::move(req), true});
  }
}

Bytes Memberlist::push_pull_request(bool join) {
  joined_ = joined_ || join;
  stats_.push_pulls_out++;
  return encode(local_state(join, false));
}

void Memberlist::leave(TimePoint now) {
  ensure_started(now);
  if (leaving_) return;
  leaving_ = true;
  probe_.reset();
  on_dead(Dead{incarnation_, self_id_, self_id_}, now);
}

bool Memberlist::leave_sent() const {
  if (!leaving_) return false;
  // Alone (we no longer count ourselves): no one to tell.
  if (alive_count_ == 0) return true;
  // One gossip round's worth of transmits (gossip_nodes members, or fewer
  // if that is the whole limit), so a single lost packet does not lose it.
  int sent = queue_.transmits(self_id_);
  unsigned want =
      std::min(config_.gossip_nodes, retransmit_limit(config_.retransmit_mult, alive_count_ + 1));
  return sent < 0 || static_cast<unsigned>(sent) >= want;
}

size_t Memberlist::max_broadcast_bytes() const {
  // A user message's header: kind, id, length.
  return config_.max_stream_bytes - 16;
}

void Memberlist::broadcast(Bytes data) {
  if (data.size() > max_broadcast_bytes())
    throw Error(Errc::invalid_argument, "gossip: broadcast of " + std::to_string(data.size()) +
                                            " bytes is larger than a stream may carry");
  // No one to tell: no other member known, and no join of ours that it
  // could miss (a join's push/pull carries the state as it was when it
  // left). Whoever comes later joins by a push/pull of the whole state,
  // which carries every broadcast (Delegate), so a node alone holds none:
  // in a cluster of one they piled up to max_queued_broadcasts for good.
  if (nodes_.size() <= 1 && !joined_) return;
  UserMsg u;
  u.msg_id = rng_();
  u.data = std::move(data);
  // Remember our own id, stamped with the latest time we know, so the
  // message coming back round is not delivered to us.
  seen_user_.emplace(u.msg_id, last_now_);
  seen_user_order_.emplace_back(last_now_, u.msg_id);
  Bytes enc = encode(u);
  bool large = enc.size() > config_.packet_mtu - config_.packet_overhead - kCompoundHeader - kCompoundPerPart;
  note_dropped(queue_.queue({}, std::move(enc), BroadcastQueue::Kind::own, large, last_now_));
}

std::vector<Member> Memberlist::members() const {
  std::vector<Member> out;
  out.reserve(nodes_.size());
  for (const auto& [id, st] : nodes_) out.push_back(st.m);
  std::sort(out.begin(), out.end(), [](const Member& a, const Member& b) { return a.id < b.id; });
  return out;
}

std::optional<Member> Memberlist::member(const std::string& id) const {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.m;
}

std::vector<OutPacket> Memberlist::take_outbox() {
  return std::exchange(outbox_, {});
}

// ---- helpers --------------------------------------------------------------

void Memberlist::refute(uint32_t seen_incarnation) {
  incarnation_ = std::max(incarnation_, seen_incarnation) + 1;
  NodeState& self = nodes_.at(self_id_);
  self.m.incarnation = incarnation_;
  enqueue_broadcast(self_id_, Alive{incarnation_, self_id_, self_name_, self_addr_});
}

void Memberlist::set_status(NodeState& st, MemberStatus s, TimePoint now) {
  auto live = [](MemberStatus x) { return x == MemberStatus::alive || x == MemberStatus::suspect; };
  if (live(st.m.status) && !live(s)) alive_count_--;
  if (!live(st.m.status) && live(s)) alive_count_++;
  if (st.m.status != s) st.state_change = now;
  st.m.status = s;
}

void Memberlist::notify(const NodeState& st) {
  if (st.m.id == self_id_) return;
  delegate_.on_member_change(st.m);
}

void Memberlist::enqueue_broadcast(const std::string& key, const Message& msg) {
  note_dropped(queue_.queue(key, encode(msg), BroadcastQueue::Kind::membership, false, last_now_));
}

std::vector<std::string> Memberlist::live_peers() const {
  std::vector<std::string> out;
  for (const auto& [id, st] : nodes_)
    if (id != self_id_ && (st.m.status == MemberStatus::alive || st.m.status == MemberStatus::suspect))
      out.push_back(id);
  return out;
}

BroadcastQueue::Target Memberlist::target(const std::string& id) const {
  BroadcastQueue::Target t;
  auto it = nodes_.find(id);
  bool live = it != nodes_.end() && id != self_id_ &&
              (it->second.m.status == MemberStatus::alive || it->second.m.status == MemberStatus::suspect);
  // Sends to the recently dead are not tracked: they do not count for a round.
  if (live) t.id = id;
  size_t self = leaving_ ? 0 : 1;
  t.peers = std::max<size_t>(1, alive_count_ > self ? alive_count_ - self : 0);
  t.limit = retransmit_limit(config_.retransmit_mult, alive_count_);
  t.cover = small_cluster();
  t.confirm = confirm_by_stream();
  return t;
}

const std::string* Memberlist::id_at(const Address& a) const {
  for (const auto& [id, st] : nodes_)
    if (st.m.addr == a && id != self_id_) return &id;
  return nullptr;
}

std::vector<std::string> Memberlist::gossip_targets(size_t k, TimePoint now) {
  std::vector<std::string> out;
  auto eligible = [&](const std::string& id) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || id == self_id_) return false;
    if (std::find(out.begin(), out.end(), id) != out.end()) return false;
    const Member& m = it->second.m;
    if (m.status == MemberStatus::alive || m.status == MemberStatus::suspect) return true;
    // Gossip to the recently dead: if they were wrongly declared, they
    // learn it and refute.
    return m.status == MemberStatus::dead && now - it->second.state_change < config_.gossip_to_dead_time;
  };
  // At most one pass over everyone: with fewer eligible than k, all of them.
  for (size_t scanned = 0; out.size() < k && scanned <= probe_order_.size(); ++scanned) {
    if (gossip_index_ >= gossip_order_.size()) {
      gossip_order_ = probe_order_;
      std::shuffle(gossip_order_.begin(), gossip_order_.end(), rng_);
      gossip_index_ = 0;
    }
    const std::string& id = gossip_order_[gossip_index_++];
    if (eligible(id)) out.push_back(id);
  }
  return out;
}

void Memberlist::send(const std::string& dest, const Address& to, const Message& msg,
                      const std::optional<Message>& extra) {
  std::vector<Bytes> parts;
  parts.push_back(encode(msg));
  if (extra) parts.push_back(encode(*extra));
  size_t used = config_.packet_overhead + kCompoundHeader;
  for (const auto& p : parts) used += p.size() + kCompoundPerPart;
  // Piggyback whatever gossip fits in the rest of the packet.
  if (used < config_.packet_mtu) {
    auto more = queue_.take(target(dest), kCompoundPerPart, config_.packet_mtu - used,
                            kMaxCompoundParts - parts.size());
    for (auto& m : more) parts.push_back(std::move(m));
  }
  Bytes pkt = parts.size() == 1 ? std::move(parts.front()) : encode_compound(parts);
  stats_.packets_out++;
  stats_.bytes_out += pkt.size();
  outbox_.push_back(OutPacket{to, std::move(pkt), false});
}

std::vector<std::string> Memberlist::random_members(size_t k, TimePoint now,
                                                    const std::string& exclude,
                                                    bool include_recent_dead) {
  std::vector<std::string> out;
  if (k == 0 || probe_order_.size() <= 1) return out;
  auto eligible = [&](const std::string& id) {
    if (id == self_id_ || id == exclude) return false;
    if (std::find(out.begin(), out.end(), id) != out.end()) return false;
    const NodeState& st = nodes_.at(id);
    if (st.m.status == MemberStatus::alive || st.m.status == MemberStatus::suspect) return true;
    // Gossip to the recently dead: if they were wrongly declared, they
    // learn it and refute.
    return include_recent_dead && st.m.status == MemberStatus::dead &&
           now - st.state_change < config_.gossip_to_dead_time;
  };
  // Rejection sampling keeps this O(k) in large clusters; a bounded number
  // of tries, then a linear pass so small or mostly-dead lists still work.
  std::uniform_int_distribution<size_t> pick(0, probe_order_.size() - 1);
  for (size_t tries = 0; tries < 4 * k + 8 && out.size() < k; ++tries) {
    const std::string& id = probe_order_[pick(rng_)];
    if (eligible(id)) out.push_back(id);
  }
  if (out.size() < k) {
    std::vector<std::string> rest;
    for (const auto& id : probe_order_)
      if (eligible(id)) rest.push_back(id);
    std::shuffle(rest.begin(), rest.end(), rng_);
    for (auto& id : rest) {
      if (out.size() >= k) break;
      out.push_back(std::move(id));
    }
  }
  return out;
}

void Memberlist::adjust_awareness(int delta) {
  int v = static_cast<int>(awareness_) + delta;
  int max = static_cast<int>(config_.awareness_max_multiplier) - 1;
  awareness_ = static_cast<unsigned>(std::clamp(v, 0, std::max(0, max)));
}

}  // namespace swarmnet::gossip
