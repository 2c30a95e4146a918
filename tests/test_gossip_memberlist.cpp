// The membership core on the simulated network (virtual time): joining,
// dissemination, failure detection, refutation, leave, partitions and heals,
// plus memberlist's formulas and the broadcast queue on their own.
#include <catch2/catch.hpp>

#include <map>

#include "daemon/gossip/broadcast_queue.hpp"
#include "daemon/gossip/memberlist.hpp"
#include "daemon/gossip/sim.hpp"

using namespace swarmnet::gossip;
using namespace std::chrono_literals;

namespace {

bool all_see(sim::Network& net, MemberStatus want, std::vector<size_t> observers,
             std::vector<size_t> about) {
  for (size_t o : observers)
    for (size_t a : about)
      if (o != a && net.view(o, a) != want) return false;
  return true;
}

std::vector<size_t> range(size_t from, size_t to) {
  std::vector<size_t> v;
  for (size_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// n nodes, each joined through node 0, run until everyone sees everyone.
void build(sim::Network& net, size_t n) {
  for (size_t i = 0; i < n; ++i) net.add_node();
  for (size_t i = 1; i < n; ++i) net.join(i, 0);
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::alive, range(0, n), range(0, n)); },
                        30s));
}

}  // namespace

TEST_CASE("gossip formulas follow memberlist", "[gossip][memberlist]") {
  CHECK(suspicion_timeout(4, 1, 1s) == 4s);
  CHECK(suspicion_timeout(4, 5, 1s) == 4s);  // log10 floored at 1
  CHECK(suspicion_timeout(4, 1000, 1s) == 12s);
  CHECK(retransmit_limit(4, 3) == 4);
  CHECK(retransmit_limit(4, 1000) == 16);
  CHECK(push_pull_scale(30s, 10) == 30s);
  CHECK(push_pull_scale(30s, 1000) == 30s * 6);
  // No confirmations: the max; k of k: the min; in between, logarithmic.
  CHECK(remaining_suspicion_time(0, 3, 0s, 2s, 30s) == 30s);
  CHECK(remaining_suspicion_time(3, 3, 0s, 2s, 30s) == 2s);
  auto mid = remaining_suspicion_time(1, 3, 0s, 2s, 30s);
  CHECK(mid > 2s);
  CHECK(mid < 30s);
  CHECK(remaining_suspicion_time(3, 3, 5s, 2s, 30s) == -3s);
}

TEST_CASE("broadcast queue: limit, order and invalidation", "[gossip][queue]") {
  BroadcastQueue q;
  // Untracked targets (no id): only the transmit count matters.
  BroadcastQueue::Target any{.id = "", .peers = 5, .limit = 2};
  q.queue("a", Bytes(10, 1));
  q.queue("b", Bytes(10, 2));
  q.queue("a", Bytes(12, 3));  // supersedes the first "a"
  CHECK(q.size() == 2);
  auto first = q.take(any, 2, 1000, 255);
  REQUIRE(first.size() == 2);
  CHECK(first[0] == Bytes(10, 2));  // oldest first among equals
  q.queue("c", Bytes(10, 4));
  auto second = q.take(any, 2, 12, 255);  // room for one: the untransmitted one wins
  REQUIRE(second.size() == 1);
  CHECK(second[0] == Bytes(10, 4));
  CHECK(q.transmits("c") == 1);
  q.take(any, 2, 1000, 255);  // a and b reach their limit of 2
  CHECK(q.transmits("a") == -1);
  CHECK(q.size() == 0);
  q.queue({}, Bytes(5, 9));
  q.queue({}, Bytes(5, 9));  // user messages never supersede each other
  CHECK(q.size() == 2);
}

