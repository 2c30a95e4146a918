#include "daemon/cluster.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "common/api.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json_fields.hpp"
#include "daemon/encryption.hpp"
#include "daemon/ingress/ingress.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kTokenPrefix = "SWMTKN-1-";
constexpr const char* kSettingsFile = "cluster.json";
// A node asks for a block at most this often per network.
constexpr auto kBlockRequestInterval = 500ms;
// Between the steps of a key rotation, at least: the ESP SAs of a step are
// installed and confirmed within it (daemon/encryption.hpp). Each step also
// waits for every member to confirm the one before (ClusterOptions).
constexpr auto kRotationStep = 5s;
constexpr auto kLeaveTimeout = 3s;
// How long remembered members count as alive after a restart without word
// from gossip (memberlist's default suspicion would take about as long).
constexpr auto kAssumeAliveAfterRestart = 15s;
// The way back for a node whose keys a rotation retired while it was down.
constexpr const char* kRejoinHowTo =
    "get a current token on a member (`swarmnetctl cluster token`), and on the locked-out node run "
    "`swarmnetctl cluster leave`, then `swarmnetctl cluster join --token-file FILE`";

std::string comma_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

gossip::Address parse_address(const std::string& text, uint16_t default_port) {
  auto colon = text.rfind(':');
  std::string ip = colon == std::string::npos ? text : text.substr(0, colon);
  uint16_t port = default_port;
  if (colon != std::string::npos) {
    const std::string p = text.substr(colon + 1);
    unsigned long v = 0;
    try {
      size_t used = 0;
      v = std::stoul(p, &used);
      if (used != p.size() || v == 0 || v > 65535) throw std::invalid_argument(p);
    } catch (const std::exception&) {
      throw Error(Errc::invalid_argument, "invalid port in \"" + text + "\"");
    }
    port = static_cast<uint16_t>(v);
  }
  return gossip::Address{Ipv4Address::parse(ip), port};
}

std::vector<uint8_t> to_bytes(const json::value& v) {
  const std::string s = json::serialize(v);
  return std::vector<uint8_t>(s.begin(), s.end());
}

gossip::MemberStatus parse_status(const std::string& text) {
  for (auto st : {gossip::MemberStatus::alive, gossip::MemberStatus::suspect, gossip::MemberStatus::dead,
                  gossip::MemberStatus::left}) {
    if (text == gossip::to_string(st)) return st;
  }
  // Unknown: counted in the quorum, never as alive (the safe side).
  return gossip::MemberStatus::dead;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The lease across a restart: only the wall clock can tell how long the
// daemon was down. A time in the future (the clock went back) or none (a
// file of an older swarmnetd) cannot be trusted: the lease has run out.
std::optional<std::chrono::steady_clock::time_point> restore_last_majority(std::optional<uint64_t> saved,
                                                                           std::chrono::seconds lease) {
  if (!saved) {
    spdlog::warn("cluster: {} does not say when this node last saw a majority (an older swarmnetd wrote it): "
                 "no address is handed out until a majority is seen",
                 kSettingsFile);
    return std::nullopt;
  }
  if (*saved == 0) {
    spdlog::error("cluster: this node's lease had run out before the restart (no majority in sight): it hands "
                  "out no address until it sees a majority again");
    return std::nullopt;
  }
  const int64_t age = unix_now() - static_cast<int64_t>(std::min<uint64_t>(*saved, INT64_MAX));
  if (age < 0) {
    spdlog::warn("cluster: the last majority was seen {} s in the future (the clock went back): its lease is "
                 "treated as run out; no address is handed out until a majority is seen",
                 -age);
    return std::nullopt;
  }
  if (age >= lease.count()) {
    spdlog::error("cluster: this node last saw a majority of the cluster {} s ago, longer than its lease ({} s): "
                  "it hands out no address until it sees a majority again",
                  age, lease.count());
    return std::nullopt;
  }
  spdlog::info("cluster: last saw a majority {} s ago; the lease holds for {} s more without one", age,
               lease.count() - age);
  return std::chrono::steady_clock::now() - std::chrono::seconds(age);
}

std::optional<json::value> from_bytes(std::span<const uint8_t> data) {
  boost::system::error_code ec;
  json::value v = json::parse(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()), ec);
  if (ec || !v.is_object()) return std::nullopt;
  return v;
}

}  // namespace

std::string JoinToken::str() const {
  return std::string(kTokenPrefix) + gossip::Keyring::key_to_base64(key) + "-" + gossip::to_string(seed);
}

JoinToken JoinToken::parse(const std::string& text) {
  const std::string bad = "invalid join token (expected SWMTKN-1-KEY-IP:PORT, as printed by "
                          "`swarmnetctl cluster init`)";
  if (text.rfind(kTokenPrefix, 0) != 0) throw Error(Errc::invalid_argument, bad);
  const std::string rest = text.substr(std::string(kTokenPrefix).size());
  const auto dash = rest.rfind('-');
  if (dash == std::string::npos) throw Error(Errc::invalid_argument, bad);
  JoinToken t;
  try {
    t.key = gossip::Keyring::key_from_base64(rest.substr(0, dash));
    t.seed = parse_address(rest.substr(dash + 1), 7946);
  } catch (const Error& e) {
    throw Error(Errc::invalid_argument, bad + ": " + e.what());
  }
  return t;
}

Cluster::Cluster(boost::asio::io_context& io, Store& store, Controller& controller,
                 std::string state_dir, std::string node_name, ClusterOptions options)
    : io_(io),
      store_(store),
      controller_(controller),
      state_dir_(std::move(state_dir)),
      node_name_(std::move(node_name)),
      options_(std::move(options)) {
  subscription_ = store_.feed().subscribe(Stage::replication, [this](const Change& c) {
    // Out of a cluster nothing is sent (push/pull reads the store itself).
    if (!node_ || c.kind != Change::Kind::entry || c.is(TableId::cursors)) return;
    if (c.local) broadcast(json::object{{"type", "entries"}, {"lines", json::array{*c.local}}});
  });
}

Cluster::~Cluster() {
  subscription_.reset();
  if (node_) node_->stop();
  controller_.forget_membership();
}

