// The cluster IPAM on its own, against a fake cluster: what a request sees
// when it needs an address block from another node (it waits for one, runs
// again as soon as it arrives, fails after the wait), and the block protocol
// between two nodes' IPAMs (a donated block is never used by the donor).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <set>

#include "common/error.hpp"
#include "daemon/cluster_ipam.hpp"
#include "daemon/store.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using namespace std::chrono_literals;
using swarmnet::testing::TempDir;
namespace asio = boost::asio;

namespace {

struct FakeCluster : daemon::Membership, daemon::BlockExchange {
  bool is_alive(const std::string&) const override { return others_alive; }
  std::optional<Ipv4Address> address_of(const std::string&) const override { return std::nullopt; }
  void request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range) override {
    ++requests;
    asked_range = range;
    if (on_request) on_request(network_id);
  }
  bool may_allocate() const override { return lease; }

  bool others_alive = true;
  bool lease = true;
  int requests = 0;
  std::optional<Ipv4Prefix> asked_range;  // of the last request
  std::function<void(const std::string&)> on_request;
};

// Two nodes: `other` made the network (and so owns all of its blocks);
// `me` owns none. Gossip is a merge of other's tables into mine.
struct TwoNodes {
  explicit TwoNodes(daemon::BlockWait timing = {}, std::optional<Ipv4Prefix> ip_range = std::nullopt)
      : ipam(me, timing) {
    ipam.set_cluster(&cluster, &cluster);
    // What the controller does with the tables' changes from other nodes.
    subscription = me.feed().subscribe(daemon::Stage::overlay, [this](const daemon::Change& c) {
      if (!c.local && c.is(daemon::TableId::blocks)) ipam.block_changed(c.key);
    });
    network.id = "0123456789abcdef";
    network.name = "overlay";
    network.subnet = Ipv4Prefix::parse("10.30.0.0/24");
    network.gateway = Ipv4Address::parse("10.30.0.1");
    network.mtu = 1450;
    network.vni = 4242;
    network.ip_range = ip_range;
    network.block_length = daemon::ClusterIpam::block_length(network.subnet, network.gateway, ip_range);
    network.created_by = other.node_id();
    other.put(network);
    gossip();
  }
  void gossip() { me.merge(other.replicated_entries()); }

  TempDir other_dir, my_dir;
  daemon::Store other{other_dir.path()};
  daemon::Store me{my_dir.path()};
  daemon::ClusterIpam other_ipam{other};  // alone: its blocks are its own
  FakeCluster cluster;
  daemon::ClusterIpam ipam;
  daemon::NetworkRecord network;
  daemon::ChangeFeed::Subscription subscription;
};

struct Outcome {
  int attempts = 0;
  std::optional<Ipv4Address> address;
  std::exception_ptr failure;
  std::chrono::steady_clock::duration took{};
};

// One request through ClusterIpam::allocating, run to its end.
Outcome allocate_waiting(TwoNodes& t, asio::io_context& io) {
  Outcome out;
  const auto start = std::chrono::steady_clock::now();
  asio::co_spawn(io, t.ipam.allocating([&] {
    ++out.attempts;
    out.address = t.ipam.allocate(t.network, std::nullopt);
  }),
                 [&](std::exception_ptr e) {
                   out.failure = e;
                   out.took = std::chrono::steady_clock::now() - start;
                 });
  io.run();
  return out;
}

}  // namespace

TEST_CASE("cluster IPAM: a request out of blocks runs again as soon as a block arrives", "[ipam][blocks]") {
  // Asking again only every 2 s: an answer within 1 s was woken by the block.
  TwoNodes t({.wait = 5000ms, .ask_again = 2000ms});
  asio::io_context io;
  asio::steady_timer answer(io);
  Ipv4Prefix donated;
  t.cluster.on_request = [&](const std::string& network_id) {
    answer.expires_after(50ms);
    answer.async_wait([&, network_id](boost::system::error_code) {
      REQUIRE(t.other_ipam.donate_block(network_id, t.me.node_id()));
      for (const auto& [key, b] : t.other.blocks())
        if (b.value.owner == t.me.node_id()) donated = b.value.block;
      t.gossip();
    });
  };
  const Outcome out = allocate_waiting(t, io);
  REQUIRE_FALSE(out.failure);
  CHECK(out.attempts == 2);
  CHECK(t.cluster.requests == 1);
  REQUIRE(out.address);
  CHECK(donated.contains(*out.address));
  CHECK(out.took < 1s);
}