TEST_CASE("broadcast queue: every peer gets our own message before any gets it twice",
          "[gossip][queue]") {
  BroadcastQueue q;
  // 3 nodes: 2 peers, a limit of 4 transmits.
  auto to = [](const char* id) {
    return BroadcastQueue::Target{.id = id, .peers = 2, .limit = 4, .cover = true};
  };
  q.queue({}, Bytes(10, 1), BroadcastQueue::Kind::own);
  CHECK(q.take(to("A"), 2, 1000, 255).size() == 1);
  // Pings and acks to A keep coming: A has it, they carry nothing more.
  CHECK(q.take(to("A"), 2, 1000, 255).empty());
  CHECK(q.take(to("A"), 2, 1000, 255).empty());
  CHECK(q.take(to("B"), 2, 1000, 255).size() == 1);
  // A new round for loss: both again, then the limit.
  CHECK(q.take(to("A"), 2, 1000, 255).size() == 1);
  CHECK(q.take(to("B"), 2, 1000, 255).size() == 1);
  CHECK(q.size() == 0);

  SECTION("in a cluster of 100 an own message waits for all 99 peers, past the limit") {
    q.queue({}, Bytes(10, 2), BroadcastQueue::Kind::own);
    for (int i = 0; i < 98; ++i) {
      auto t = BroadcastQueue::Target{.id = "p" + std::to_string(i), .peers = 99, .limit = 12, .cover = true};
      REQUIRE(q.take(t, 2, 1000, 255).size() == 1);
    }
    CHECK(q.size() == 1);
    auto last = BroadcastQueue::Target{.id = "p98", .peers = 99, .limit = 12, .cover = true};
    CHECK(q.take(last, 2, 1000, 255).size() == 1);
    CHECK(q.size() == 0);
  }
  SECTION("a relayed one stops at the limit") {
    q.queue({}, Bytes(10, 3), BroadcastQueue::Kind::relay);
    for (int i = 0; i < 12; ++i) {
      auto t = BroadcastQueue::Target{.id = "p" + std::to_string(i), .peers = 99, .limit = 12, .cover = true};
      REQUIRE(q.take(t, 2, 1000, 255).size() == 1);
    }
    CHECK(q.size() == 0);
  }
}

TEST_CASE("broadcast queue: large messages go only by stream; a stream to every peer is done",
          "[gossip][queue]") {
  BroadcastQueue q;
  auto to = [](const char* id) {
    return BroadcastQueue::Target{.id = id, .peers = 2, .limit = 4, .cover = true};
  };
  q.queue({}, Bytes(2000, 1), BroadcastQueue::Kind::own, true);
  q.queue({}, Bytes(10, 2), BroadcastQueue::Kind::own);
  // A datagram never carries the large one, nor waits behind it.
  auto d = q.take(to("A"), 2, 1358, 255);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Bytes(10, 2));
  CHECK(q.large_count() == 1);
  // A stream of large ones only, or of all our own not yet sent to B.
  auto sa = q.take_stream(to("A"), false, 1 << 20, 255);
  REQUIRE(sa.size() == 1);
  CHECK(sa[0] == Bytes(2000, 1));
  auto sb = q.take_stream(to("B"), true, 1 << 20, 255);
  CHECK(sb.size() == 2);
  // On their way, not delivered until the peers answer.
  CHECK(q.large_count() == 1);
  q.stream_answered(to("A"));
  q.stream_answered(to("B"));
  // The large one reached both peers reliably: done; the small one still
  // has its retransmissions for loss (it went to A by datagram).
  CHECK(q.large_count() == 0);
  CHECK(q.size() == 1);
}

TEST_CASE("broadcast queue: a stream that fails delivers nothing; the next one carries it again",
          "[gossip][queue]") {
  BroadcastQueue q;
  // Confirmed by stream (a small cluster): done once streamed to both peers.
  auto to = [](const char* id) {
    return BroadcastQueue::Target{.id = id, .peers = 2, .limit = 4, .cover = true, .confirm = true};
  };
  q.queue({}, Bytes(10, 1), BroadcastQueue::Kind::own);
  q.queue({}, Bytes(10, 2), BroadcastQueue::Kind::own);
  REQUIRE(q.take_stream(to("A"), true, 1 << 20, 255).size() == 2);
  REQUIRE(q.take_stream(to("B"), true, 1 << 20, 255).size() == 2);
  // While in flight, a second stream to B does not carry them twice.
  CHECK(q.take_stream(to("B"), true, 1 << 20, 255).empty());
  q.stream_answered(to("A"));
  q.stream_lost("B");  // timed out (loss) or refused: B has nothing
  CHECK(q.size() == 2);
  q.queue({}, Bytes(10, 3), BroadcastQueue::Kind::own);
  auto again = q.take_stream(to("B"), true, 1 << 20, 255);
  REQUIRE(again.size() == 3);
  CHECK(again[0] == Bytes(10, 1));
  CHECK(again[1] == Bytes(10, 2));
  q.stream_answered(to("B"));
  CHECK(q.size() == 1);  // the third still waits for A
  CHECK(q.take_stream(to("A"), true, 1 << 20, 255).size() == 1);
  q.stream_answered(to("A"));
  CHECK(q.size() == 0);
}