void Cluster::resume() {
  auto text = read_file(state_dir_ + "/" + kSettingsFile);
  if (!text) return;
  try {
    json::value v = json_fields::parse(*text, kSettingsFile);
    const auto& o = json_fields::as_object(v, kSettingsFile);
    const Ipv4Address advertise = Ipv4Address::parse(json_fields::required_string(o, "advertise"));
    std::vector<gossip::Keyring::Key> keys;
    for (const auto& k : json_fields::string_array(o, "keys")) {
      keys.push_back(gossip::Keyring::key_from_base64(k));
    }
    if (keys.empty()) throw Error(Errc::invalid_argument, "no cluster key");
    const uint64_t version = json_fields::optional_uint(o, "keys_version", UINT64_MAX).value_or(1);
    std::vector<gossip::Address> peers;
    for (const auto& p : json_fields::string_array(o, "peers")) {
      peers.push_back(parse_address(p, options_.gossip_port));
    }
    std::vector<gossip::Member> remembered;
    if (const json::value* saved = json_fields::find(o, "members"); saved && saved->is_array()) {
      for (const auto& mv : saved->as_array()) {
        const auto& m = json_fields::as_object(mv, "member");
        gossip::Member member;
        member.id = json_fields::required_string(m, "id");
        member.name = json_fields::string_or(m, "name", "");
        member.addr = parse_address(json_fields::required_string(m, "address"), options_.gossip_port);
        // Files of older swarmnetds hold only the members alive at the time.
        member.status = parse_status(json_fields::string_or(m, "status", "alive"));
        if (member.id != store_.node_id()) remembered.push_back(member);
      }
    }
    if (const json::value* pools = json_fields::find(o, "address_pools")) apply_address_pools(*pools);
    const auto last_majority =
        restore_last_majority(json_fields::optional_uint(o, "last_majority_unix", UINT64_MAX), lease());
    std::vector<uint32_t> generations;
    if (const json::value* g = json_fields::find(o, "key_generations"); g && g->is_array()) {
      for (const auto& n : g->as_array()) {
        if (n.is_int64() && n.as_int64() > 0 && n.as_int64() <= UINT32_MAX) generations.push_back(static_cast<uint32_t>(n.as_int64()));
      }
    }
    key_created_unix_ = static_cast<int64_t>(json_fields::optional_uint(o, "key_created_unix", INT64_MAX).value_or(0));
    start(advertise, std::move(keys), version, generations, remembered, last_majority);
    spdlog::info("cluster: resuming as {} with {} known peer(s)", advertise.str(), peers.size());
    if (!peers.empty()) {
      node_->node().join(peers, [this](std::optional<std::string> error) {
        if (!error) return;
        post_from_gossip([this, error] {
        // A key rotation that waited its time for this node (ClusterOptions::
        // key_rotation_wait) leaves it with retired keys: nothing but a
        // current token brings it back.
        spdlog::error("cluster: rejoin: {}. Gossip keeps trying. If the other nodes are up, they may have retired "
                      "this node's cluster key in a rotation while it was down (a rotation waits {} s for a node "
                      "that is down): then {} (with --advertise-addr {})",
                      *error, options_.key_rotation_wait.count(), kRejoinHowTo,
                      advertise_ ? advertise_->str() : "ADDRESS");
        });
      });
    }
  } catch (const std::exception& e) {
    throw Error(Errc::internal, "cannot resume the cluster from " + state_dir_ + "/" +
                                    kSettingsFile + ": " + e.what());
  }
}

void Cluster::start(Ipv4Address advertise, std::vector<gossip::Keyring::Key> keys,
                    uint64_t keys_version, const std::vector<uint32_t>& generations,
                    const std::vector<gossip::Member>& remembered,
                    std::optional<std::chrono::steady_clock::time_point> last_majority) {
  advertise_ = advertise;
  assign_generations(keys, generations);
  keyring_ = std::make_unique<gossip::Keyring>(std::move(keys));
  keys_version_ = keys_version;
  keyring_taken_at_ = std::chrono::steady_clock::now();
  node_ = std::make_unique<gossip::NodeThread>(options_.gossip, store_.node_id(), node_name_,
                                               gossip::Address{advertise, options_.gossip_port}, *keyring_,
                                               *this, options_.gossip_thread ? nullptr : &io_);
  node_->start();
  members_.clear();
  members_[store_.node_id()] = gossip::Member{store_.node_id(), node_name_,
                                              gossip::Address{advertise, options_.gossip_port}, 0,
                                              gossip::MemberStatus::alive};
  last_majority_ = last_majority;
  lease_lost_logged_ = !last_majority;  // restore_last_majority said so
  gone_since_.clear();
  assumed_alive_until_.clear();
  const auto now = std::chrono::steady_clock::now();
  for (const auto& m : remembered) {
    members_[m.id] = m;
    if (m.status == gossip::MemberStatus::alive || m.status == gossip::MemberStatus::suspect) {
      members_[m.id].status = gossip::MemberStatus::alive;
      assumed_alive_until_[m.id] = now + kAssumeAliveAfterRestart;
    } else if (m.status == gossip::MemberStatus::dead) {
      gone_since_.emplace(m.id, now);  // the reclaim clock starts again: later, never sooner
    }
  }
  // Alone in its quorum (a cluster of one, or all the others forced out):
  // a majority at once, not only at the first housekeeping.
  if (sees_majority()) last_majority_ = now;
  controller_.set_membership(this, this, advertise);
  save();
  refresh_push_pull_records();
  schedule_housekeeping();
}

void Cluster::schedule_housekeeping() {
  housekeeping_timer_ = std::make_unique<boost::asio::steady_timer>(io_, 1s);
  housekeeping_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || !node_) return;
    housekeeping();
    schedule_housekeeping();
  });
}

bool Cluster::confirmed_alive(const std::string& node_id) const {
  if (node_id == store_.node_id()) return true;
  if (assumed_alive_until_.count(node_id)) return false;
  auto it = members_.find(node_id);
  return it != members_.end() && (it->second.status == gossip::MemberStatus::alive ||
                                  it->second.status == gossip::MemberStatus::suspect);
}