TEST_CASE("cluster IPAM: without a block the request fails after the wait, having asked again", "[ipam][blocks]") {
  TwoNodes t({.wait = 400ms, .ask_again = 100ms});
  asio::io_context io;
  const Outcome out = allocate_waiting(t, io);
  REQUIRE(out.failure);
  try {
    std::rethrow_exception(out.failure);
  } catch (const daemon::BlockNeeded& e) {
    CHECK(e.code() == Errc::exhausted);
    CHECK_THAT(e.what(), Catch::Contains("asked the other nodes for a block"));
  }
  CHECK(out.took >= 400ms);
  CHECK(out.took < 2s);
  // Asked at least once more than at first: a request may have been lost.
  CHECK(t.cluster.requests >= 3);
  CHECK(out.attempts == t.cluster.requests + 1);
}

TEST_CASE("cluster IPAM: other failures are not retried", "[ipam][blocks]") {
  TwoNodes t({.wait = 5000ms, .ask_again = 100ms});
  asio::io_context io;
  int attempts = 0;
  std::exception_ptr failure;
  asio::co_spawn(io, t.ipam.allocating([&] {
    ++attempts;
    throw Error(Errc::conflict, "taken");
  }),
                 [&](std::exception_ptr e) { failure = e; });
  io.run();
  REQUIRE(failure);
  CHECK(attempts == 1);
  CHECK(t.cluster.requests == 0);
  // The control: a request that succeeds at once is not retried either.
  asio::io_context io2;
  t.other_ipam.donate_block(t.network.id, t.me.node_id());
  t.gossip();
  const Outcome out = allocate_waiting(t, io2);
  CHECK_FALSE(out.failure);
  CHECK(out.attempts == 1);
  CHECK(t.cluster.requests == 0);
}

TEST_CASE("cluster IPAM: a donated block is the receiver's alone", "[ipam][blocks]") {
  TwoNodes t;
  // The creator hands out a few addresses from the bottom of the subnet...
  std::set<Ipv4Address> creator;
  for (int i = 0; i < 3; ++i) creator.insert(t.other_ipam.allocate(t.network, std::nullopt));
  // ...and gives a free block away, from the top.
  REQUIRE(t.other_ipam.donate_block(t.network.id, t.me.node_id()));
  t.gossip();
  std::set<Ipv4Address> mine;
  for (;;) {
    try {
      mine.insert(t.ipam.allocate(t.network, std::nullopt));
    } catch (const daemon::BlockNeeded&) {
      break;  // the block is full, the rest is the creator's
    }
  }
  const Ipv4Prefix block = Ipv4Prefix(*mine.begin(), t.network.block_length);
  CHECK(mine.size() == 7);  // the top /29 of the /24: .248 to .254 (.255 is the broadcast)
  CHECK(block.network().value() > Ipv4Address::parse("10.30.0.200").value());
  // The donor goes on around it: never an address of the given block.
  while (true) {
    try {
      const Ipv4Address ip = t.other_ipam.allocate(t.network, std::nullopt);
      INFO(ip.str());
      CHECK_FALSE(block.contains(ip));
      creator.insert(ip);
    } catch (const Error& e) {
      // The rest is in a block of a node it does not see (it has no cluster).
      CHECK(e.code() == Errc::unavailable);
      break;
    }
  }
  CHECK(creator.size() == 253 - 7);  // 254 hosts less the gateway, less the donated block
  // A static address in the other's block is refused with its owner named.
  try {
    t.ipam.allocate(t.network, Ipv4Address::parse("10.30.0.10"));
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::conflict);
    CHECK_THAT(e.what(), Catch::Contains(t.other.node_id()));
  }
  // Cut off past the lease: nothing at all.
  t.cluster.lease = false;
  try {
    t.ipam.allocate(t.network, std::nullopt);
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::unavailable);
  }
}

