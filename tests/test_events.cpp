// The event stream's parts without sockets: the line formats (text as
// docker events, JSON), filters and their query form, the bound on a slow
// subscriber's queue, and the events a real Store's changes make (local
// writes and entries merged from another node's store).
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "common/event.hpp"
#include "daemon/events.hpp"
#include "daemon/store.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::TempDir;
namespace json = boost::json;

namespace {

Event sample() {
  // 2026-12-03T07:30:00.000000042Z
  return Event{1796283000LL * 1'000'000'000 + 42, "network", "create", "3f2a9c",
               {{"subnet", "10.0.0.0/24"}, {"name", "front"}}};
}

std::vector<Event> parse_lines(const std::string& text) {
  std::vector<Event> out;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.push_back(event_from_json(json::parse(text.substr(start, nl - start))));
  }
  REQUIRE(start == text.size());  // every line ends in a newline
  return out;
}

daemon::NetworkRecord network(const std::string& id, const std::string& name, const std::string& subnet) {
  daemon::NetworkRecord n;
  n.id = id;
  n.name = name;
  n.subnet = Ipv4Prefix::parse(subnet);
  n.gateway = Ipv4Address(n.subnet.address().value() + 1);
  n.vni = 4097;
  n.block_length = 26;
  return n;
}

daemon::EndpointRecord endpoint(const std::string& network_id, const std::string& node, const std::string& container,
                                const std::string& ip) {
  daemon::EndpointRecord e;
  e.id = "ep-" + container;
  e.network_id = network_id;
  e.node = node;
  e.container_id = container;
  e.ifname = "eth0";
  e.ip = Ipv4Address::parse(ip);
  e.service = "web";
  return e;
}

// Another node's network "back" (n2) with its endpoint c2, merged into `store`.
void other_node_endpoint_merged(daemon::Store& other, daemon::Store& store) {
  other.put(network("n2", "back", "10.2.0.0/24"));
  other.put(endpoint("n2", other.node_id(), "c2", "10.2.0.2"));
  store.merge(other.replicated_entries());
}

}  // namespace

TEST_CASE("events: a line as docker events prints it, and as JSON", "[events]") {
  const Event e = sample();
  CHECK(format_text(e) == "2026-12-03T07:30:00.000000042Z network create 3f2a9c (name=front, subnet=10.0.0.0/24)");
  Event bare = e;
  bare.attributes.clear();
  CHECK(format_text(bare) == "2026-12-03T07:30:00.000000042Z network create 3f2a9c");
  const json::value v = to_json(e);
  CHECK(json::serialize(v) ==
        R"({"time":1796283000,"time_nano":1796283000000000042,"type":"network","action":"create","id":"3f2a9c",)"
        R"("attributes":{"name":"front","subnet":"10.0.0.0/24"}})");
  CHECK(event_from_json(v) == e);
  CHECK(format_time(0) == "1970-01-01T00:00:00.000000000Z");
}

TEST_CASE("events: a malformed event line is an error naming the field", "[events]") {
  CHECK_THROWS_WITH(event_from_json(json::parse(R"({"type":"node","action":"die"})")),
                    Catch::Contains("time_nano"));
  CHECK_THROWS_WITH(event_from_json(json::parse(R"({"time_nano":1,"type":"node","action":"die","attributes":{"a":1}})")),
                    Catch::Contains("attribute \"a\""));
  CHECK_THROWS_AS(event_from_json(json::parse("[1]")), Error);
}

TEST_CASE("events: filters as docker events: one key's values are alternatives, all keys must match", "[events]") {
  EventFilter f;
  CHECK(f.matches(sample()));  // no filter: everything
  f.add("type=network");
  f.add("type=node");
  CHECK(f.matches(sample()));
  f.add("event=remove");  // Docker's name for the action
  CHECK_FALSE(f.matches(sample()));
  EventFilter by_attribute;
  by_attribute.add("name=front");
  by_attribute.add("id=3f2a");  // a prefix of the id
  CHECK(by_attribute.matches(sample()));
  EventFilter other;
  other.add("network=front");  // an attribute the event does not have
  CHECK_FALSE(other.matches(sample()));

  CHECK_THROWS_WITH(f.add("type"), Catch::Contains("KEY=VALUE"));
  CHECK_THROWS_WITH(f.add("colour=red"), Catch::Contains("unknown key"));
  CHECK_THROWS_WITH(f.add("type=volume"), Catch::Contains("unknown type"));

  // The query the client sends is the filter the daemon reads back.
  EventFilter sent;
  sent.add("type=endpoint");
  sent.add("network=my net&x");
  const EventFilter read = EventFilter::from_query(sent.query());
  Event e{1, "endpoint", "create", "e1", {{"network", "my net&x"}}};
  CHECK(read.matches(e));
  e.attributes["network"] = "my net";
  CHECK_FALSE(read.matches(e));
  CHECK(EventFilter::from_query("").empty());
  CHECK_THROWS_WITH(EventFilter::from_query("since=5"), Catch::Contains("unknown query parameter"));
  CHECK_THROWS_WITH(EventFilter::from_query("filter=type%3"), Catch::Contains("percent-encoding"));
  CHECK_THROWS_WITH(EventFilter::from_query("filter=type%3Dvolume"), Catch::Contains("unknown type"));
}