bool Cluster::sees_majority() const {
  size_t counted = 0, alive = 0;
  for (const auto& [id, m] : members_) {
    if (m.status == gossip::MemberStatus::left) continue;
    ++counted;
    if (confirmed_alive(id)) ++alive;
  }
  return alive * 2 > counted;
}

bool Cluster::may_allocate() const {
  return last_majority_ && std::chrono::steady_clock::now() - *last_majority_ < lease();
}

void Cluster::housekeeping() {
  const auto now = std::chrono::steady_clock::now();
  // Remembered members that gossip never confirmed: no longer assumed alive.
  // Their changes reach the feed's subscribers once all are marked.
  std::optional<ChangeFeed::Hold> hold;
  hold.emplace(store_.feed());
  bool told = false, expired = false;
  for (auto it = assumed_alive_until_.begin(); it != assumed_alive_until_.end();) {
    if (now < it->second) {
      ++it;
      continue;
    }
    spdlog::info("cluster: node {} not heard of since the restart; treating it as dead",
                 members_.count(it->first) ? members_[it->first].name : it->first);
    if (auto m = members_.find(it->first); m != members_.end()) {
      const auto before = m->second.status;
      m->second.status = gossip::MemberStatus::dead;
      tell_member_changed(m->second, before);
      told = true;
    }
    gone_since_.emplace(it->first, now);
    it = assumed_alive_until_.erase(it);
    expired = true;
  }
  if (expired && !told) controller_.on_membership_change();
  hold.reset();
  // A dead member leaves the VXLAN filter once its reclaim time is up.
  controller_.overlay().sync_underlay_peers();
  sync_encryption();
  maybe_rotate_key();
  if (!sees_majority()) {
    if (!may_allocate() && !lease_lost_logged_) {
      size_t counted = 0, alive = 0;
      for (const auto& [id, m] : members_) {
        if (m.status == gossip::MemberStatus::left) continue;
        ++counted;
        alive += confirmed_alive(id) ? 1 : 0;
      }
      spdlog::error("cluster: lease lost: no majority of the cluster in sight for {} s ({} of {} members); this "
                    "node hands out no address until it sees a majority again (the others reclaim its blocks "
                    "after {} s). If the others are gone for good: `swarmnetctl cluster force-new-cluster`",
                    lease().count(), alive, counted, options_.reclaim_after.count());
      lease_lost_logged_ = true;
    }
    return;
  }
  if (lease_lost_logged_) spdlog::info("cluster: a majority is in sight again: addresses are handed out again");
  lease_lost_logged_ = false;
  last_majority_ = now;
  // The saved time may lag behind (a restart then finds a shorter lease,
  // never a longer one); a tenth of the lease bounds the loss.
  const auto save_every = std::clamp<std::chrono::steady_clock::duration>(lease() / 10, 1s, 60s);
  if (!saved_majority_ || now - *saved_majority_ >= save_every) save();
  // One reclaimer: the alive node with the smallest id among those alive,
  // as all agree on it once membership has converged.
  std::string reclaimer;
  for (const auto& [id, m] : members_) {
    if (is_alive(id)) {
      reclaimer = id;
      break;
    }
  }
  bool forgot = false;
  for (auto it = gone_since_.begin(); it != gone_since_.end();) {
    if (now - it->second < options_.reclaim_after) {
      ++it;
      continue;
    }
    // Gone past the reclaim time while a majority is in sight: gone for
    // good; it stops counting towards a majority (saved, it would count
    // forever). It counts again if it comes back. A minority never gets
    // here, so it cannot make itself a majority by forgetting.
    if (auto m = members_.find(it->first);
        m != members_.end() && m->second.status != gossip::MemberStatus::alive &&
        m->second.status != gossip::MemberStatus::suspect) {
      spdlog::info("cluster: node {} ({}) gone for {} s: no longer counted in the cluster's majority",
                   m->second.name, it->first.substr(0, 12), options_.reclaim_after.count());
      members_.erase(m);
      forgot = true;
    }
    if (reclaimer != store_.node_id()) {
      ++it;
      continue;
    }
    controller_.reclaim_from(it->first);
    it = gone_since_.erase(it);
  }
  if (forgot) save();
}

boost::json::value Cluster::remove_node(const std::string& ref) {
  if (!node_) throw Error(Errc::conflict, "this node is not in a cluster");
  if (ref.empty()) throw Error(Errc::invalid_argument, "which node? give its name or id");
  // By name or id (a unique prefix of 4 or more) among the members, or by id
  // among the nodes that still hold endpoints (a member forgotten past the
  // reclaim time is listed by `node ls` as "gone").
  std::set<std::string> ids;
  for (const auto& [id, m] : members_)
    if (m.name == ref || id == ref) ids.insert(id);
  if (ids.empty() && ref.size() >= 4) {
    for (const auto& [id, m] : members_)
      if (id.starts_with(ref)) ids.insert(id);
    for (const auto& [key, e] : store_.endpoints())
      if (!e.deleted && e.value.node.starts_with(ref)) ids.insert(e.value.node);
  }
  if (ids.empty()) throw Error(Errc::not_found, "no node " + ref + " (see `swarmnetctl node ls`)");
  if (ids.size() > 1) throw Error(Errc::invalid_argument, "node " + ref + " is ambiguous: give more of its id");
  const std::string id = *ids.begin();
  const auto m = members_.find(id);
  const std::string name = m != members_.end() ? m->second.name : id.substr(0, 12);
  if (id == store_.node_id()) throw Error(Errc::conflict, "node " + name + " is this node: remove it from another");
  if (is_alive(id))
    throw Error(Errc::conflict, "node " + name + " is alive: only a node that is down can be removed");
  // Only the side that sees a majority may free addresses: a node cut off
  // in a minority cannot tell a dead node from the other side of its cut.
  if (!may_allocate())
    throw Error(Errc::unavailable, "this node does not see a majority of the cluster: remove the node from one that does");
  const size_t released = controller_.release_node(id);
  if (m != members_.end()) {
    members_.erase(m);
    gone_since_.erase(id);
    assumed_alive_until_.erase(id);
    node_records_.erase(id);
    save();
  }
  spdlog::warn("cluster: node {} ({}) removed by the operator: {} endpoint(s) released; if it comes back, its "
               "containers' addresses may be handed out again",
               name, id.substr(0, 12), released);
  return json::object{{"id", id}, {"name", name}, {"released", released}};
}