TEST_CASE("cluster IPAM: a dead owner's blocks are reclaimed, its addresses stay held", "[ipam][blocks]") {
  TwoNodes t;
  const Ipv4Address held = t.other_ipam.allocate(t.network, std::nullopt);
  daemon::EndpointRecord e;
  e.id = "e1";
  e.network_id = t.network.id;
  e.node = t.other.node_id();
  e.container_id = "c1";
  e.ifname = "eth0";
  e.ip = held;
  t.other.put(e);
  t.gossip();
  // Alive: nothing is taken, and its space is not handed out.
  CHECK(t.ipam.reclaim_from(t.other.node_id()) == 0);
  CHECK_THROWS_AS(t.ipam.allocate(t.network, std::nullopt), daemon::BlockNeeded);
  // Dead past the reclaim time: every block is ours, but not its address.
  t.cluster.others_alive = false;
  CHECK(t.ipam.reclaim_from(t.other.node_id()) == 32);
  std::set<Ipv4Address> mine;
  for (;;) {
    try {
      mine.insert(t.ipam.allocate(t.network, std::nullopt));
    } catch (const Error& e) {
      CHECK(e.code() == Errc::exhausted);
      break;
    }
  }
  CHECK(mine.size() == 252);
  CHECK_FALSE(mine.count(held));
  // Gone for good (node rm): its address is free again.
  CHECK(t.ipam.release_endpoints_of(t.other.node_id()) == 1);
  CHECK(t.ipam.allocate(t.network, std::nullopt) == held);
}

namespace {

// Every address `ipam` hands out on `network` until it has none left of its own.
std::vector<Ipv4Address> fill(daemon::ClusterIpam& ipam, const daemon::NetworkRecord& network,
                              std::optional<Ipv4Prefix> range = std::nullopt) {
  std::vector<Ipv4Address> out;
  for (;;) {
    try {
      out.push_back(ipam.allocate(network, std::nullopt, range));
    } catch (const Error&) {  // needs a block, or the rest is a node's it cannot see
      return out;
    }
  }
}

}  // namespace

TEST_CASE("cluster IPAM: an ip range inside the other node's blocks is served by a block of the range",
          "[ipam][blocks][range]") {
  const Ipv4Prefix range = Ipv4Prefix::parse("10.30.0.64/27");
  TwoNodes t({.wait = 5000ms, .ask_again = 2000ms}, range);
  // The range holds four blocks, so that several nodes can each own a part.
  CHECK(t.network.block_length == 29);
  // The creator hands out the range's first addresses: it claims the
  // range's first block, and owns the rest of the subnet implicitly.
  const Ipv4Address first = t.other_ipam.allocate(t.network, std::nullopt);
  CHECK(first == Ipv4Address::parse("10.30.0.64"));
  t.gossip();

  // This node owns nothing: it asks for a block of the range.
  CHECK_THROWS_AS(t.ipam.allocate(t.network, std::nullopt), daemon::BlockNeeded);
  asio::io_context io;
  asio::steady_timer answer(io);
  t.cluster.on_request = [&](const std::string& network_id) {
    answer.expires_after(20ms);
    answer.async_wait([&, network_id](boost::system::error_code) {
      // As the gossip handler does: the range travels with the request.
      t.other_ipam.donate_block(network_id, t.me.node_id(), t.cluster.asked_range);
      t.gossip();
    });
  };
  const Outcome out = allocate_waiting(t, io);
  REQUIRE_FALSE(out.failure);
  REQUIRE(out.address);
  CHECK(range.contains(*out.address));
  REQUIRE(t.cluster.asked_range);
  CHECK(*t.cluster.asked_range == range);
  CHECK(out.took < 1s);
  // One request, one block, inside the range: nothing else was given away.
  CHECK(t.cluster.requests == 1);
  for (const auto& [key, b] : t.other.blocks()) {
    if (b.value.owner == t.me.node_id()) CHECK(range.contains(b.value.block));
  }

  // Both go on inside the range, never on each other's addresses, until it is full.
  std::set<Ipv4Address> all{first, *out.address};
  auto take = [&](const std::vector<Ipv4Address>& ips) {
    for (const Ipv4Address ip : ips) {
      INFO(ip.str());
      CHECK(range.contains(ip));
      CHECK(all.insert(ip).second);
    }
  };
  take(fill(t.ipam, t.network));
  // More blocks of the range, while the creator has free ones.
  while (t.other_ipam.donate_block(t.network.id, t.me.node_id(), range)) {
    t.gossip();
    take(fill(t.ipam, t.network));
  }
  take(fill(t.other_ipam, t.network));
  CHECK(all.size() == 32);  // the whole /27: no address of it is reserved
}