TEST_CASE("broadcast queue: bounded; overflow drops relays first, never membership news",
          "[gossip][queue]") {
  BroadcastQueue q(4);
  CHECK(q.queue("n1", Bytes(5, 1)) == 0);
  CHECK(q.queue({}, Bytes(5, 2), BroadcastQueue::Kind::own) == 0);
  CHECK(q.queue({}, Bytes(5, 3), BroadcastQueue::Kind::relay) == 0);
  CHECK(q.queue({}, Bytes(5, 4), BroadcastQueue::Kind::own) == 0);
  CHECK(q.queue({}, Bytes(5, 5), BroadcastQueue::Kind::own) == 1);  // the relay went
  CHECK(q.size() == 4);
  CHECK(q.own_count() == 3);
  CHECK(q.queue({}, Bytes(5, 6), BroadcastQueue::Kind::own) == 1);  // then the oldest own
  CHECK(q.own_count() == 3);
  CHECK(q.transmits("n1") == 0);
  CHECK(q.queue("n2", Bytes(5, 7)) == 1);
  CHECK(q.queue("n3", Bytes(5, 8)) == 1);
  CHECK(q.queue("n4", Bytes(5, 9)) == 1);
  CHECK(q.queue("n5", Bytes(5, 10)) == 0);  // only membership news left: kept
  CHECK(q.size() == 5);
}

TEST_CASE("memberlist: nodes join and converge, user messages reach all once",
          "[gossip][memberlist]") {
  sim::Network net({.loss = 0.0, .seed = 7}, Config{});
  build(net, 8);
  // Two senders at once: each hears the other's message, never its own.
  net.node(3).broadcast(Bytes{'h', 'i'});
  net.node(4).broadcast(Bytes{'y', 'o'});
  REQUIRE(net.run_until(
      [&] {
        for (size_t i = 0; i < net.size(); ++i)
          if (net.delegate(i).messages.size() < (i == 3 || i == 4 ? 1u : 2u)) return false;
        return true;
      },
      5s));
  net.run_for(10s);  // let every retransmission happen
  for (size_t i = 0; i < net.size(); ++i) {
    auto& got = net.delegate(i).messages;
    if (i == 3) {
      REQUIRE(got.size() == 1);
      CHECK(got[0] == Bytes{'y', 'o'});
    } else if (i == 4) {
      REQUIRE(got.size() == 1);
      CHECK(got[0] == Bytes{'h', 'i'});
    } else {
      CHECK(got.size() == 2);
    }
  }
  // A join reports first sight to the delegate.
  CHECK(net.delegate(1).changes.size() >= 7);
}

TEST_CASE("memberlist: push/pulls are counted where they start and where they are answered",
          "[gossip][memberlist]") {
  Config c;
  c.push_pull_interval = 1s;
  sim::Network net({.loss = 0.0, .seed = 11}, c);
  net.add_node();
  net.add_node();
  CHECK(net.node(0).stats().push_pulls_out == 0);
  CHECK(net.node(0).stats().push_pulls_in == 0);
  net.join(1, 0);  // one push/pull from 1 to 0
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::alive, {0, 1}, {0, 1}); }, 5s));
  CHECK(net.node(1).stats().push_pulls_out >= 1);
  CHECK(net.node(0).stats().push_pulls_in >= 1);
  // Then one a second from each side: what one starts, the other answers
  // (one may still be on its way).
  net.run_for(10s);
  const Stats a = net.node(0).stats(), b = net.node(1).stats();
  CHECK(a.push_pulls_out >= 5);
  CHECK(b.push_pulls_out >= 5);
  CHECK(a.push_pulls_in <= b.push_pulls_out);
  CHECK(a.push_pulls_in + 1 >= b.push_pulls_out);
  CHECK(b.push_pulls_in <= a.push_pulls_out);
  CHECK(b.push_pulls_in + 1 >= a.push_pulls_out);
}