size_t Cluster::force_new_cluster() {
  if (!node_) throw Error(Errc::conflict, "this node is not in a cluster");
  const auto now = std::chrono::steady_clock::now();
  std::string names;
  size_t dropped = 0;
  for (auto& [id, m] : members_) {
    if (id == store_.node_id() || m.status == gossip::MemberStatus::left || confirmed_alive(id)) continue;
    m.status = gossip::MemberStatus::left;
    assumed_alive_until_.erase(id);
    gone_since_.emplace(id, now);
    names += (names.empty() ? "" : ", ") + m.name;
    ++dropped;
  }
  last_majority_ = now;
  lease_lost_logged_ = false;
  spdlog::error("cluster: FORCE-NEW-CLUSTER by the operator: {} member(s) out of sight dropped from this node's "
                "majority ({}); this node hands out addresses again, and reclaims their blocks after {} s. If any "
                "of them is alive behind a partition, both sides may now hand out the same address",
                dropped, names.empty() ? "none" : names, options_.reclaim_after.count());
  controller_.on_membership_change();
  save();
  return dropped;
}

void Cluster::stop() {
  housekeeping_timer_.reset();
  ++gossip_epoch_;  // what it posted and did not run yet is dropped
  if (node_) node_->stop();
  // A node on the daemon's io_context (ClusterOptions::gossip_thread false)
  // may still have completions queued there that refer to it (and to its
  // keyring): it is destroyed only with the Cluster, after the io_context
  // has stopped.
  if (node_) retired_.push_back(Retired{std::move(keyring_), std::move(node_)});
  node_.reset();
  keyring_.reset();
  members_.clear();
  node_records_.clear();
  self_record_ = NodeRecord{};
  advertise_.reset();
  pools_version_ = 0;
  controller_.ipam().set_address_pools(ipam::default_address_pools());
  controller_.set_membership(nullptr, nullptr, std::nullopt);
  controller_.overlay().sync_underlay_peers();  // out of the cluster: VXLAN from nobody
  sync_encryption();                   // out of the cluster: no SA
}

Cluster::InitResult Cluster::init(Ipv4Address advertise, std::optional<Ipv4Prefix> ingress_subnet,
                                  std::optional<ipam::AddressPools> pools) {
  if (node_) throw Error(Errc::conflict, "this node is already in a cluster; `cluster leave` first");
  InitResult result;
  if (pools) {
    if (auto why = ipam::address_pools_refusal(*pools)) throw Error(Errc::invalid_argument, *why);
    result.warnings = ClusterIpam::check_pools_against_routes(*pools, controller_.overlay().host_routes());
  }
  // Set before the ingress network is made: it may come from them.
  controller_.ipam().set_address_pools(pools.value_or(ipam::default_address_pools()));
  try {
    create_ingress_network(controller_, store_, ingress_subnet, pools.has_value());
  } catch (...) {
    controller_.ipam().set_address_pools(ipam::default_address_pools());
    throw;
  }
  pools_version_ = 1;
  key_created_unix_ = unix_now();
  start(advertise, {gossip::Keyring::generate_key()}, 1, {1}, {}, std::chrono::steady_clock::now());
  spdlog::info("cluster: initialised on {}:{}; default address pools {}", advertise.str(), options_.gossip_port,
               json::serialize(address_pools_json()));
  for (const auto& w : result.warnings) spdlog::warn("cluster: {}", w);
  save();
  result.token = token();
  return result;
}

void Cluster::join(const std::string& token_text, Ipv4Address advertise,
                   std::function<void(std::optional<std::string>)> done) {
  if (node_) throw Error(Errc::conflict, "this node is already in a cluster; `cluster leave` first");
  JoinToken t = JoinToken::parse(token_text);
  // Version 0: the cluster's keyring wins. The lease starts now: the node
  // owns no block yet, and gets one only from a live owner.
  start(advertise, {t.key}, 0, {}, {}, std::chrono::steady_clock::now());
  spdlog::info("cluster: joining through {}", gossip::to_string(t.seed));
  node_->node().join({t.seed}, [this, done = std::move(done)](std::optional<std::string> error) {
    // Not inside the node's callback: stop() destroys the node.
    boost::asio::post(io_, [this, done, error] {
      if (error) {
        spdlog::error("cluster: join failed: {}", *error);
        stop();
        std::remove((state_dir_ + "/" + kSettingsFile).c_str());
      } else {
        spdlog::info("cluster: joined; {} member(s) known", members_.size());
        save();
      }
      done(error);
    });
  });
}

void Cluster::leave(std::function<void()> done) {
  if (!node_) throw Error(Errc::conflict, "this node is not in a cluster");
  node_->node().leave(std::chrono::duration_cast<std::chrono::milliseconds>(kLeaveTimeout),
               [this, done = std::move(done)] {
                 spdlog::info("cluster: left");
                 // Stopping inside the node's own callback would destroy it
                 // mid-call: do it from the event loop.
                 boost::asio::post(io_, [this, done] {
                   stop();
                   std::remove((state_dir_ + "/" + kSettingsFile).c_str());
                   done();
                 });
               });
}

void Cluster::rotate_key() {
  if (!node_) throw Error(Errc::conflict, "this node is not in a cluster");
  auto keys = keyring_->keys();
  if (keys.size() > 1) {
    const auto waiting = unconfirmed_keyring();
    throw Error(Errc::conflict, "a key rotation is under way (keyring version " + std::to_string(keys_version_) +
                                    (waiting.empty() ? ")" : ", waiting for " + comma_list(waiting) + " to confirm it)"));
  }
  const auto fresh = gossip::Keyring::generate_key();
  uint32_t next_generation = 1;
  for (const auto& k : keys) next_generation = std::max(next_generation, key_generations_[k] + 1);
  key_generations_[fresh] = next_generation;
  key_created_unix_ = unix_now();
  // Step 1: everyone learns the new key, still sealing with the old one.
  // advance_rotation takes the next steps.
  keys.push_back(fresh);
  publish_keyring(keys);
  spdlog::info("cluster: key rotation started (new key distributed)");
}

