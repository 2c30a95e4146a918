// The name table: what a container resolves, within its networks only.
#include <catch2/catch.hpp>

#include <cctype>
#include <map>
#include <random>
#include <set>

#include "dns/name_table.hpp"
#include "support/dns_packets.hpp"

using namespace swarmnet;
using namespace swarmnet::dns;
using swarmnet::test::Answer;
using swarmnet::test::make_query;
using swarmnet::test::parse_answer;

namespace {

Ipv4Address ip(const char* s) { return Ipv4Address::parse(s); }

struct Fixture {
  NameTable table{3};
  Fixture() {
    table.upsert_network({"net-front", "front", ip("10.1.0.1")});
    table.upsert_network({"net-back", "back", ip("10.2.0.1")});
  }
  void add(const std::string& key, const std::string& net, const std::string& container, const char* addr,
           const std::string& name = "", bool local = true, const std::string& service = "",
           std::vector<std::string> aliases = {}, bool healthy = true) {
    table.upsert_endpoint({key, net, container, name, aliases, ip(addr), local, service, healthy});
  }
  // Asks as the container at `source` (to the front gateway).
  std::pair<Outcome, Answer> ask(const char* source, const std::string& name, uint16_t qtype = type::A,
                                 size_t limit = 512) {
    auto packet = make_query(name, qtype);
    Query q;
    REQUIRE(parse_query(packet, q).status == ParseStatus::ok);
    std::vector<uint8_t> buf(65535);
    ResponseWriter w(buf, q, limit);
    Outcome o = table.respond(q, ip(source), ip("10.1.0.1"), w);
    size_t n = w.finish();
    return {o, parse_answer({buf.begin(), buf.begin() + n})};
  }
  std::set<std::string> addresses(const char* source, const std::string& name) {
    auto [o, a] = ask(source, name);
    std::set<std::string> out;
    for (auto& r : a.answers) out.insert(r.data);
    return out;
  }
};

}  // namespace

TEST_CASE_METHOD(Fixture, "names, aliases and NAME.NETWORK resolve, case-insensitively, with the TTL") {
  add("e1", "net-front", "c1", "10.1.0.5", "web", true, "", {"www"});
  add("e2", "net-front", "c2", "10.1.0.6", "client");
  auto [o, a] = ask("10.1.0.6", "WEB");
  REQUIRE(o == Outcome::answered);
  REQUIRE(a.answers.size() == 1);
  CHECK(a.answers[0].data == "10.1.0.5");
  CHECK(a.answers[0].ttl == 3);
  CHECK(a.aa());
  CHECK(addresses("10.1.0.6", "www") == std::set<std::string>{"10.1.0.5"});
  CHECK(addresses("10.1.0.6", "web.front") == std::set<std::string>{"10.1.0.5"});
  CHECK(addresses("10.1.0.6", "Web.FRONT") == std::set<std::string>{"10.1.0.5"});
}

TEST_CASE_METHOD(Fixture, "a container without a name is known by its id (12 characters of a long one)") {
  add("e1", "net-front", "default-box1", "10.1.0.5");
  add("e2", "net-front", std::string(64, 'a'), "10.1.0.6");
  CHECK(addresses("10.1.0.5", "default-box1") == std::set<std::string>{"10.1.0.5"});
  CHECK(addresses("10.1.0.5", std::string(12, 'a')) == std::set<std::string>{"10.1.0.6"});
}

TEST_CASE_METHOD(Fixture, "NXDOMAIN and NODATA are told apart, each with an SOA (RFC 2308)") {
  add("e1", "net-front", "c1", "10.1.0.5", "web");
  auto [o1, nodata] = ask("10.1.0.5", "web", type::AAAA);
  REQUIRE(o1 == Outcome::answered);
  CHECK(nodata.rcode == 0);
  CHECK(nodata.answers.empty());
  REQUIRE(nodata.authority.size() == 1);
  CHECK(nodata.authority[0].type == type::SOA);
  auto [o2, nx] = ask("10.1.0.5", "nothere.front");
  REQUIRE(o2 == Outcome::answered);
  CHECK(nx.rcode == 3);
  REQUIRE(nx.authority.size() == 1);
  CHECK(nx.authority[0].name == "front");
  // A single label we do not know is an outside name: forwarded.
  CHECK(ask("10.1.0.5", "example").first == Outcome::outside);
  CHECK(ask("10.1.0.5", "example.org").first == Outcome::outside);
}

