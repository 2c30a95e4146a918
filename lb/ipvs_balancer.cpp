// The IPVS implementation of lb::Balancer (design in lb/ipvs_balancer.hpp).
#include "lb/ipvs_balancer.hpp"

#include <sys/utsname.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <map>
#include <optional>

#include "common/error.hpp"
#include "common/log.hpp"
#include "kernel/netlink.hpp"
#include "kernel/nftables.hpp"
#include "lb/vip_addresses.hpp"

namespace swarmnet::lb {

uint32_t preferred_mark(std::string_view key) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 16777619u;
  }
  uint32_t low = hash & ~kMarkPrefixMask;
  return kMarkPrefix | (low == 0 ? 1 : low);
}

uint32_t allocate_mark(std::string_view key, const std::set<uint32_t>& used) {
  constexpr uint32_t kValues = ~kMarkPrefixMask;  // 1 .. 0xffffff
  uint32_t low = preferred_mark(key) & ~kMarkPrefixMask;
  for (uint32_t i = 0; i < kValues; ++i) {
    uint32_t mark = kMarkPrefix | low;
    if (!used.contains(mark)) return mark;
    low = low == kValues ? 1 : low + 1;
  }
  throw Error(Errc::exhausted, "no IPVS firewall mark left for VIP " + std::string(key));
}

