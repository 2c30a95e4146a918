// The membership core on the simulated network (virtual time): joining,
// dissemination, failure detection, refutation, leave, partitions and heals,
// plus memberlist's formulas and the broadcast queue on their own.
#include <catch2/catch.hpp>

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
  q.queue("a", Bytes(10, 1));
  q.queue("b", Bytes(10, 2));
  q.queue("a", Bytes(12, 3));  // supersedes the first "a"
  CHECK(q.size() == 2);
  auto first = q.take(2, 1000, 2, 255);
  REQUIRE(first.size() == 2);
  CHECK(first[0] == Bytes(12, 3));  // larger first among equals
  q.queue("c", Bytes(10, 4));
  auto second = q.take(2, 12, 2, 255);  // room for one: the fresh one wins
  REQUIRE(second.size() == 1);
  CHECK(second[0] == Bytes(10, 4));
  CHECK(q.transmits("c") == 1);
  q.take(2, 1000, 2, 255);  // a and b reach their limit of 2
  CHECK(q.transmits("a") == -1);
  CHECK(q.size() == 0);
  q.queue({}, Bytes(5, 9));
  q.queue({}, Bytes(5, 9));  // user messages never supersede each other
  CHECK(q.size() == 2);
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