void Cluster::publish_keyring(const std::vector<gossip::Keyring::Key>& keys) {
  json::array a, generations;
  for (const auto& k : keys) {
    a.emplace_back(gossip::Keyring::key_to_base64(k));
    generations.emplace_back(key_generations_[k]);
  }
  json::value ring = json::object{{"version", keys_version_ + 1},
                                  {"keys", std::move(a)},
                                  {"generations", std::move(generations)},
                                  {"created_unix", key_created_unix_}};
  apply_keyring(ring);
  refresh_push_pull_records();
  broadcast(json::object{{"type", "keyring"}, {"keyring", ring}});
}

bool Cluster::is_rotator() const {
  for (const auto& [id, m] : members_) {
    if (confirmed_alive(id)) return id == store_.node_id();
  }
  return false;
}

std::vector<std::string> Cluster::unconfirmed_keyring() const {
  std::vector<std::string> out;
  for (const auto& [id, m] : members_) {
    if (id == store_.node_id() || m.status == gossip::MemberStatus::left) continue;
    auto r = node_records_.find(id);
    if (r != node_records_.end() && r->second.keyring_version >= keys_version_) continue;
    out.push_back((m.name.empty() ? id.substr(0, 12) : m.name) + " (" + std::string(gossip::to_string(m.status)) +
                  ")");
  }
  return out;
}

void Cluster::advance_rotation() {
  auto keys = keyring_->keys();
  if (keys.size() < 2) {
    rotation_waiting_logged_.clear();
    return;
  }
  if (!sees_majority() || !is_rotator()) return;
  if (std::chrono::steady_clock::now() - keyring_taken_at_ < kRotationStep) return;
  // Behind a member: push/pull brings the newer keyring first.
  for (const auto& [id, r] : node_records_) {
    if (members_.count(id) && r.keyring_version > keys_version_) return;
  }
  const auto waiting = unconfirmed_keyring();
  const std::string names = comma_list(waiting);
  if (!waiting.empty()) {
    const int64_t waited = unix_now() - key_created_unix_;
    if (waited < options_.key_rotation_wait.count()) {
      if (waiting != rotation_waiting_logged_) {
        spdlog::info("cluster: key rotation: keyring version {} waits for {} to confirm it ({} s more at most)",
                     keys_version_, names, options_.key_rotation_wait.count() - waited);
        rotation_waiting_logged_ = waiting;
      }
      return;
    }
    spdlog::warn("cluster: key rotation: {} did not confirm keyring version {} within {} s; going on without them. "
                 "A node that holds only retired keys when it comes back must rejoin: {}",
                 names, keys_version_, options_.key_rotation_wait.count(), kRejoinHowTo);
  }
  rotation_waiting_logged_.clear();
  // The same keyring gives the same next step on every node: a rotator that
  // changes midway publishes what the last one would have.
  const auto newest = std::max_element(keys.begin(), keys.end(), [this](const auto& a, const auto& b) {
    return key_generations_[a] < key_generations_[b];
  });
  if (newest != keys.begin()) {
    // Step 2: everyone seals with the new key, and still opens the old.
    std::rotate(keys.begin(), newest, newest + 1);
    publish_keyring(keys);
    spdlog::info("cluster: key rotation: new key is primary");
  } else {
    // Step 3: the old keys are forgotten.
    publish_keyring({keys.front()});
    spdlog::info("cluster: key rotation done: old key retired");
  }
}

std::string Cluster::token() const {
  if (!node_) throw Error(Errc::conflict, "this node is not in a cluster");
  return JoinToken{keyring_->keys().front(), gossip::Address{*advertise_, options_.gossip_port}}.str();
}

json::value Cluster::nodes_json() const {
  json::array a;
  const auto offsets = node_ ? node_->node().clock_offsets() : std::map<gossip::Address, int64_t>{};
  for (const auto& [id, m] : members_) {
    json::object o{{"id", m.id},
                   {"name", m.name},
                   {"address", gossip::to_string(m.addr)},
                   {"status", std::string(gossip::to_string(m.status))},
                   {"self", id == store_.node_id()}};
    if (auto it = offsets.find(m.addr); it != offsets.end()) o["clock_offset_ms"] = it->second;
    // Whether it can carry encrypted networks, as its record says ("unknown":
    // no record heard from it).
    const NodeRecord* r = nullptr;
    if (id == store_.node_id()) {
      r = self_record_.version ? &self_record_ : nullptr;
    } else if (auto it = node_records_.find(id); it != node_records_.end()) {
      r = &it->second;
    }
    o["encryption"] = !r ? "unknown" : r->esp_missing.empty() ? "yes" : "no";
    if (r && !r->esp_missing.empty()) o["encryption_missing"] = r->esp_missing;
    a.push_back(std::move(o));
  }
  // Nodes forgotten past the reclaim time whose endpoints still hold
  // addresses: `node rm` frees them once the node is known to be gone.
  std::map<std::string, size_t> holding;
  for (const auto& [key, e] : store_.endpoints())
    if (!e.deleted && !members_.count(e.value.node) && e.value.owner != api::kOwnerServiceVip)
      ++holding[e.value.node];
  for (const auto& [id, n] : holding) {
    a.push_back(json::object{{"id", id},
                             {"name", ""},
                             {"address", ""},
                             {"status", "gone"},
                             {"endpoints", n},
                             {"self", false}});
  }
  return a;
}