TEST_CASE("memberlist: a stopped node is suspected, then declared dead", "[gossip][memberlist]") {
  sim::Network net({.loss = 0.0, .seed = 11}, Config{});
  build(net, 6);
  auto t0 = net.now();
  net.stop(5);
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::dead, range(0, 5), {5}); }, 30s));
  auto took = net.now() - t0;
  // Detection: up to ~2 probe rounds; suspicion: 4 s minimum (n < 10), less
  // than its 24 s maximum thanks to confirmations from the other prober.
  CHECK(took >= 4s);
  CHECK(took < 12s);
  // Everyone went through suspect before dead.
  for (size_t i = 0; i < 5; ++i) {
    std::vector<MemberStatus> seen;
    for (const auto& m : net.delegate(i).changes)
      if (m.id == net.id(5)) seen.push_back(m.status);
    REQUIRE(seen.size() >= 3);
    CHECK(seen[seen.size() - 2] == MemberStatus::suspect);
    CHECK(seen.back() == MemberStatus::dead);
  }
  // The rest are still alive.
  CHECK(all_see(net, MemberStatus::alive, range(0, 5), range(0, 5)));
}

TEST_CASE("memberlist: a suspected live node refutes with a higher incarnation",
          "[gossip][memberlist]") {
  sim::Network net({.loss = 0.0, .seed = 3}, Config{});
  build(net, 6);
  uint32_t before = net.node(5).incarnation();
  // Cut node 5 off just long enough to be suspected, not declared dead.
  net.partition({{5}});
  REQUIRE(net.run_until(
      [&] {
        for (size_t i = 0; i < 5; ++i)
          if (net.view(i, 5) == MemberStatus::suspect) return true;
        return false;
      },
      10s));
  net.heal();
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::alive, range(0, 5), {5}); }, 10s));
  CHECK(net.node(5).incarnation() > before);
  for (size_t i = 0; i < 5; ++i) {
    for (const auto& m : net.delegate(i).changes)
      if (m.id == net.id(5)) CHECK(m.status != MemberStatus::dead);
    CHECK(net.node(i).member(net.id(5))->incarnation == net.node(5).incarnation());
  }
}

TEST_CASE("memberlist: leave is seen as left, not dead", "[gossip][memberlist]") {
  sim::Network net({.loss = 0.0, .seed = 5}, Config{});
  build(net, 5);
  net.node(2).leave(net.now());
  CHECK(net.node(2).leaving());
  REQUIRE(net.run_until([&] { return net.node(2).leave_sent(); }, 2s));
  net.stop(2);
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::left, {0, 1, 3, 4}, {2}); }, 5s));
  net.run_for(30s);  // no later verdict of "dead" overrides it
  CHECK(all_see(net, MemberStatus::left, {0, 1, 3, 4}, {2}));

  SECTION("and the node can come back") {
    net.restart(2, 0);
    REQUIRE(net.run_until(
        [&] { return all_see(net, MemberStatus::alive, range(0, 5), range(0, 5)); }, 10s));
  }
}

TEST_CASE("memberlist: with 10% loss, detection is accurate and messages spread",
          "[gossip][memberlist]") {
  sim::Network net({.loss = 0.10, .jitter = 2ms, .seed = 9}, Config{});
  build(net, 20);
  net.node(0).broadcast(Bytes{1});
  net.run_for(60s);
  for (size_t i = 1; i < net.size(); ++i) CHECK(net.delegate(i).messages.size() == 1);
  // Indirect probes and suspicion keep loss from killing anyone.
  CHECK(all_see(net, MemberStatus::alive, range(0, 20), range(0, 20)));
}

TEST_CASE("memberlist: partition and heal converge membership and user state via push/pull",
          "[gossip][memberlist]") {
  Config cfg;
  cfg.reconnect_interval = 10s;
  sim::Network net({.loss = 0.01, .seed = 13}, cfg);
  build(net, 6);
  net.partition({{0, 1, 2}, {3, 4, 5}});
  // Each side declares the other dead...
  REQUIRE(net.run_until(
      [&] {
        return all_see(net, MemberStatus::dead, {0, 1, 2}, {3, 4, 5});
      },
      60s));
  REQUIRE(net.run_until(
      [&] {
        return all_see(net, MemberStatus::dead, {3, 4, 5}, {0, 1, 2});
      },
      60s));
  // ...and writes state the other cannot see.
  net.delegate(1).state.insert("left-side");
  net.delegate(4).state.insert("right-side");
  net.run_for(5s);
  net.heal();
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::alive, range(0, 6), range(0, 6)); },
                        120s));
  // Push/pull spreads the application state everywhere.
  Config def;
  REQUIRE(net.run_until(
      [&] {
        for (size_t i = 0; i < 6; ++i)
          if (net.delegate(i).state != std::set<std::string>{"left-side", "right-side"})
            return false;
        return true;
      },
      3 * def.push_pull_interval));
}

