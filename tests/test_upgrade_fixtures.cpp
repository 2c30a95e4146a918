// What earlier releases wrote and sent, read by this build: each folder of
// tests/fixtures/upgrade/ was recorded by tests/fixtures/upgrade/record.sh
// from a real two-host cluster of that release (a network, a service with a
// published port, a container on each host, a key rotation). This build
// must load the state directory host 1 left when it was killed, and open and
// understand every gossip datagram and stream it exchanged: what a rolling
// upgrade needs, an old and a new daemon in one cluster. A change that
// breaks a format fails here; a change of format that is meant adds a
// reader for the old one and keeps the fixture.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <boost/json.hpp>
#include <cstring>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <span>
#include <string>
#include <vector>

#include "daemon/cluster.hpp"
#include "daemon/cluster_ipam.hpp"
#include "daemon/gossip/codec.hpp"
#include "daemon/gossip/envelope.hpp"
#include "daemon/gossip/keyring.hpp"
#include "daemon/state_records.hpp"
#include "daemon/store.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::TempDir;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

const fs::path kUpgrade = fs::path(SWARMNET_FIXTURES_DIR) / "upgrade";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<fs::path> releases() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(kUpgrade))
    if (e.is_directory()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// One IPv4 TCP or UDP packet of a capture (Ethernet, as tcpdump -i eth0).
struct Captured {
  std::chrono::system_clock::time_point at;
  bool udp = false;
  gossip::Address from, to;
  std::vector<uint8_t> payload;
};

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

std::vector<Captured> read_pcap(const fs::path& file) {
  const std::string bytes = read_text(file);
  const auto* d = reinterpret_cast<const uint8_t*>(bytes.data());
  REQUIRE(bytes.size() >= 24);
  uint32_t magic;
  std::memcpy(&magic, d, 4);
  REQUIRE(magic == 0xa1b2c3d4);  // microseconds, this machine's byte order (little-endian here)
  std::vector<Captured> out;
  size_t pos = 24;
  while (pos + 16 <= bytes.size()) {
    uint32_t sec, usec, caplen;
    std::memcpy(&sec, d + pos, 4);
    std::memcpy(&usec, d + pos + 4, 4);
    std::memcpy(&caplen, d + pos + 8, 4);
    pos += 16;
    REQUIRE(pos + caplen <= bytes.size());
    const uint8_t* f = d + pos;
    pos += caplen;
    if (caplen < 14 + 20 || be16(f + 12) != 0x0800) continue;
    const uint8_t* ip = f + 14;
    const size_t ihl = (ip[0] & 0x0f) * 4u;
    const size_t ip_len = be16(ip + 2);
    const uint8_t proto = ip[9];
    Captured c;
    c.at = std::chrono::system_clock::time_point(std::chrono::seconds(sec) + std::chrono::microseconds(usec));
    const uint8_t* l4 = ip + ihl;
    size_t header = 0;
    if (proto == 17) {
      c.udp = true;
      header = 8;
    } else if (proto == 6) {
      header = (l4[12] >> 4) * 4u;
    } else {
      continue;
    }
    c.from = gossip::Address{Ipv4Address(be32(ip + 12)), be16(l4)};
    c.to = gossip::Address{Ipv4Address(be32(ip + 16)), be16(l4 + 2)};
    const uint8_t* begin = l4 + header;
    const uint8_t* end = ip + ip_len;
    if (end > begin) c.payload.assign(begin, end);
    out.push_back(std::move(c));
  }
  return out;
}

struct Understood {
  std::map<std::string, size_t> kinds;  // message kinds seen, with user message types
  std::vector<json::value> entries;     // every replicated record carried
  std::vector<json::object> block_requests;
  size_t datagrams = 0, streams = 0;
};

void understand(const gossip::Message& m, Understood& u);

void understand_user_json(std::span<const uint8_t> data, bool push_pull, Understood& u) {
  boost::system::error_code ec;
  json::value v = json::parse(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()), ec);
  REQUIRE_FALSE(ec);
  REQUIRE(v.is_object());
  const auto& o = v.as_object();
  if (push_pull) {
    u.kinds["state"]++;
    REQUIRE(o.contains("entries"));
    REQUIRE(o.contains("keyring"));
    for (const auto& e : o.at("entries").as_array()) u.entries.push_back(e);
    return;
  }
  REQUIRE(o.contains("type"));
  const std::string type(o.at("type").as_string());
  u.kinds["user:" + type]++;
  if (type == "entries")
    for (const auto& e : o.at("lines").as_array()) u.entries.push_back(e);
  if (type == "block_request") u.block_requests.push_back(o);
}

void understand(const gossip::Message& m, Understood& u) {
  u.kinds[std::to_string(static_cast<int>(gossip::kind_of(m)))]++;
  if (auto* c = std::get_if<gossip::Compound>(&m)) {
    for (const auto& part : c->parts) {
      auto inner = gossip::decode(part);
      REQUIRE(inner);
      understand(*inner, u);
    }
  } else if (auto* um = std::get_if<gossip::UserMsg>(&m)) {
    understand_user_json(um->data, false, u);
  } else if (auto* pp = std::get_if<gossip::PushPull>(&m)) {
    if (!pp->user_state.empty()) understand_user_json(pp->user_state, true, u);
  }
}

}  // namespace