json::value Cluster::status_json() const {
  json::object o{{"active", node_ != nullptr}};
  if (node_) {
    const auto s = node_->node().stats();
    o["advertise"] = advertise_->str() + ":" + std::to_string(options_.gossip_port);
    o["members"] = members_.size();
    o["keys"] = keyring_->keys().size();
    o["keys_version"] = keys_version_;
    if (keyring_->keys().size() > 1) {
      json::array waiting;
      for (const auto& n : unconfirmed_keyring()) waiting.emplace_back(n);
      o["key_rotation"] = json::object{{"waiting_for", std::move(waiting)}};
    }
    o["default_addr_pools"] = address_pools_json();
    json::object held{{"valid", may_allocate()}, {"duration_s", lease().count()}};
    if (last_majority_) {
      held["majority_seen_s_ago"] =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - *last_majority_).count();
    }
    o["lease"] = std::move(held);
    o["stats"] = json::object{{"packets_in", s.packets_in},       {"packets_out", s.packets_out},
                              {"bytes_in", s.bytes_in},           {"bytes_out", s.bytes_out},
                              {"auth_failures", s.auth_failures}, {"decode_failures", s.decode_failures},
                              {"stream_failures", s.stream_failures},
                              {"streams_in", s.streams_in},       {"streams_out", s.streams_out},
                              {"streams_refused", s.streams_refused}, {"stream_batches", s.stream_batches},
                              {"broadcasts_dropped", s.broadcasts_dropped}, {"full_syncs", s.full_syncs}};
  }
  return o;
}

bool Cluster::is_alive(const std::string& node_id) const {
  auto it = members_.find(node_id);
  if (it == members_.end()) return false;
  if (auto a = assumed_alive_until_.find(node_id); a != assumed_alive_until_.end()) {
    return std::chrono::steady_clock::now() < a->second;
  }
  // A suspect is still alive until proven dead: its endpoints stay.
  return it->second.status == gossip::MemberStatus::alive ||
         it->second.status == gossip::MemberStatus::suspect;
}

std::optional<Ipv4Address> Cluster::address_of(const std::string& node_id) const {
  auto it = members_.find(node_id);
  if (it == members_.end()) return std::nullopt;
  return it->second.addr.ip;
}

void Cluster::request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range) {
  if (!node_) return;
  auto now = std::chrono::steady_clock::now();
  auto& last = last_block_request_[network_id + (range ? " " + range->str() : "")];
  if (now - last < kBlockRequestInterval) return;
  last = now;
  spdlog::info("cluster: asking the other nodes for an address block of network {}{}", network_id,
               range ? " in " + range->str() : "");
  broadcast(to_json(BlockRequest{network_id, store_.node_id(), range}));
}

std::vector<Ipv4Address> Cluster::underlay_peers() const {
  const auto now = std::chrono::steady_clock::now();
  std::vector<Ipv4Address> out;
  for (const auto& [id, m] : members_) {
    if (m.status == gossip::MemberStatus::left) continue;
    if (m.status == gossip::MemberStatus::dead) {
      // Reclaimed (here: no longer in gone_since_) or gone long enough to be.
      auto gone = gone_since_.find(id);
      if (gone == gone_since_.end() || now - gone->second >= options_.reclaim_after) continue;
    }
    out.push_back(m.addr.ip);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void Cluster::post_from_gossip(std::function<void()> work) {
  boost::asio::post(io_, [this, epoch = gossip_epoch_.load(), work = std::move(work)] {
    if (epoch == gossip_epoch_.load()) work();
  });
}

void Cluster::on_member_change(const gossip::Member& m) {
  post_from_gossip([this, m] { member_changed(m); });
}

void Cluster::on_user_message(std::span<const uint8_t> data) {
  post_from_gossip([this, bytes = std::vector<uint8_t>(data.begin(), data.end())] { user_message(bytes); });
}

std::vector<uint8_t> Cluster::local_state() {
  return push_pull_.bytes();
}

void Cluster::merge_remote_state(std::span<const uint8_t> data) {
  post_from_gossip([this, bytes = std::vector<uint8_t>(data.begin(), data.end())] { merge_state(bytes); });
}

void Cluster::member_changed(const gossip::Member& m) {
  auto it = members_.find(m.id);
  const bool changed = it == members_.end() || it->second.status != m.status || it->second.addr != m.addr;
  const auto before = it == members_.end() ? std::nullopt : std::optional(it->second.status);
  members_[m.id] = m;
  assumed_alive_until_.erase(m.id);  // gossip has spoken
  if (m.status == gossip::MemberStatus::dead || m.status == gossip::MemberStatus::left) {
    gone_since_.emplace(m.id, std::chrono::steady_clock::now());
  } else {
    gone_since_.erase(m.id);
  }
  if (!changed) return;
  spdlog::info("cluster: node {} ({}, {}) is {}", m.name, m.id.substr(0, 12), gossip::to_string(m.addr),
               gossip::to_string(m.status));
  tell_member_changed(m, before);
  save();  // remembers peers for a restart
}

void Cluster::tell_member_changed(const gossip::Member& m, std::optional<gossip::MemberStatus> before) {
  store_.feed().publish(Change::membership(MemberChange{m.id, m.name, m.addr.ip.str(),
                                                       std::string(gossip::to_string(m.status)),
                                                       before ? std::string(gossip::to_string(*before)) : ""}));
}

std::optional<std::string> Cluster::name_of(const std::string& node_id) const {
  auto it = members_.find(node_id);
  if (it == members_.end()) return std::nullopt;
  return it->second.name;
}

void Cluster::user_message(std::span<const uint8_t> data) {
  auto message = from_bytes(data);
  if (!message) {
    spdlog::warn("cluster: dropped a gossip message that is not a JSON object");
    return;
  }
  handle_message(*message);
}

void Cluster::handle_message(const json::value& message) {
  try {
    const auto& o = message.as_object();
    const std::string type = json_fields::required_string(o, "type");
    if (type == "entries") {
      const json::value* lines = json_fields::find(o, "lines");
      if (!lines || !lines->is_array()) throw Error(Errc::invalid_argument, "entries without lines");
      store_.merge(std::vector<json::value>(lines->as_array().begin(), lines->as_array().end()));
    } else if (type == "block_request") {
      const BlockRequest r = block_request_from_json(o);
      controller_.ipam().donate_block(r.network_id, r.from, r.range);
    } else if (type == "keyring") {
      apply_keyring(o.at("keyring"));
      refresh_push_pull_records();
    } else if (type == "node") {
      apply_node_record(o.at("node"));
      refresh_push_pull_records();
    } else {
      spdlog::debug("cluster: ignoring gossip message of unknown type {}", type);
    }
  } catch (const std::exception& e) {
    spdlog::warn("cluster: dropped a gossip message: {}", e.what());
  }
}

void Cluster::refresh_push_pull_records() {
  json::array nodes;
  if (self_record_.version != 0) nodes.push_back(to_json(self_record_));
  for (const auto& [id, r] : node_records_) nodes.push_back(to_json(r));
  push_pull_.set_records(json::object{
      {"keyring", keyring_json()}, {"address_pools", address_pools_json()}, {"nodes", std::move(nodes)}});
}

void Cluster::merge_state(std::span<const uint8_t> data) {
  auto state = from_bytes(data);
  if (!state) {
    spdlog::warn("cluster: dropped a push/pull state that is not a JSON object");
    return;
  }
  try {
    const auto& o = state->as_object();
    if (const json::value* ring = json_fields::find(o, "keyring")) apply_keyring(*ring);
    if (const json::value* entries = json_fields::find(o, "entries"); entries && entries->is_array()) {
      size_t changed = store_.merge(
          std::vector<json::value>(entries->as_array().begin(), entries->as_array().end()));
      if (changed) spdlog::info("cluster: push/pull brought {} change(s)", changed);
    }
    if (const json::value* pools = json_fields::find(o, "address_pools")) apply_address_pools(*pools);
    if (const json::value* nodes = json_fields::find(o, "nodes"); nodes && nodes->is_array()) {
      for (const auto& r : nodes->as_array()) {
        try {
          apply_node_record(r);
        } catch (const std::exception& e) {
          spdlog::warn("cluster: dropped a node record of a push/pull: {}", e.what());
        }
      }
    }
  } catch (const std::exception& e) {
    spdlog::warn("cluster: dropped a push/pull state: {}", e.what());
  }
  refresh_push_pull_records();
}

json::value Cluster::keyring_json() const {
  json::array a, generations;
  if (keyring_) {
    for (const auto& k : keyring_->keys()) {
      a.emplace_back(gossip::Keyring::key_to_base64(k));
      auto g = key_generations_.find(k);
      generations.emplace_back(g == key_generations_.end() ? 0 : g->second);
    }
  }
  return json::object{{"version", keys_version_},
                      {"keys", std::move(a)},
                      {"generations", std::move(generations)},
                      {"created_unix", key_created_unix_}};
}

void Cluster::assign_generations(const std::vector<gossip::Keyring::Key>& keys, const std::vector<uint32_t>& given) {
  uint32_t next = 1;
  for (const auto& [k, g] : key_generations_) next = std::max(next, g + 1);
  std::map<gossip::Keyring::Key, uint32_t> out;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i < given.size() && given[i] > 0) {
      out[keys[i]] = given[i];
    } else if (auto it = key_generations_.find(keys[i]); it != key_generations_.end()) {
      out[keys[i]] = it->second;
    } else {
      out[keys[i]] = next++;
    }
  }
  key_generations_ = std::move(out);
}