TEST_CASE_METHOD(Fixture, "scope: a name of another network is an outside name for this container") {
  add("e1", "net-front", "c1", "10.1.0.5", "web");
  add("e2", "net-back", "c2", "10.2.0.5", "db");
  add("e3", "net-back", "c3", "10.2.0.6", "api");
  add("e4", "net-front", "c3", "10.1.0.6", "api");  // c3 on both networks
  CHECK(ask("10.1.0.5", "db").first == Outcome::outside);
  CHECK(ask("10.1.0.5", "db.back").first == Outcome::outside);
  CHECK(addresses("10.1.0.6", "db") == std::set<std::string>{"10.2.0.5"});  // c3 sees both
  CHECK(addresses("10.2.0.6", "web") == std::set<std::string>{"10.1.0.5"});
  CHECK(addresses("10.2.0.5", "api") == std::set<std::string>{"10.2.0.6"});
  // Unknown sources are refused; the host itself sees the asked gateway's network.
  CHECK(ask("10.9.9.9", "web").first == Outcome::refused);
  CHECK(addresses("127.0.0.1", "web") == std::set<std::string>{"10.1.0.5"});
  // A remote container (not local) cannot ask this host.
  add("e5", "net-front", "c5", "10.1.0.50", "far", false);
  CHECK(ask("10.1.0.50", "web").first == Outcome::refused);
  CHECK(addresses("10.1.0.5", "far") == std::set<std::string>{"10.1.0.50"});
}

TEST_CASE_METHOD(Fixture, "scope: a container's networks follow its endpoints as they move and go") {
  add("e1", "net-front", "c1", "10.1.0.5", "web");
  add("e2", "net-back", "c2", "10.2.0.5", "db");
  add("e3", "net-back", "c3", "10.2.0.6", "api");
  add("e4", "net-front", "c3", "10.1.0.6", "api");
  add("e5", "net-front", "c5", "10.1.0.6", "twin");  // another container at the same address (a stale one)
  CHECK(addresses("10.1.0.6", "db") == std::set<std::string>{"10.2.0.5"});  // the control: c3 sees back
  // e4 moves to another address: the old one asks for c5 only, the new one for c3.
  add("e4", "net-front", "c3", "10.1.0.7", "api");
  CHECK(ask("10.1.0.6", "db").first == Outcome::outside);
  CHECK(addresses("10.1.0.6", "web") == std::set<std::string>{"10.1.0.5"});
  CHECK(addresses("10.1.0.7", "db") == std::set<std::string>{"10.2.0.5"});
  // c3 leaves back: front's address no longer sees it.
  table.remove_endpoint("e3");
  CHECK(ask("10.1.0.7", "db").first == Outcome::outside);
  CHECK(ask("10.2.0.6", "web").first == Outcome::refused);
  // Its last endpoint gone, nothing of c3 asks; c5 still does.
  table.remove_endpoint("e4");
  CHECK(ask("10.1.0.7", "web").first == Outcome::refused);
  CHECK(addresses("10.1.0.6", "web") == std::set<std::string>{"10.1.0.5"});
  table.remove_endpoint("e5");
  CHECK(ask("10.1.0.6", "web").first == Outcome::refused);
}

TEST_CASE_METHOD(Fixture, "several addresses are all answered, rotated between answers") {
  for (int i = 0; i < 3; ++i)
    add("e" + std::to_string(i), "net-front", "c" + std::to_string(i), ("10.1.0." + std::to_string(10 + i)).c_str(),
        "same");
  std::set<std::string> firsts;
  for (int i = 0; i < 6; ++i) {
    auto [o, a] = ask("10.1.0.10", "same");
    REQUIRE(a.answers.size() == 3);
    firsts.insert(a.answers[0].data);
  }
  CHECK(firsts.size() == 3);
}

TEST_CASE_METHOD(Fixture, "PTR for containers and VIPs of the scope's networks") {
  add("e1", "net-front", "c1", "10.1.0.5", "web");
  add("e2", "net-back", "c2", "10.2.0.5", "db");
  table.upsert_service({"s1", "api", false, {{"net-front", ip("10.1.0.200")}}, {}});
  auto [o, a] = ask("10.1.0.5", "5.0.1.10.in-addr.arpa", type::PTR);
  REQUIRE(o == Outcome::answered);
  REQUIRE(a.answers.size() == 1);
  CHECK(a.answers[0].data == "web.front");
  auto [o2, vip] = ask("10.1.0.5", "200.0.1.10.in-addr.arpa", type::PTR);
  REQUIRE(vip.answers.size() == 1);
  CHECK(vip.answers[0].data == "api.front");
  CHECK(ask("10.1.0.5", "5.0.2.10.in-addr.arpa", type::PTR).first == Outcome::outside);
}