TEST_CASE("upgrade: a state directory of an earlier release loads with all it held", "[upgrade]") {
  const auto all = releases();
  REQUIRE_FALSE(all.empty());
  for (const auto& release : all) {
    CAPTURE(release.filename().string());
    const json::value expect = json::parse(read_text(release / "expect.json"));
    TempDir dir;
    fs::copy(release / "state", dir.path(), fs::copy_options::recursive);
    daemon::Store store(dir.path());
    const auto* net = store.find_network_by_name(std::string(expect.at("network").at("name").as_string()));
    REQUIRE(net);
    CHECK(net->subnet.str() == expect.at("network").at("subnet").as_string());
    const auto* svc = store.find_service_by_name(std::string(expect.at("service").at("name").as_string()));
    REQUIRE(svc);
    std::set<std::string> want_ips, have_ips;
    for (const auto& ep : expect.at("endpoints").as_array()) want_ips.insert(std::string(ep.at("ip").as_string()));
    for (const auto& [key, entry] : store.endpoints())
      if (!entry.deleted && entry.value.network_id == net->id && entry.value.service == svc->name)
        have_ips.insert(entry.value.ip.str());
    CHECK(have_ips == want_ips);
  }
}

TEST_CASE("upgrade: the gossip of an earlier release opens, decodes and carries its records", "[upgrade]") {
  for (const auto& release : releases()) {
    CAPTURE(release.filename().string());
    const json::value expect = json::parse(read_text(release / "expect.json"));
    std::vector<gossip::Keyring::Key> keys;
    for (const auto& t : expect.at("tokens").as_array())
      keys.push_back(daemon::JoinToken::parse(std::string(t.as_string())).key);
    gossip::Keyring keyring(keys);
    Understood u;

    // Streams: the bytes of each direction of each connection, in order
    // (a capture on one bridge: no loss, no reordering).
    std::map<std::pair<gossip::Address, gossip::Address>, std::vector<uint8_t>> flows;
    std::map<std::pair<gossip::Address, gossip::Address>, std::chrono::system_clock::time_point> flow_at;
    for (const auto& c : read_pcap(release / "gossip.pcap")) {
      if (!c.udp) {
        auto& f = flows[{c.from, c.to}];
        if (f.empty()) flow_at[{c.from, c.to}] = c.at;
        f.insert(f.end(), c.payload.begin(), c.payload.end());
        continue;
      }
      const std::vector<gossip::Address> mine{c.to};
      auto opened = gossip::open_packet(keyring, c.payload, mine, c.at);
      INFO("a datagram from " << gossip::to_string(c.from) << " of " << c.payload.size() << " bytes");
      REQUIRE(opened);
      CHECK(opened->envelope.from == c.from);
      auto msg = gossip::decode(opened->payload);
      REQUIRE(msg);
      understand(*msg, u);
      u.datagrams++;
    }
    for (const auto& [ends, bytes] : flows) {
      if (bytes.empty()) continue;
      INFO("a stream from " << gossip::to_string(ends.first) << " to " << gossip::to_string(ends.second));
      // A reply is addressed to the asker's gossip address, not to the
      // connection's port.
      const std::vector<gossip::Address> mine{ends.second, gossip::Address{ends.second.ip, 7946}};
      REQUIRE(bytes.size() >= gossip::kFrameHeadSize);
      auto head = gossip::open_frame_head(keyring, std::span(bytes).first(gossip::kFrameHeadSize), mine,
                                          64 << 20, flow_at.at(ends));
      REQUIRE(head);
      REQUIRE(bytes.size() == gossip::kFrameHeadSize + head->body_size);
      auto body = gossip::open_frame_body(keyring, *head, std::span(bytes).subspan(gossip::kFrameHeadSize),
                                          flow_at.at(ends));
      REQUIRE(body);
      auto msg = gossip::decode(*body);
      REQUIRE(msg);
      understand(*msg, u);
      u.streams++;
    }
    INFO("datagrams " << u.datagrams << ", streams " << u.streams);
    for (const auto& [k, n] : u.kinds) UNSCOPED_INFO(k << ": " << n);
    CHECK(u.datagrams > 10);
    CHECK(u.streams > 2);
    // Probes, membership news, push/pull state, replicated records and the
    // key rotation's message all occurred and were understood.
    CHECK(u.kinds.count(std::to_string(static_cast<int>(gossip::MessageKind::ping))));
    CHECK(u.kinds.count(std::to_string(static_cast<int>(gossip::MessageKind::ack))));
    CHECK(u.kinds.count(std::to_string(static_cast<int>(gossip::MessageKind::alive))));
    CHECK(u.kinds.count(std::to_string(static_cast<int>(gossip::MessageKind::push_pull))));
    CHECK(u.kinds.count("state"));
    CHECK(u.kinds.count("user:entries"));
    CHECK(u.kinds.count("user:keyring"));

    // What they carried, merged into an empty store, is the cluster's state.
    TempDir dir;
    daemon::Store store(dir.path());
    store.merge(u.entries);
    const auto* net = store.find_network_by_name(std::string(expect.at("network").at("name").as_string()));
    REQUIRE(net);
    const auto* svc = store.find_service_by_name(std::string(expect.at("service").at("name").as_string()));
    REQUIRE(svc);
    size_t tasks = 0;
    for (const auto& [key, entry] : store.endpoints())
      if (!entry.deleted && entry.value.service == svc->name) tasks++;
    CHECK(tasks == expect.at("endpoints").as_array().size());

    // Host 2 asked host 1 for an address block: this build reads the
    // request as one for any block of the network (it had no range then).
    REQUIRE_FALSE(u.block_requests.empty());
    for (const auto& o : u.block_requests) {
      const daemon::BlockRequest r = daemon::block_request_from_json(o);
      CHECK(r.network_id == net->id);
      CHECK_FALSE(r.range);
    }
  }
}