TEST_CASE("cluster IPAM: a block given without the range (an earlier release's donor) does not serve it",
          "[ipam][blocks][range]") {
  // The control of the test above: the range in the request is what makes
  // the donor pick a block inside it.
  const Ipv4Prefix range = Ipv4Prefix::parse("10.30.0.64/27");
  TwoNodes t({}, range);
  t.other_ipam.allocate(t.network, std::nullopt);
  REQUIRE(t.other_ipam.donate_block(t.network.id, t.me.node_id()));  // no range: the subnet's top block
  t.gossip();
  try {
    t.ipam.allocate(t.network, std::nullopt);
    FAIL("no throw");
  } catch (const daemon::BlockNeeded& e) {
    REQUIRE(e.range());
    CHECK(*e.range() == range);
  }
  // Outside the range, a static address of the given block is this node's.
  CHECK(t.ipam.allocate(t.network, Ipv4Address::parse("10.30.0.250")) == Ipv4Address::parse("10.30.0.250"));
}

TEST_CASE("cluster IPAM: a request may name a range of a network made without one", "[ipam][blocks][range]") {
  TwoNodes t;
  const Ipv4Prefix range = Ipv4Prefix::parse("10.30.0.128/26");
  CHECK(t.network.block_length == 29);
  try {
    t.ipam.allocate(t.network, std::nullopt, range);
    FAIL("no throw");
  } catch (const daemon::BlockNeeded& e) {
    REQUIRE(e.range());
    CHECK(*e.range() == range);
  }
  REQUIRE(t.other_ipam.donate_block(t.network.id, t.me.node_id(), range));
  t.gossip();
  const auto mine = fill(t.ipam, t.network, range);
  REQUIRE(mine.size() == 8);
  for (const Ipv4Address ip : mine) CHECK(range.contains(ip));
  // A range smaller than a block: addresses of it only.
  const Ipv4Prefix small = Ipv4Prefix::parse("10.30.0.4/30");
  const std::vector<Ipv4Address> tiny = fill(t.other_ipam, t.network, small);
  CHECK(tiny == std::vector<Ipv4Address>{Ipv4Address::parse("10.30.0.4"), Ipv4Address::parse("10.30.0.5"),
                                         Ipv4Address::parse("10.30.0.6"), Ipv4Address::parse("10.30.0.7")});
  // Outside the subnet: refused, nothing taken.
  try {
    t.ipam.allocate(t.network, std::nullopt, Ipv4Prefix::parse("10.31.0.0/28"));
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("not inside"));
  }
}

TEST_CASE("cluster IPAM: the block request's range is optional on the wire", "[ipam][blocks][range]") {
  // An earlier release's request: any block.
  const auto old = daemon::block_request_from_json(
      boost::json::parse(R"({"type":"block_request","network":"n1","from":"node2"})").as_object());
  CHECK(old.network_id == "n1");
  CHECK(old.from == "node2");
  CHECK_FALSE(old.range);
  // A request with a range keeps what an earlier release reads.
  const boost::json::object sent = daemon::to_json(daemon::BlockRequest{"n1", "node2", Ipv4Prefix::parse("10.1.0.64/27")});
  CHECK(sent.at("type") == "block_request");
  CHECK(sent.at("network") == "n1");
  CHECK(sent.at("from") == "node2");
  const auto back = daemon::block_request_from_json(sent);
  REQUIRE(back.range);
  CHECK(back.range->str() == "10.1.0.64/27");
  // Damage is an error naming the field (the message is dropped).
  try {
    daemon::block_request_from_json(
        boost::json::parse(R"({"type":"block_request","network":"n1","from":"x","range":"10.1.0.65/27"})").as_object());
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("range"));
  }
}