TEST_CASE_METHOD(Fixture, "services: VIP in vip mode, healthy tasks in dnsrr mode and in tasks.NAME, SRV per port") {
  add("t1", "net-front", "c1", "10.1.0.11", "web-1", true, "web");
  add("t2", "net-front", "c2", "10.1.0.12", "web-2", false, "web");
  add("t3", "net-front", "c3", "10.1.0.13", "web-3", true, "web", {}, false);  // unhealthy
  table.upsert_service({"s1", "web", false, {{"net-front", ip("10.1.0.200")}}, {{80, "tcp"}}});
  CHECK(addresses("10.1.0.11", "web") == std::set<std::string>{"10.1.0.200"});
  CHECK(addresses("10.1.0.11", "tasks.web") == std::set<std::string>{"10.1.0.11", "10.1.0.12"});
  auto [o, srv] = ask("10.1.0.11", "_80._tcp.web", type::SRV);
  REQUIRE(srv.answers.size() == 1);
  CHECK(srv.answers[0].data == "0 10 80 web.front");

  // dnsrr: the name is the healthy tasks, no VIP.
  table.upsert_service({"s1", "web", true, {}, {{53, "udp"}}});
  CHECK(addresses("10.1.0.11", "web") == std::set<std::string>{"10.1.0.11", "10.1.0.12"});
  auto [o2, srv2] = ask("10.1.0.11", "_53._udp.web", type::SRV);
  std::set<std::string> targets;
  for (auto& r : srv2.answers) targets.insert(r.data);
  CHECK(targets == std::set<std::string>{"0 10 53 web-1.front", "0 10 53 web-2.front"});

  // The third task becomes healthy; the second goes away.
  add("t3", "net-front", "c3", "10.1.0.13", "web-3", true, "web", {}, true);
  table.remove_endpoint("t2");
  CHECK(addresses("10.1.0.11", "tasks.web") == std::set<std::string>{"10.1.0.11", "10.1.0.13"});
  table.remove_service("s1");
  CHECK(ask("10.1.0.11", "tasks.web").first == Outcome::outside);
  CHECK(addresses("10.1.0.11", "web-1") == std::set<std::string>{"10.1.0.11"});
}

TEST_CASE_METHOD(Fixture, "a removed endpoint stops resolving, and an update replaces its names") {
  add("e1", "net-front", "c1", "10.1.0.5", "web", true, "", {"old"});
  add("e1", "net-front", "c1", "10.1.0.5", "web", true, "", {"new"});
  CHECK(ask("10.1.0.5", "old").first == Outcome::outside);
  CHECK(addresses("10.1.0.5", "new") == std::set<std::string>{"10.1.0.5"});
  add("e2", "net-front", "c2", "10.1.0.6", "peer");
  table.remove_endpoint("e1");
  CHECK(ask("10.1.0.6", "web").first == Outcome::outside);
  CHECK(ask("10.1.0.5", "peer").first == Outcome::refused);  // its container is gone
  CHECK(table.dump() == std::vector<std::string>{"6.0.1.10.in-addr.arpa PTR peer.front", "peer.front A 10.1.0.6"});
}

TEST_CASE_METHOD(Fixture, "an answer too large for UDP is cut with TC and whole within the TCP limit") {
  for (int i = 0; i < 60; ++i)
    add("e" + std::to_string(i), "net-front", "c" + std::to_string(i),
        ("10.1.0." + std::to_string(10 + i)).c_str(), "big");
  auto [o, udp] = ask("10.1.0.10", "big", type::A, 512);
  CHECK(udp.tc());
  CHECK(udp.answers.size() < 60);
  auto [o2, tcp] = ask("10.1.0.10", "big", type::A, 65535);
  CHECK_FALSE(tcp.tc());
  CHECK(tcp.answers.size() == 60);
}