TEST_CASE("memberlist: a node cut off until declared dead is back everywhere within 3 s of the heal",
          "[gossip][memberlist]") {
  // Both sides declare each other dead, so nobody probes anybody across the
  // old cut; without a ping to the dead the heal waited for the 30 s
  // reconnect (or for gossip to the recently dead, if it had news to carry).
  auto cut_for = GENERATE(20s, 60s);  // dead for less and for more than gossip_to_dead_time
  CAPTURE(cut_for.count());
  sim::Network net({.loss = 0.0, .seed = 17}, Config{});
  build(net, 3);
  net.partition({{0, 1}, {2}});
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::dead, {0, 1}, {2}); }, 60s));
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::dead, {2}, {0, 1}); }, 60s));
  // State only push/pull carries (the sim's delegate): written on every
  // node while apart, so each side has something the other lacks, and node
  // 1's news can reach 2 only by an exchange of its own or through 0's.
  net.delegate(0).state.insert("majority-0");
  net.delegate(1).state.insert("majority-1");
  net.delegate(2).state.insert("cut-off-2");
  net.run_for(cut_for);
  net.heal();
  const TimePoint healed = net.now();
  REQUIRE(net.run_until([&] { return all_see(net, MemberStatus::alive, range(0, 3), range(0, 3)); },
                        60s));
  CHECK(net.now() - healed <= 3s);
  // The exchanges that brought them back carried the state both ways.
  REQUIRE(net.run_until(
      [&] {
        for (size_t i : {0, 1, 2})
          if (net.delegate(i).state != std::set<std::string>{"majority-0", "majority-1", "cut-off-2"})
            return false;
        return true;
      },
      60s));
  CHECK(net.now() - healed <= 3s);
}

TEST_CASE("memberlist: malformed packets are counted and ignored", "[gossip][memberlist]") {
  sim::RecordingDelegate d;
  Memberlist m(Config{}, "a", "a", Address{}, d, std::mt19937_64(1));
  TimePoint now{};
  m.handle_packet(Address{}, Bytes{}, now);
  m.handle_packet(Address{}, Bytes{1, 2, 3}, now);
  // A push/pull request must come on a stream, not as a datagram.
  m.handle_packet(Address{}, encode(PushPull{}), now);
  CHECK(m.stats().decode_failures == 3);
  CHECK_FALSE(m.handle_stream(Address{}, Bytes{9}, now));
  // Ids longer than allowed are refused by the constructor.
  CHECK_THROWS(Memberlist(Config{}, std::string(65, 'x'), "", Address{}, d, std::mt19937_64(1)));
}

namespace {

// A write as big as a typical store line (a service or an endpoint, about
// 400 bytes of JSON): three fill a packet.
std::string item(size_t k) {
  std::string s = "m" + std::to_string(k) + ":";
  return s + std::string(400 - s.size(), 'x');
}

// Publishes `count` distinct items from node (k % publishers) every `gap`,
// then runs `tail`; returns how many (item, receiver) deliveries never
// happened by gossip (Delegate::on_user_message), of count * (n - 1).
size_t missed_deliveries(sim::Network& net, size_t count, Duration gap, Duration tail,
                         size_t publishers) {
  size_t n = net.size();
  for (size_t k = 0; k < count; ++k) {
    net.publish(k % publishers, item(k));
    net.run_for(gap);
  }
  net.run_for(tail);
  size_t missed = 0;
  for (size_t i = 0; i < n; ++i) {
    std::set<std::string> got;
    for (const auto& m : net.delegate(i).messages) got.emplace(m.begin(), m.end());
    for (size_t k = 0; k < count; ++k)
      if (k % publishers != i && !got.count(item(k))) missed++;
  }
  return missed;
}

}  // namespace