void Cluster::maybe_rotate_key() {
  if (!node_) return;
  advance_rotation();
  if (options_.key_rotation_interval.count() == 0 || keyring_->keys().size() > 1 || !sees_majority()) return;
  // One rotator, as one reclaimer: the alive node with the smallest id.
  if (!is_rotator()) return;
  const int64_t now = unix_now();
  if (key_created_unix_ == 0) key_created_unix_ = now;  // a keyring of an older swarmnetd: its age counts from now
  if (now - key_created_unix_ < options_.key_rotation_interval.count()) return;
  spdlog::info("cluster: the cluster key is {} s old (rotation every {} s): rotating it", now - key_created_unix_,
               options_.key_rotation_interval.count());
  rotate_key();
}

void Cluster::sync_encryption() {
  if (encryption_) {
    bool wanted = false;
    for (const auto& [id, e] : store_.networks()) wanted = wanted || (!e.deleted && e.value.encrypted);
    std::vector<encryption::Peer> peers;
    std::vector<encryption::Generation> generations;
    uint32_t primary = 0;
    if (node_ && advertise_) {
      for (const auto& [id, m] : members_) {
        if (id == store_.node_id() || m.status == gossip::MemberStatus::left) continue;
        encryption::Peer peer{id, m.addr.ip, std::nullopt};
        if (auto r = node_records_.find(id); r != node_records_.end()) peer.confirmed = r->second.esp_inbound;
        peers.push_back(std::move(peer));
      }
      const auto keys = keyring_->keys();
      for (const auto& k : keys) generations.push_back({key_generations_[k], k});
      primary = key_generations_[keys.front()];
    } else {
      wanted = false;
    }
    try {
      encryption_->sync(wanted, store_.node_id(), advertise_.value_or(Ipv4Address()), peers, generations, primary);
      encryption_error_.clear();
    } catch (const std::exception& e) {
      if (encryption_error_ != e.what()) spdlog::error("encryption: {}", e.what());
      encryption_error_ = e.what();
    }
  }
  publish_node_record();
}

void Cluster::publish_node_record() {
  if (!node_) return;
  NodeRecord r = self_record_;
  r.id = store_.node_id();
  // After a failed sync the ESP fields stay as they were: they confirm only
  // what a sync that went through installed. The keyring is confirmed once
  // saved, so that a restart keeps it.
  if (encryption_error_.empty()) {
    r.esp_missing = encryption_ ? encryption_->missing().value_or("") : "this swarmnetd runs without encryption support";
    r.esp_inbound = encryption_ ? encryption_->inbound_generations() : std::vector<uint32_t>{};
  } else if (r.version == 0) {
    return;
  }
  r.keyring_version = saved_keys_version_;
  if (r.version != 0 && r.esp_missing == self_record_.esp_missing && r.esp_inbound == self_record_.esp_inbound &&
      r.keyring_version == self_record_.keyring_version) {
    return;
  }
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  r.version = std::max<uint64_t>(self_record_.version + 1, static_cast<uint64_t>(std::max<int64_t>(now_us, 0)));
  self_record_ = r;
  refresh_push_pull_records();
  broadcast(json::object{{"type", "node"}, {"node", to_json(self_record_)}});
}