TEST_CASE("events: a subscriber that does not read is cut off at its bound, the others get everything",
          "[events]") {
  constexpr size_t kLimit = 8;
  daemon::EventBus bus(kLimit);
  size_t woken = 0;
  auto slow = bus.subscribe({}, [&] { ++woken; });
  auto reader = bus.subscribe({}, nullptr);
  EventFilter only_nodes;
  only_nodes.add("type=node");
  auto nodes = bus.subscribe(only_nodes, nullptr);
  std::vector<Event> read;
  for (int i = 0; i < 1000; ++i) {
    Event e = sample();
    e.id = std::to_string(i);
    bus.publish(e);
    for (auto& got : parse_lines(reader->take())) read.push_back(got);
  }
  REQUIRE(read.size() == 1000);  // the control: the reader missed nothing
  CHECK(read[999].id == "999");
  CHECK(nodes->take().empty());   // filtered out, so never near its bound
  CHECK_FALSE(nodes->lost());

  // The slow one holds its bound and the line saying it lost the rest;
  // publishing went on regardless.
  CHECK(slow->lost());
  const std::vector<Event> queued = parse_lines(slow->take());
  REQUIRE(queued.size() == kLimit + 1);
  CHECK(queued[0].id == "0");
  CHECK(queued[kLimit - 1].id == std::to_string(kLimit - 1));
  CHECK(queued.back().type == "events");
  CHECK(queued.back().action == "lost");
  CHECK_THAT(queued.back().attributes.at("reason"), Catch::Contains("8 events behind"));
  CHECK(woken == kLimit + 1);  // not woken for what it no longer gets
  bus.publish(sample());
  CHECK(slow->take().empty());

  // Reading in time keeps a subscriber within its bound indefinitely.
  auto steady = bus.subscribe({}, nullptr);
  for (int round = 0; round < 10; ++round) {
    for (size_t i = 0; i < kLimit; ++i) bus.publish(sample());
    CHECK(parse_lines(steady->take()).size() == kLimit);
  }
  CHECK_FALSE(steady->lost());

  // A subscriber gone (its connection closed) is dropped from the bus.
  CHECK(bus.subscribers() == 4);
  slow.reset();
  CHECK(bus.subscribers() == 3);
}

TEST_CASE("events: changes of the store, local and merged from another node, become typed events", "[events]") {
  TempDir dir, other_dir;
  daemon::Store store(dir.path());
  store.put(network("n0", "old", "10.9.0.0/24"));
  daemon::EventBus bus;
  daemon::StateEvents events(store, bus);
  events.set_node_names([&](const std::string& id) -> std::optional<std::string> {
    if (id == store.node_id()) return "host1";
    return std::nullopt;
  });
  auto sub = bus.subscribe({}, nullptr);
  // What was there before is where the stream starts.
  CHECK(sub->take().empty());

  store.put(network("n1", "front", "10.1.0.0/24"));
  const std::string key = daemon::endpoint_key("n1", store.node_id(), "c1", "eth0");
  store.put(endpoint("n1", store.node_id(), "c1", "10.1.0.2"));
  daemon::EndpointRecord sick = endpoint("n1", store.node_id(), "c1", "10.1.0.2");
  sick.healthy = false;
  store.put(sick);
  store.put(sick);  // no change seen: no event
  store.erase_endpoint(key);
  store.erase_network("n1");
  store.erase_network("n1");  // already gone: no event

  auto got = parse_lines(sub->take());
  REQUIRE(got.size() == 5);
  CHECK(got[0].type == "network");
  CHECK(got[0].action == "create");
  CHECK(got[0].id == "n1");
  CHECK(got[0].attributes == std::map<std::string, std::string>{{"name", "front"}, {"subnet", "10.1.0.0/24"},
                                                               {"vni", "4097"}});
  CHECK(got[1].type == "endpoint");
  CHECK(got[1].action == "create");
  CHECK(got[1].id == "ep-c1");
  CHECK(got[1].attributes == std::map<std::string, std::string>{{"container", "c1"}, {"ip", "10.1.0.2"},
                                                               {"network", "front"}, {"node", "host1"},
                                                               {"service", "web"}});
  CHECK(got[2].action == "health_status");
  CHECK(got[2].attributes.at("health") == "unhealthy");
  CHECK(got[3].type == "endpoint");
  CHECK(got[3].action == "remove");
  CHECK(got[3].attributes.at("container") == "c1");
  CHECK(got[4].type == "network");
  CHECK(got[4].action == "remove");
  CHECK(got[4].attributes.at("name") == "front");  // named though only its tombstone is left
  for (size_t i = 1; i < got.size(); ++i) CHECK(got[i].time_nano >= got[i - 1].time_nano);

  // Another node's writes arrive by merge: the same events, the other
  // node named by its id when no name is known.
  daemon::Store other(other_dir.path());
  other_node_endpoint_merged(other, store);
  got = parse_lines(sub->take());
  REQUIRE(got.size() == 2);
  CHECK(got[0].type == "network");
  CHECK(got[0].attributes.at("name") == "back");
  CHECK(got[1].type == "endpoint");
  CHECK(got[1].attributes.at("node") == other.node_id().substr(0, 12));
  CHECK(got[1].attributes.at("network") == "back");
}