// memberlist counts a broadcast's transmits per packet,
// and pings and acks to one peer use them up, so with 3 nodes a broadcast
// could miss a peer at 0% loss (53 of 12,000 deliveries in the review).
// The review's case: a steady trickle (20 writes a second), yet memberlist
// let pings and acks to one peer use up a broadcast's transmits.
TEST_CASE("delivery: at 0% loss and a light load every broadcast reaches every node (3 nodes)",
          "[gossip][delivery]") {
  sim::Network net({.loss = 0.0, .jitter = 1ms, .seed = 20}, Config{});
  build(net, 3);
  CHECK(missed_deliveries(net, 2000, 50ms, 5s, 3) == 0);
}

// A load beyond what packets carry (66 writes a second of 400 bytes).
TEST_CASE("delivery: at 0% loss every broadcast reaches every node by gossip (3 nodes)",
          "[gossip][delivery]") {
  sim::Network net({.loss = 0.0, .jitter = 1ms, .seed = 21}, Config{});
  build(net, 3);
  CHECK(missed_deliveries(net, 3000, 15ms, 5s, 3) == 0);
}

TEST_CASE("delivery: at 0% loss every broadcast reaches every node by gossip (10 nodes)",
          "[gossip][delivery]") {
  sim::Network net({.loss = 0.0, .jitter = 1ms, .seed = 22}, Config{});
  build(net, 10);
  CHECK(missed_deliveries(net, 1000, 20ms, 5s, 10) == 0);
}

TEST_CASE("delivery: at 5% loss every broadcast reaches every node within 5 s",
          "[gossip][delivery]") {
  sim::Network net({.loss = 0.05, .jitter = 1ms, .seed = 23}, Config{});
  build(net, 10);
  std::map<std::string, TimePoint> sent;
  for (size_t k = 0; k < 500; ++k) {
    sent[item(k)] = net.now();
    net.publish(k % 10, item(k));
    net.run_for(20ms);
  }
  net.run_for(5s);
  Duration worst{};
  size_t late = 0, missing = 0;
  for (size_t i = 0; i < net.size(); ++i) {
    auto& d = net.delegate(i);
    std::set<std::string> got;
    for (size_t m = 0; m < d.messages.size(); ++m) {
      std::string x(d.messages[m].begin(), d.messages[m].end());
      got.insert(x);
      Duration took = d.message_at[m] - sent.at(x);
      worst = std::max(worst, took);
      if (took > 5s) late++;
    }
    for (size_t k = 0; k < 500; ++k)
      if (k % 10 != i && !got.count(item(k))) missing++;
  }
  INFO("slowest delivery " << std::chrono::duration<double>(worst).count() << " s");
  CHECK(missing == 0);
  CHECK(late == 0);
}

// A message larger than a packet stayed at the head of
// the queue forever, and after 64 of them nothing else was sent.
TEST_CASE("delivery: messages larger than a packet go by stream and do not block the others",
          "[gossip][delivery]") {
  sim::Network net({.loss = 0.0, .seed = 24}, Config{});
  build(net, 3);
  for (int k = 0; k < 70; ++k) net.publish(0, "big" + std::to_string(k) + std::string(2000, 'x'));
  for (int k = 0; k < 10; ++k) net.publish(1, "small" + std::to_string(k));
  auto everyone_has_all = [&] {
    for (size_t i = 0; i < 3; ++i) {
      size_t want = (i == 0 ? 10 : i == 1 ? 70 : 80);
      if (net.delegate(i).messages.size() != want) return false;
    }
    return true;
  };
  CHECK(net.run_until(everyone_has_all, 5s));
  CHECK(net.node(0).stats().stream_batches > 0);
  net.run_for(5s);
  CHECK(everyone_has_all());  // each exactly once
  CHECK(net.node(0).queued_broadcasts() == 0);
}

TEST_CASE("delivery: a burst goes by stream; all nodes hold it soon after the last write",
          "[gossip][delivery]") {
  sim::Network net({.loss = 0.0, .jitter = 1ms, .seed = 25}, Config{});
  build(net, 3);
  // 1,000 writes from the three nodes at once, one every millisecond.
  for (int k = 0; k < 1000; ++k) {
    net.publish(k % 3, item(k));
    net.run_for(1ms);
  }
  auto t_last = net.now();
  auto all_hold = [&] {
    for (size_t i = 0; i < 3; ++i)
      if (net.delegate(i).state.size() < 1000) return false;
    return true;
  };
  REQUIRE(net.run_until(all_hold, 10s));
  double took = std::chrono::duration<double>(net.now() - t_last).count();
  INFO("every node holds all 1,000 writes " << took << " s after the last");
  CHECK(took < 1.0);
  CHECK(net.node(0).stats().stream_batches > 0);
  CHECK(net.node(0).stats().broadcasts_dropped == 0);
}