TEST_CASE_METHOD(Fixture, "random updates: the table answers what the endpoints say, names shared and reused") {
  // A small pool of names and addresses, so names are shared by several
  // endpoints, addresses by two networks, and slots get reused; after every
  // step the whole table (dump) and the answers match a plain model.
  struct Model {
    std::string net, name;
    std::vector<std::string> aliases;
    std::string ip;
  };
  std::map<std::string, Model> model;
  std::mt19937 rng(11);
  const std::vector<std::string> names = {"a", "b", "C", "dd", "a-long-name-past-sixteen"};
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  for (int step = 0; step < 1500; ++step) {
    const std::string key = "e" + std::to_string(rng() % 12);
    if (rng() % 4 == 0) {
      table.remove_endpoint(key);
      model.erase(key);
    } else {
      Model m{rng() % 2 ? "net-front" : "net-back", pick(names), {}, ""};
      for (unsigned i = rng() % 3; i > 0; --i) m.aliases.push_back(pick(names));
      m.ip = (m.net == "net-front" ? "10.1.0." : "10.2.0.") + std::to_string(5 + rng() % 4);
      add(key, m.net, "c-" + key, m.ip.c_str(), m.name, false, "", m.aliases);
      model[key] = m;
    }
    std::multiset<std::string> lines;
    std::map<std::string, std::set<std::string>> front;  // name -> addresses, on net-front
    for (const auto& [k, m] : model) {
      const std::string net = m.net == "net-front" ? "front" : "back";
      std::string lower_name = m.name;
      for (char& c : lower_name) c = static_cast<char>(std::tolower(c));
      std::set<std::string> own = {lower_name};
      for (std::string a : m.aliases) {
        for (char& c : a) c = static_cast<char>(std::tolower(c));
        own.insert(a);
      }
      for (const std::string& n : own) {
        lines.insert(n + "." + net + " A " + m.ip);
        if (net == "front") front[n].insert(m.ip);
      }
      lines.insert(reverse_name(ip(m.ip.c_str())) + " PTR " + lower_name + "." + net);
    }
    const std::vector<std::string> dumped = table.dump();
    REQUIRE(std::multiset<std::string>(dumped.begin(), dumped.end()) == lines);
    if (step % 10 == 0) {
      for (const std::string& n : names) {
        std::string lower_name = n;
        for (char& c : lower_name) c = static_cast<char>(std::tolower(c));
        auto it = front.find(lower_name);
        if (it == front.end()) {
          REQUIRE(ask("127.0.0.1", n).first == Outcome::outside);
        } else {
          REQUIRE(addresses("127.0.0.1", n) == it->second);
        }
      }
    }
  }
}

TEST_CASE_METHOD(Fixture, "a task's names follow its endpoint: renamed, moved to another service, removed") {
  table.upsert_service({"s1", "web", true, {}, {{80, "tcp"}}});
  table.upsert_service({"s2", "api", false, {{"net-front", ip("10.1.0.200")}}, {}});
  add("t1", "net-front", "c1", "10.1.0.11", "web-1", true, "web");
  add("t2", "net-front", "c2", "10.1.0.12", "web-2", true, "web");
  CHECK(addresses("10.1.0.11", "web") == std::set<std::string>{"10.1.0.11", "10.1.0.12"});
  // Renamed: the SRV target follows.
  add("t1", "net-front", "c1", "10.1.0.11", "WEB-ONE", true, "web");
  auto [o, srv] = ask("10.1.0.11", "_80._tcp.web", type::SRV);
  std::set<std::string> targets;
  for (auto& r : srv.answers) targets.insert(r.data);
  CHECK(targets == std::set<std::string>{"0 10 80 web-one.front", "0 10 80 web-2.front"});
  CHECK(ask("10.1.0.11", "web-1").first == Outcome::outside);
  // Moved to api: no longer one of web's tasks, now one of api's.
  add("t1", "net-front", "c1", "10.1.0.11", "web-one", true, "api");
  CHECK(addresses("10.1.0.11", "web") == std::set<std::string>{"10.1.0.12"});
  CHECK(addresses("10.1.0.11", "tasks.api") == std::set<std::string>{"10.1.0.11"});
  CHECK(addresses("10.1.0.11", "api") == std::set<std::string>{"10.1.0.200"});
  table.remove_endpoint("t1");
  CHECK(ask("10.1.0.12", "tasks.api").first == Outcome::outside);
  CHECK(addresses("10.1.0.12", "web") == std::set<std::string>{"10.1.0.12"});
  // A container name equal to a service's: both addresses, each once.
  add("e9", "net-front", "c9", "10.1.0.12", "web", false);
  CHECK(addresses("10.1.0.12", "web") == std::set<std::string>{"10.1.0.12"});
  auto [o2, both] = ask("10.1.0.12", "web");
  CHECK(both.answers.size() == 1);
}