void Cluster::apply_node_record(const json::value& value) {
  NodeRecord r;
  from_json(value, r);
  if (r.id == store_.node_id()) return;
  auto it = node_records_.find(r.id);
  if (it != node_records_.end() && it->second.version >= r.version) return;
  const bool inbound_changed = it == node_records_.end() || it->second.esp_inbound != r.esp_inbound;
  spdlog::debug("cluster: node {} says: ESP {}, inbound SAs of key generation(s) {}", r.id.substr(0, 12),
                r.esp_missing.empty() ? "available" : "missing (" + r.esp_missing + ")",
                json::serialize(to_json(r).at("esp_inbound")));
  node_records_[r.id] = std::move(r);
  // A confirmation lets outbound move on now, not at the next housekeeping.
  if (inbound_changed) sync_encryption();
}

void Cluster::apply_keyring(const json::value& ring) {
  if (!keyring_) return;
  const auto& o = json_fields::as_object(ring, "keyring");
  const uint64_t version = json_fields::optional_uint(o, "version", UINT64_MAX).value_or(0);
  if (version <= keys_version_) return;
  std::vector<gossip::Keyring::Key> keys;
  for (const auto& k : json_fields::string_array(o, "keys")) keys.push_back(gossip::Keyring::key_from_base64(k));
  if (keys.empty()) throw Error(Errc::invalid_argument, "keyring without keys");
  const auto keys_before = keyring_->keys();
  const uint64_t version_before = keys_version_;
  std::vector<uint32_t> generations;
  if (const json::value* g = json_fields::find(o, "generations"); g && g->is_array()) {
    for (const auto& n : g->as_array()) {
      generations.push_back(n.is_int64() && n.as_int64() > 0 && n.as_int64() <= UINT32_MAX
                                ? static_cast<uint32_t>(n.as_int64())
                                : 0);
    }
  }
  assign_generations(keys, generations);
  key_created_unix_ = static_cast<int64_t>(json_fields::optional_uint(o, "created_unix", INT64_MAX).value_or(0));
  for (const auto& k : keys) keyring_->add_key(k);
  keyring_->use_key(keys.front());
  for (const auto& k : keyring_->keys()) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keyring_->remove_key(k);
  }
  keys_version_ = version;
  keyring_taken_at_ = std::chrono::steady_clock::now();
  spdlog::info("cluster: keyring version {} ({} key(s), primary generation {})", version, keys.size(),
               key_generations_[keys.front()]);
  save();
  // Version 0: a joining node learning the cluster's keyring, no rotation.
  if (observer_.keyring_changed && version_before > 0) {
    const char* step = keys_before.empty() || keys.front() != keys_before.front() ? "primary"
                       : keys.size() < keys_before.size()                           ? "retire"
                                                                                    : "distribute";
    observer_.keyring_changed(version, keys.size(), step);
  }
  sync_encryption();
}

json::value Cluster::address_pools_json() const {
  const ipam::AddressPools& current = controller_.ipam().address_pools();
  json::array pools;
  for (const auto& p : current.pools) pools.emplace_back(p.str());
  return json::object{{"version", pools_version_}, {"pools", std::move(pools)}, {"mask_length", current.mask_length}};
}

void Cluster::apply_address_pools(const json::value& value) {
  const auto& o = json_fields::as_object(value, "address_pools");
  const uint64_t version = json_fields::optional_uint(o, "version", UINT64_MAX).value_or(0);
  if (version <= pools_version_) return;
  ipam::AddressPools pools;
  for (const auto& p : json_fields::string_array(o, "pools")) pools.pools.push_back(Ipv4Prefix::parse(p));
  pools.mask_length = static_cast<unsigned>(json_fields::optional_uint(o, "mask_length", 32).value_or(0));
  if (auto why = ipam::address_pools_refusal(pools)) throw Error(Errc::invalid_argument, "address pools: " + *why);
  pools_version_ = version;
  controller_.ipam().set_address_pools(std::move(pools));
  spdlog::info("cluster: default address pools {}", json::serialize(address_pools_json()));
  save();
}

void Cluster::broadcast(const json::value& message) {
  if (node_) node_->node().broadcast(to_bytes(message));
}

void Cluster::save() {
  if (!node_) return;
  json::array keys;
  for (const auto& k : keyring_->keys()) keys.emplace_back(gossip::Keyring::key_to_base64(k));
  json::array peers;
  for (const auto& [id, m] : members_) {
    if (id != store_.node_id() && m.status != gossip::MemberStatus::left) {
      peers.emplace_back(gossip::to_string(m.addr));
    }
  }
  // Every member, dead ones too: a node restarted while cut off must still
  // count them, or it would be a majority of one.
  json::array members;
  for (const auto& [id, m] : members_) {
    if (id != store_.node_id()) {
      members.push_back(json::object{{"id", m.id},
                                     {"name", m.name},
                                     {"address", gossip::to_string(m.addr)},
                                     {"status", std::string(gossip::to_string(m.status))}});
    }
  }
  json::array generations;
  for (const auto& k : keyring_->keys()) generations.emplace_back(key_generations_[k]);
  json::object o{{"advertise", advertise_->str()},
                 {"keys", std::move(keys)},
                 {"keys_version", keys_version_},
                 {"key_generations", std::move(generations)},
                 {"key_created_unix", key_created_unix_},
                 {"peers", std::move(peers)},
                 {"members", std::move(members)}};
  // 0: the lease had run out. Otherwise rounded towards the past: a restart
  // finds the lease shorter, never longer.
  int64_t last_majority_unix = 0;
  if (last_majority_) {
    const auto age = std::chrono::ceil<std::chrono::seconds>(std::chrono::steady_clock::now() - *last_majority_);
    last_majority_unix = std::max<int64_t>(1, unix_now() - age.count());
  }
  o["last_majority_unix"] = last_majority_unix;
  if (pools_version_ > 0) o["address_pools"] = address_pools_json();
  write_file_atomically(state_dir_, kSettingsFile, json::serialize(o) + "\n");
  saved_majority_ = last_majority_;
  saved_keys_version_ = keys_version_;
}

}  // namespace swarmnet::daemon