TEST_CASE("delivery: a broadcast whose stream to a peer was lost still reaches it soon after",
          "[gossip][delivery]") {
  // The stream that confirms a broadcast (500 ms after it was queued) goes
  // into a short cut and never arrives. It used to count as delivered when
  // it was sent: the broadcast left the queue, and the peer had it only from
  // the next push/pull, tens of seconds later (test_chaos, 25% loss).
  sim::Network net({.loss = 0.0, .seed = 26}, Config{});
  build(net, 3);
  net.partition({{0, 1}, {2}});
  net.publish(0, "during-the-cut");
  net.run_for(1500ms);  // the stream to 2 has gone (and failed); 2 is not dead yet
  REQUIRE(net.node(0).stats().stream_batches > 0);
  REQUIRE(net.view(0, 2) != MemberStatus::dead);
  net.heal();
  const TimePoint healed = net.now();
  auto got = [&](size_t i) {
    for (const auto& m : net.delegate(i).messages)
      if (std::string(m.begin(), m.end()) == "during-the-cut") return true;
    return false;
  };
  CHECK(got(1));  // the control: the side that was never cut off had it
  REQUIRE(net.run_until([&] { return got(2); }, 30s));
  INFO("node 2 had it " << std::chrono::duration<double>(net.now() - healed).count() << " s after the heal");
  CHECK(net.now() - healed <= 2s);
  // And it is still done with: nothing stays queued forever.
  REQUIRE(net.run_until([&] { return net.node(0).queued_broadcasts() == 0; }, 30s));
}

TEST_CASE("delivery: overflow of the bounded queue turns into a full sync, nothing is lost",
          "[gossip][delivery]") {
  Config cfg;
  cfg.max_queued_broadcasts = 256;
  sim::Network net({.loss = 0.0, .seed = 26}, cfg);
  build(net, 3);
  // 5,000 writes in one instant: no tick in between to drain the queue.
  for (int k = 0; k < 5000; ++k) {
    std::string item = "o" + std::to_string(k);
    net.delegate(0).state.insert(item);
    net.node(0).broadcast(Bytes(item.begin(), item.end()));
  }
  CHECK(net.node(0).queued_broadcasts() <= 256);
  CHECK(net.node(0).stats().broadcasts_dropped >= 5000 - 256);
  auto all_hold = [&] {
    for (size_t i = 0; i < 3; ++i)
      if (net.delegate(i).state.size() < 5000) return false;
    return true;
  };
  CHECK(net.run_until(all_hold, 3s));
  CHECK(net.node(0).stats().full_syncs >= 1);
}

TEST_CASE("delivery: a node alone queues none of its broadcasts; who joins later gets them by push/pull",
          "[gossip][delivery]") {
  sim::Network net({.loss = 0.0, .seed = 31}, Config{});
  net.add_node();
  net.add_node();
  net.run_for(1s);
  // Node 0 knows no one and has not asked to join: nobody to tell. A
  // cluster of one queued each of these until the queue was full, for good.
  for (int k = 0; k < 1000; ++k) net.publish(0, "a" + std::to_string(k));
  CHECK(net.node(0).queued_broadcasts() <= 1);  // its own membership news at most
  // The control: node 1 has asked to join (its push/pull is on its way), so
  // what it writes now is queued, since the join carried its state as it
  // was before.
  net.join(1, 0);
  for (int k = 0; k < 1000; ++k) net.publish(1, "b" + std::to_string(k));
  CHECK(net.node(1).queued_broadcasts() >= 1000);
  // Each gets all of the other's writes: node 0's by the join's push/pull.
  auto all_hold = [&] { return net.delegate(0).state.size() == 2000 && net.delegate(1).state.size() == 2000; };
  CHECK(net.run_until(all_hold, 5s));
  // Once it knows a member, node 0's writes are queued and delivered again.
  net.publish(0, "c");
  CHECK(net.node(0).queued_broadcasts() >= 1);
  CHECK(net.run_until([&] { return net.delegate(1).state.count("c") == 1; }, 2s));
}