TEST_CASE("events: an update and a removal name the entry as it was last seen, whatever its attributes hold",
          "[events]") {
  // A removal is named from the store's tombstone, which keeps the last
  // value: attributes of any length and any byte come back as they were.
  TempDir dir;
  daemon::Store store(dir.path());
  store.put(network("n1", "front", "10.1.0.0/24"));
  daemon::EventBus bus;
  daemon::StateEvents events(store, bus);
  auto sub = bus.subscribe({}, nullptr);
  const std::string key = daemon::endpoint_key("n1", store.node_id(), "c1", "eth0");
  daemon::EndpointRecord e = endpoint("n1", store.node_id(), "c1", "10.1.0.2");
  e.id = std::string(300, 'i');  // a length of more than one byte
  e.name = std::string("a\0b\xc3\xa9", 5) + std::string(200, 'n');
  store.put(e);
  daemon::EndpointRecord renamed = e;
  renamed.name = "short";
  renamed.service = "";
  store.put(renamed);
  store.put(renamed);  // nothing changed: no event
  store.erase_endpoint(key);
  const auto got = parse_lines(sub->take());
  REQUIRE(got.size() == 3);
  CHECK(got[0].action == "create");
  CHECK(got[0].attributes.at("name") == e.name);
  CHECK(got[1].action == "update");
  CHECK(got[1].id == e.id);
  CHECK(got[1].attributes.at("name") == "short");
  CHECK(got[1].attributes.count("service") == 0);
  CHECK(got[2].action == "remove");
  CHECK(got[2].id == e.id);
  CHECK(got[2].attributes == std::map<std::string, std::string>{{"container", "c1"}, {"ip", "10.1.0.2"},
                                                               {"name", "short"}, {"network", "front"},
                                                               {"node", store.node_id().substr(0, 12)}});
}

TEST_CASE("events: membership and key rotation", "[events]") {
  TempDir dir;
  daemon::Store store(dir.path());
  daemon::EventBus bus;
  daemon::StateEvents events(store, bus);
  auto sub = bus.subscribe({}, nullptr);
  events.member_changed("id2", "host2", "10.0.0.2", "alive", "");
  events.member_changed("id2", "host2", "10.0.0.2", "suspect", "alive");
  events.member_changed("id2", "host2", "10.0.0.2", "dead", "suspect");
  events.member_changed("id2", "host2", "10.0.0.2", "alive", "dead");
  events.member_changed("id2", "host2", "10.0.0.9", "alive", "alive");
  events.member_changed("id2", "host2", "10.0.0.9", "left", "alive");
  events.keyring_changed(2, 2, "distribute");
  const auto got = parse_lines(sub->take());
  std::vector<std::string> actions;
  for (const auto& e : got) actions.push_back(e.type + " " + e.action);
  CHECK(actions == std::vector<std::string>{"node join", "node suspect", "node die", "node alive", "node update",
                                            "node leave", "cluster key_rotate"});
  CHECK(got[2].attributes == std::map<std::string, std::string>{{"name", "host2"}, {"address", "10.0.0.2"},
                                                               {"status", "dead"}});
  CHECK(got[6].attributes == std::map<std::string, std::string>{{"version", "2"}, {"keys", "2"},
                                                               {"step", "distribute"}});
}