void check_vip_key(std::string_view key) {
  bool ok = !key.empty() && key.size() <= 63 &&
            std::all_of(key.begin(), key.end(),
                        [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (!ok) {
    throw Error(Errc::invalid_argument,
                "invalid VIP key \"" + std::string(key) +
                    "\": 1 to 63 printable ASCII characters, no '\"' or '\\'");
  }
}

std::vector<std::pair<std::string, std::string>> ipvs_sysctls(std::string_view kernel_release) {
  unsigned major = 0, minor = 0;
  std::sscanf(std::string(kernel_release).c_str(), "%u.%u", &major, &minor);
  bool reuse_fixed = major > 5 || (major == 5 && minor >= 9);
  return {
      // IPVS keeps nf_conntrack in step with its NAT (the reply tuple is
      // altered to backend -> client), so a backend's reply is ESTABLISHED,
      // not INVALID, for the firewall's `ct state` rules; Docker sets it too.
      {"net/ipv4/vs/conntrack", "1"},
      // 1: a new connection (SYN) that reuses the ports of an old entry is
      // scheduled afresh, so it cannot stick to a removed backend. Before 5.9
      // this, with conntrack=1, delayed such connections by a second (the
      // SYN was dropped); kube-proxy sets 0 there, and so do we.
      {"net/ipv4/vs/conn_reuse_mode", reuse_fixed ? "1" : "0"},
      // 1: a packet of a connection whose backend was removed expires the
      // entry at once (and a retransmission is rescheduled), instead of
      // being dropped until the entry times out: the client sees a reset,
      // not a hang.
      {"net/ipv4/vs/expire_nodest_conn", "1"},
      // Persistence templates are not used (timeout 0); set so that a
      // quiesced (weight 0) backend would not keep persistent clients.
      {"net/ipv4/vs/expire_quiescent_template", "1"},
      // Create an entry from any TCP/SCTP packet, not only the first of a
      // connection: with mh the mid-stream packet of an idle connection
      // whose entry expired goes to the same backend instead of the host's
      // stack (which would answer RST: moby#31208).
      {"net/ipv4/vs/sloppy_tcp", "1"},
      {"net/ipv4/vs/sloppy_sctp", "1"},
  };
}

namespace {

namespace json = boost::json;

struct MapElement {
  std::string key;  // "" when the element has no comment (not ours to keep)
  Ipv4Address vip;
  uint32_t mark = 0;
};

std::string mark_hex(uint32_t mark) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", mark);
  return text;
}

std::string table_script() {
  std::string t = "ip " + std::string(kIpvsTable);
  std::string m = std::string(kIpvsMarkMap);
  std::string e = std::string(kIpvsEmptySet);
  // VIPs without backends are refused here, before IPVS (LOCAL_IN at
  // priority 98, LOCAL_OUT at -99): TCP with a reset, the rest with ICMP
  // port unreachable. IPVS would answer ICMP itself, but a TCP socket that
  // is busy in connect() when the ICMP arrives (same host, same CPU: the
  // usual case) only notes it as a soft error and waits for the SYN
  // retransmission, a second later; a reset is queued and acted on at once.
  std::string refuse = " ip daddr @" + e + " meta l4proto tcp reject with tcp reset\n" +
                       "add rule " + t + " %CHAIN% ip daddr @" + e + " reject\n";
  auto refuse_in = [&](const std::string& chain) {
    std::string r = "add rule " + t + " " + chain + refuse;
    return r.replace(r.find("%CHAIN%"), 7, chain);
  };
  // `add` keeps what exists (the map's elements survive a restart); the
  // chains are flushed and their one rule added in the same transaction,
  // so running this twice never doubles a rule.
  return "add table " + t + "\n" +
         "add map " + t + " " + m + " { type ipv4_addr : mark; }\n" +
         "add set " + t + " " + e + " { type ipv4_addr; }\n" +
         "add chain " + t + " prerouting { type filter hook prerouting priority mangle; policy accept; }\n" +
         "add chain " + t + " input { type filter hook input priority filter; policy accept; }\n" +
         "add chain " + t + " output { type route hook output priority mangle; policy accept; }\n" +
         "add chain " + t + " postrouting { type filter hook postrouting priority mangle; policy accept; }\n" +
         "flush chain " + t + " prerouting\n" +
         "flush chain " + t + " postrouting\n" +
         "flush chain " + t + " input\n" +
         "flush chain " + t + " output\n" +
         "add rule " + t + " prerouting meta mark set ip daddr map @" + m + "\n" +
         refuse_in("input") + refuse_in("output") +
         "add rule " + t + " output meta mark set ip daddr map @" + m + "\n" +
         // IPVS has used the mark by now (LOCAL_IN/LOCAL_OUT). Left on the
         // packet, it would survive VXLAN encapsulation (no scrub within a
         // namespace): the outer UDP packet, sent from this host with the
         // VIP's mark, would be scheduled by IPVS again and loop ("Dead loop
         // on virtual device", seen in the VM with a remote backend).
         "add rule " + t + " postrouting meta mark & " + mark_hex(kMarkPrefixMask) + " == " +
         mark_hex(kMarkPrefix) + " meta mark set 0x0\n";
}

std::string element(const MapElement& e) {
  char mark[16];
  std::snprintf(mark, sizeof(mark), "0x%08x", e.mark);
  return e.vip.str() + (e.key.empty() ? "" : " comment \"" + e.key + "\"") + " : " + mark;
}

std::string element_command(std::string_view verb, const std::string& body,
                            std::string_view set = kIpvsMarkMap) {
  return std::string(verb) + " element ip " + std::string(kIpvsTable) + " " + std::string(set) +
         " { " + body + " }\n";
}

// The "elem" array of `list KIND ip swarmnet-ipvs NAME` (KIND "set" or
// "map") as JSON; empty when the table or the set is missing or empty.
json::array list_elements(kernel::NftContext& nft, const std::string& kind, std::string_view name) {
  std::string listing;
  try {
    listing = nft.run("list " + kind + " ip " + std::string(kIpvsTable) + " " + std::string(name),
                      kernel::NftContext::Output::json);
  } catch (const Error& e) {
    if (e.code() == Errc::not_found) return {};
    throw;
  }
  json::array elements;
  json::value doc = json::parse(listing);
  for (const json::value& item : doc.at("nftables").as_array()) {
    const json::value* set = item.as_object().if_contains(kind);
    if (!set || !set->as_object().if_contains("elem")) continue;
    for (const json::value& e : set->at("elem").as_array()) elements.push_back(e);
  }
  return elements;
}

// The addresses in the set of VIPs without backends.
std::set<Ipv4Address> read_empty_set(kernel::NftContext& nft) {
  std::set<Ipv4Address> vips;
  for (const json::value& e : list_elements(nft, "set", kIpvsEmptySet)) {
    if (!e.is_string()) continue;
    if (auto vip = Ipv4Address::try_parse(e.as_string())) vips.insert(*vip);
  }
  return vips;
}

// The map's elements, read from the kernel. Empty if the table is missing.
std::vector<MapElement> read_map(kernel::NftContext& nft) {
  std::vector<MapElement> elements;
  for (const json::value& pair : list_elements(nft, "map", kIpvsMarkMap)) {
    const json::array& kv = pair.as_array();
    if (kv.size() != 2) continue;
    MapElement e;
    // An element with a comment is {"elem": {"val": ..., "comment": ...}},
    // one without is the bare address string.
    const json::value* val = &kv[0];
    if (val->is_object() && val->as_object().if_contains("elem")) {
      const json::object& inner = val->at("elem").as_object();
      if (const json::value* c = inner.if_contains("comment"); c && c->is_string()) {
        e.key = std::string(c->as_string());
      }
      val = inner.if_contains("val");
    }
    if (!val || !val->is_string()) continue;
    auto vip = Ipv4Address::try_parse(val->as_string());
    if (!vip || !kv[1].is_number()) continue;
    e.vip = *vip;
    e.mark = static_cast<uint32_t>(kv[1].to_number<uint64_t>());
    elements.push_back(std::move(e));
  }
  return elements;
}

class IpvsBalancer final : public Balancer {
 public:
  explicit IpvsBalancer(const IpvsSettings& settings)
      : settings_(settings), ipvs_(IpvsSocket::open()), nl_(kernel::NetlinkSocket::open()) {
    struct utsname u {};
    ::uname(&u);
    for (const auto& [key, value] : ipvs_sysctls(u.release)) kernel::write_sysctl(key, value);
    // A backend on the VIP's bridge (local, or remote behind the VXLAN
    // port) answers the client directly: the reply is bridged, not routed,
    // and IPVS sees it (to put the VIP back as its source) only because
    // br_netfilter passes bridged IPv4 through the FORWARD hook. Checked in
    // the VM: with this at 0, TCP never connects and UDP answers are
    // dropped. Per namespace since Linux 5.3.
    try {
      kernel::write_sysctl("net/bridge/bridge-nf-call-iptables", "1");
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) throw;
      throw Error(Errc::unavailable,
                  "IPVS balancing needs br_netfilter (modprobe br_netfilter): the replies of "
                  "backends on the VIP's bridge must pass IPVS");
    }
    ipvs_.set_timeouts(settings_.timeouts);
    ensure_table();
    load_cache();
  }

  std::string_view name() const override { return "ipvs"; }

  void upsert(const VirtualIp& v) override {
    check_vip_key(v.key);
    if (v.bridge.empty()) throw Error(Errc::invalid_argument, "VIP " + v.key + " has no bridge");
    if (auto other = key_by_vip_.find(v.vip); other != key_by_vip_.end() && other->second != v.key) {
      throw Error(Errc::conflict, "VIP address " + v.vip.str() + " of " + v.key +
                                      " is already the VIP of " + other->second);
    }
    ensure_table();
    auto existing = entries_.find(v.key);
    const bool fresh = existing == entries_.end();
    Entry entry = fresh ? Entry{v.vip, allocate_mark(v.key, used_marks_), v.bridge} : existing->second;

    const bool want_empty = v.backends.empty();
    const bool moved = !fresh && entry.vip != v.vip;
    try {
      ensure_service(entry.mark);
      std::string commands;
      if (moved) {
        commands += element_command("delete", entry.vip.str());
        if (entry.empty) commands += element_command("delete", entry.vip.str(), kIpvsEmptySet);
      }
      if (fresh || moved) commands += element_command("add", element({v.key, v.vip, entry.mark}));
      const bool empty_now = !fresh && !moved && entry.empty;
      if (want_empty && !empty_now) commands += element_command("add", v.vip.str(), kIpvsEmptySet);
      if (!want_empty && empty_now) commands += element_command("delete", v.vip.str(), kIpvsEmptySet);
      // Refusing starts before the last destination goes; it ends only
      // after the first one is there.
      if (want_empty && !commands.empty()) nft_.run(commands);
      sync_destinations(entry.mark, v.backends);
      if (!want_empty && !commands.empty()) nft_.run(commands);
      // A VIP that only changed bridges is moved by ensure_vip_route in
      // one request.
      if (moved) remove_vip_route(nl_, entry.bridge, entry.vip);
      ensure_vip_route(nl_, v.bridge, v.vip);
    } catch (...) {
      // Nothing half-done: a new VIP leaves nothing behind. A changed one
      // keeps what it had; the next upsert or sync finishes the change.
      if (fresh) {
        try {
          remove_objects(Entry{v.vip, entry.mark, v.bridge});
        } catch (const Error& cleanup) {
          spdlog::warn("ipvs: cleaning up after a failed upsert of {}: {}", v.key, cleanup.what());
        }
      }
      throw;
    }
    if (!fresh) key_by_vip_.erase(entry.vip);
    entry.vip = v.vip;
    entry.bridge = v.bridge;
    entry.empty = want_empty;
    entries_[v.key] = entry;
    key_by_vip_[v.vip] = v.key;
    used_marks_.insert(entry.mark);
  }

  void remove(const std::string& key) override {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    remove_objects(it->second);
    forget(key);
  }

  void sync(const std::vector<VirtualIp>& all) override {
    table_ready_ = false;
    ensure_table();
    load_cache();
    std::set<std::string> wanted;
    std::set<std::pair<std::string, Ipv4Address>> wanted_routes;
    for (const VirtualIp& v : all) {
      wanted.insert(v.key);
      wanted_routes.insert({v.bridge, v.vip});
    }
    // Removals first: a VIP may move from a removed key to a new one.
    std::vector<std::string> stale;
    for (const auto& [key, entry] : entries_) {
      if (!wanted.contains(key)) stale.push_back(key);
    }
    for (const std::string& key : stale) remove(key);
    for (const MapElement& orphan : orphan_elements_) {
      delete_element(orphan.vip);
    }
    orphan_elements_.clear();
    for (Ipv4Address vip : stale_empty_) delete_element(vip, kIpvsEmptySet);
    stale_empty_.clear();
    for (const VirtualIp& v : all) upsert(v);
    // IPVS services with our marks that no VIP uses (a crash between steps).
    for (const IpvsService& service : ipvs_.fwmark_services()) {
      if (is_swarmnet_mark(service.fwmark) && !used_marks_.contains(service.fwmark)) {
        ipvs_.delete_service(service.fwmark);
      }
    }
    for (const auto& [bridge, vip] : list_vip_routes(nl_)) {
      if (!wanted_routes.contains({bridge, vip})) remove_vip_route(nl_, bridge, vip);
    }
    // An earlier release's VIP addresses, once the routes are in place.
    remove_legacy_vip_addresses(nl_);
  }

  std::vector<VirtualIp> read_kernel_state() override {
    std::map<Ipv4Address, std::string> bridge_of;
    for (const auto& [bridge, vip] : list_vip_routes(nl_)) bridge_of.emplace(vip, bridge);
    std::vector<VirtualIp> state;
    for (const MapElement& e : read_map(nft_)) {
      VirtualIp v;
      v.key = e.key;
      v.vip = e.vip;
      if (auto b = bridge_of.find(e.vip); b != bridge_of.end()) v.bridge = b->second;
      try {
        for (const IpvsDestination& d : ipvs_.destinations(e.mark)) v.backends.push_back(d.address);
      } catch (const Error& err) {
        if (err.code() != Errc::not_found) throw;
      }
      std::sort(v.backends.begin(), v.backends.end());
      state.push_back(std::move(v));
    }
    std::sort(state.begin(), state.end(),
              [](const VirtualIp& a, const VirtualIp& b) { return a.key < b.key; });
    return state;
  }

  void clear() override {
    try {
      nft_.run("delete table ip " + std::string(kIpvsTable));
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) throw;
    }
    for (const IpvsService& service : ipvs_.fwmark_services()) {
      if (is_swarmnet_mark(service.fwmark)) ipvs_.delete_service(service.fwmark);
    }
    for (const auto& [bridge, vip] : list_vip_routes(nl_)) remove_vip_route(nl_, bridge, vip);
    remove_legacy_vip_addresses(nl_);
    entries_.clear();
    key_by_vip_.clear();
    used_marks_.clear();
    orphan_elements_.clear();
    table_ready_ = false;  // the next upsert makes the table again
  }

 private:
  struct Entry {
    Ipv4Address vip;
    uint32_t mark = 0;
    std::string bridge;
    bool empty = false;  // in the set of VIPs refused for lack of backends
  };

  // Keys, marks and bridges from the kernel: the map names key, VIP and
  // mark; the VIP routes name the bridges.
  void load_cache() {
    entries_.clear();
    key_by_vip_.clear();
    used_marks_.clear();
    orphan_elements_.clear();
    std::map<Ipv4Address, std::string> bridge_of;
    for (const auto& [bridge, vip] : list_vip_routes(nl_)) bridge_of.emplace(vip, bridge);
    std::set<Ipv4Address> empty = read_empty_set(nft_);
    for (MapElement& e : read_map(nft_)) {
      if (e.key.empty() || !is_swarmnet_mark(e.mark) || entries_.contains(e.key)) {
        orphan_elements_.push_back(e);
        continue;
      }
      auto b = bridge_of.find(e.vip);
      entries_[e.key] = Entry{e.vip, e.mark, b == bridge_of.end() ? "" : b->second,
                              empty.contains(e.vip)};
      empty.erase(e.vip);
      key_by_vip_[e.vip] = e.key;
      used_marks_.insert(e.mark);
    }
    stale_empty_ = std::move(empty);  // refused addresses of no VIP
  }

  void ensure_table() {
    if (table_ready_) return;
    nft_.run(table_script());
    table_ready_ = true;
  }

  void forget(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    key_by_vip_.erase(it->second.vip);
    used_marks_.erase(it->second.mark);
    entries_.erase(it);
  }

  void ensure_service(uint32_t mark) {
    IpvsService service{mark, settings_.scheduler, settings_.scheduler_flags};
    try {
      ipvs_.add_service(service);
    } catch (const Error& e) {
      if (e.code() != Errc::conflict) throw;
      // Left from before (a restart): make sure it has our scheduler.
      ipvs_.update_service(service);
    }
  }

  void sync_destinations(uint32_t mark, const std::vector<Ipv4Address>& backends) {
    std::set<Ipv4Address> wanted(backends.begin(), backends.end());
    std::set<Ipv4Address> present;
    for (const IpvsDestination& d : ipvs_.destinations(mark)) {
      // A destination with a port or another forwarding method is not one
      // of ours: replace it.
      if (!wanted.contains(d.address) || d.port != 0 || d.forwarding != kMasquerade) {
        ipvs_.delete_destination(mark, d);
      } else {
        present.insert(d.address);
      }
    }
    for (Ipv4Address backend : wanted) {
      if (present.contains(backend)) continue;
      IpvsDestination dest;
      dest.address = backend;
      ipvs_.add_destination(mark, dest);
    }
  }

  void delete_element(Ipv4Address vip, std::string_view set = kIpvsMarkMap) {
    try {
      nft_.run(element_command("delete", vip.str(), set));
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) throw;
    }
  }

  // The element first, so no packet is marked for a service that is going.
  void remove_objects(const Entry& entry) {
    delete_element(entry.vip);
    delete_element(entry.vip, kIpvsEmptySet);
    ipvs_.delete_service(entry.mark);
    remove_vip_route(nl_, entry.bridge, entry.vip);
  }

  static constexpr uint32_t kMasquerade = 0;  // IP_VS_CONN_F_MASQ

  IpvsSettings settings_;
  IpvsSocket ipvs_;
  kernel::NetlinkSocket nl_;
  kernel::NftContext nft_;
  std::map<std::string, Entry> entries_;
  std::map<Ipv4Address, std::string> key_by_vip_;
  std::set<uint32_t> used_marks_;
  std::vector<MapElement> orphan_elements_;
  std::set<Ipv4Address> stale_empty_;
  bool table_ready_ = false;
};

}  // namespace

std::unique_ptr<Balancer> make_ipvs_balancer(const IpvsSettings& settings) {
  return std::make_unique<IpvsBalancer>(settings);
}

std::unique_ptr<Balancer> make_ipvs_balancer() {
  return make_ipvs_balancer(IpvsSettings{});
}

bool ipvs_available() {
  try {
    IpvsSocket::open();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace swarmnet::lb