TEST_CASE("events: an entry removed on another node is named by the last value merged here", "[events]") {
  // Only the digest of what was seen is held here: the removal's attributes
  // come from the tombstone, which a merged deletion (no value of its own)
  // leaves with the value this node had.
  TempDir dir, other_dir;
  daemon::Store store(dir.path());
  daemon::Store other(other_dir.path());
  other_node_endpoint_merged(other, store);
  daemon::EventBus bus;
  daemon::StateEvents events(store, bus);
  auto sub = bus.subscribe({}, nullptr);
  daemon::EndpointRecord moved = endpoint("n2", other.node_id(), "c2", "10.2.0.9");
  other.put(moved);
  store.merge(other.replicated_entries());
  other.erase_endpoint(daemon::endpoint_key("n2", other.node_id(), "c2", "eth0"));
  other.erase_network("n2");
  store.merge(other.replicated_entries());
  const auto got = parse_lines(sub->take());
  REQUIRE(got.size() == 3);
  CHECK(got[0].action == "update");
  CHECK(got[0].attributes.at("ip") == "10.2.0.9");
  // Merged table by table, networks first: the network's removal comes
  // first, and the endpoint is still named after it.
  CHECK(got[1].type == "network");
  CHECK(got[1].action == "remove");
  CHECK(got[1].attributes.at("name") == "back");
  CHECK(got[2].type == "endpoint");
  CHECK(got[2].action == "remove");
  CHECK(got[2].id == "ep-c2");
  CHECK(got[2].attributes == std::map<std::string, std::string>{{"container", "c2"}, {"ip", "10.2.0.9"},
                                                               {"network", "back"},
                                                               {"node", other.node_id().substr(0, 12)},
                                                               {"service", "web"}});
}

TEST_CASE("events: a removal names its node and network as they were seen, though forgotten or reaped since",
          "[events]") {
  // The events keep those names, not the rest of the attributes: the node
  // may have been forgotten by the cluster (reclaimed after being dead),
  // the network's tombstone reaped, by the time the endpoint goes.
  TempDir dir, other_dir;
  daemon::Store store(dir.path());
  daemon::Store other(other_dir.path());
  other_node_endpoint_merged(other, store);
  daemon::EventBus bus;
  daemon::StateEvents events(store, bus);
  bool forgotten = false;
  events.set_node_names([&](const std::string& id) -> std::optional<std::string> {
    if (id == other.node_id() && !forgotten) return "worker2";
    return std::nullopt;
  });
  auto sub = bus.subscribe({}, nullptr);
  other.put(endpoint("n2", other.node_id(), "c2", "10.2.0.3"));
  store.merge(other.replicated_entries());
  auto got = parse_lines(sub->take());
  REQUIRE(got.size() == 1);
  CHECK(got[0].attributes.at("node") == "worker2");  // the control: the name is known now
  forgotten = true;
  other.erase_endpoint(daemon::endpoint_key("n2", other.node_id(), "c2", "eth0"));
  store.merge(other.replicated_entries());
  got = parse_lines(sub->take());
  REQUIRE(got.size() == 1);
  CHECK(got[0].action == "remove");
  CHECK(got[0].attributes.at("node") == "worker2");
  CHECK(got[0].attributes.at("network") == "back");
  CHECK(got[0].attributes.at("ip") == "10.2.0.3");
}

TEST_CASE("events: a removal whose tombstone is reaped before the event feed hears of it is still told",
          "[events]") {
  // A deletion merged from a node whose clock or partition made it older
  // than the tombstones' lifetime: a compaction run by an earlier part of
  // the feed drops the tombstone before the events are told of the change.
  TempDir dir, other_dir;
  daemon::Store store(dir.path(), /*tombstone_seconds=*/60);
  daemon::Store other(other_dir.path());
  other_node_endpoint_merged(other, store);
  daemon::EventBus bus;
  daemon::StateEvents events(store, bus);
  auto sub = bus.subscribe({}, nullptr);
  const std::string key = daemon::endpoint_key("n2", other.node_id(), "c2", "eth0");
  bool compacted = false;
  auto earlier = store.feed().subscribe(daemon::Stage::overlay, [&](const daemon::Change& c) {
    if (c.is(daemon::TableId::endpoints) && c.key == key && !compacted) {
      compacted = true;
      store.compact();
    }
  });
  other.erase_endpoint(key);
  std::vector<daemon::Store::Line> lines;
  for (auto line : other.replicated_entries()) {
    auto& o = line.as_object();
    if (o.at("key").as_string() == key) o["deleted_at"] = o.at("deleted_at").to_number<int64_t>() - 3600;
    lines.push_back(std::move(line));
  }
  store.merge(lines);
  REQUIRE(compacted);
  CHECK(!store.replicated_entry(daemon::TableId::endpoints, key));  // reaped before the events heard
  const auto got = parse_lines(sub->take());
  REQUIRE(got.size() == 1);
  CHECK(got[0].type == "endpoint");
  CHECK(got[0].action == "remove");
  CHECK(got[0].id == key);
  CHECK(got[0].attributes.at("network") == "back");
}
