#include "daemon/events.hpp"

#include <algorithm>
#include <array>
#include <chrono>

#include "daemon/ingress/ingress.hpp"

namespace swarmnet::daemon {

namespace {

int64_t now_nano() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The attributes of a table's events that name other entries (see
// StateEvents::Seen), at most two.
std::array<const char*, 2> naming_attributes(TableId table) {
  switch (table) {
    case TableId::endpoints:
      return {"network", "node"};
    case TableId::services:
      return {"networks", "vips"};
    default:
      return {nullptr, nullptr};
  }
}

// The table -> the event type.
const char* event_type(TableId table) {
  switch (table) {
    case TableId::networks:
      return "network";
    case TableId::endpoints:
      return "endpoint";
    case TableId::services:
      return "service";
    default:
      return nullptr;  // blocks and cursors: bookkeeping of the IPAM, not shown
  }
}

}  // namespace

// ---- EventBus ----

std::string EventBus::Subscription::take() {
  std::string out;
  out.swap(pending_);
  count_ = 0;
  return out;
}

std::shared_ptr<EventBus::Subscription> EventBus::subscribe(EventFilter filter, std::function<void()> wake) {
  auto s = std::make_shared<Subscription>();
  s->filter_ = std::move(filter);
  s->wake_ = std::move(wake);
  subscribers_.push_back(s);
  return s;
}

size_t EventBus::subscribers() {
  std::erase_if(subscribers_, [](const auto& w) { return w.expired(); });
  return subscribers_.size();
}

void EventBus::publish(Event event) {
  if (event.time_nano == 0) event.time_nano = now_nano();
  std::string line;  // serialized once, for the first subscriber that wants it
  std::erase_if(subscribers_, [](const auto& w) { return w.expired(); });
  // A wake callback may subscribe or unsubscribe: wake after the loop.
  std::vector<std::shared_ptr<Subscription>> woken;
  for (const auto& weak : subscribers_) {
    auto s = weak.lock();
    if (!s || s->lost_ || !s->filter_.matches(event)) continue;
    if (s->count_ >= queue_limit_) {
      Event lost{event.time_nano, "events", "lost", "",
                 {{"reason", "this subscriber fell " + std::to_string(queue_limit_) +
                                 " events behind; events after this one were not sent to it"}}};
      s->pending_ += boost::json::serialize(to_json(lost)) + "\n";
      s->lost_ = true;
    } else {
      if (line.empty()) line = boost::json::serialize(to_json(event)) + "\n";
      s->pending_ += line;
      ++s->count_;
    }
    woken.push_back(std::move(s));
  }
  for (const auto& s : woken) {
    if (s->wake_) s->wake_();
  }
}

// ---- StateEvents ----

StateEvents::StateEvents(Store& store, EventBus& bus) : store_(store), bus_(bus) {
  auto remember = [&](TableId table, const auto& t) {
    for (const auto& [key, e] : t) {
      if (e.deleted) continue;
      if (auto now = describe(table, key)) seen_[table][KeyDigest::of(key)] = seen_of(table, *now);
    }
  };
  remember(TableId::networks, store_.networks());
  remember(TableId::endpoints, store_.endpoints());
  remember(TableId::services, store_.services());
  subscription_ = store_.feed().subscribe(Stage::observers, [this](const Change& c) {
    if (c.kind == Change::Kind::entry) {
      on_change(c.table, c.key);
    } else if (c.member) {
      member_changed(c.member->id, c.member->name, c.member->address, c.member->status, c.member->before);
    }
  });
}

StateEvents::~StateEvents() = default;

namespace {

// The entry at `key` of `table`, live or (with `tombstone`) deleted; null
// when there is none.
template <class T>
const T* entry_value(const Table<T>& table, const std::string& key, bool tombstone) {
  auto it = table.find(key);
  if (it == table.end() || (it->second.deleted && !tombstone)) return nullptr;
  return &it->second.value;
}

}  // namespace

std::string StateEvents::node_name(const std::string& node_id) const {
  if (node_names_) {
    if (auto name = node_names_(node_id); name && !name->empty()) return *name;
  }
  return node_id.substr(0, 12);
}

std::string StateEvents::network_name(const std::string& network_id) const {
  // A removed network's tombstone keeps its name.
  if (const NetworkRecord* n = entry_value(store_.networks(), network_id, true); n && !n->name.empty()) return n->name;
  return network_id.substr(0, 12);
}

std::optional<StateEvents::Described> StateEvents::describe(TableId table, const std::string& key,
                                                             bool tombstone) const {
  Described s;
  if (table == TableId::networks) {
    const NetworkRecord* n = entry_value(store_.networks(), key, tombstone);
    if (!n) return std::nullopt;
    s.id = n->id;
    s.attributes = {{"name", n->name}, {"subnet", n->subnet.str()}, {"vni", std::to_string(n->vni)}};
    if (n->internal) s.attributes["internal"] = "true";
    if (is_ingress_network(*n)) s.attributes["ingress"] = "true";
  } else if (table == TableId::endpoints) {
    const EndpointRecord* e = entry_value(store_.endpoints(), key, tombstone);
    if (!e) return std::nullopt;
    s.id = e->id.empty() ? key : e->id;
    s.healthy = e->healthy;
    s.attributes = {{"network", network_name(e->network_id)},
                    {"container", e->container_id},
                    {"ip", e->ip.str()},
                    {"node", node_name(e->node)}};
    if (!e->name.empty()) s.attributes["name"] = e->name;
    if (!e->service.empty()) s.attributes["service"] = e->service;
    if (!e->owner.empty()) s.attributes["owner"] = e->owner;
  } else if (table == TableId::services) {
    const ServiceRecord* r = entry_value(store_.services(), key, tombstone);
    if (!r) return std::nullopt;
    s.id = r->id;
    s.attributes = {{"name", r->name}, {"mode", r->mode == ServiceMode::dnsrr ? "dnsrr" : "vip"}};
    std::string networks, vips, ports;
    for (const auto& id : r->networks) networks += (networks.empty() ? "" : ",") + network_name(id);
    for (const auto& [id, ip] : r->vips) vips += (vips.empty() ? "" : ",") + network_name(id) + "=" + ip.str();
    for (const auto& p : r->ports) {
      ports += (ports.empty() ? "" : ",") +
               (p.publish_mode.empty() ? "" : p.publish_mode + ":" + std::to_string(p.published) + "->") +
               std::to_string(p.target) + "/" + p.protocol;
    }
    s.attributes["networks"] = networks;
    if (!vips.empty()) s.attributes["vips"] = vips;
    if (!ports.empty()) s.attributes["ports"] = ports;
  } else {
    return std::nullopt;
  }
  return s;
}

void StateEvents::on_change(TableId table, const std::string& key) {
  const char* type = event_type(table);
  if (!type) return;
  auto now = describe(table, key);
  auto& seen = seen_[table];
  const KeyDigest digest = KeyDigest::of(key);
  auto before = seen.find(digest);
  if (now && before == seen.end()) {
    bus_.publish(Event{0, type, "create", now->id, now->attributes});
    seen.emplace(digest, seen_of(table, *now));
  } else if (!now && before != seen.end()) {
    // Described by its tombstone's last value (the one merged last: a batch
    // with an update and then the deletion shows only the removal), with
    // the names of other entries as they were last seen. Should the
    // tombstone be gone already (reaped during this delivery, its deletion
    // older than the tombstones' lifetime), the removal is still told,
    // identified by its key.
    Described was = describe(table, key, true).value_or(Described{{}, key, true});
    const auto naming = naming_attributes(table);
    for (size_t i = 0; i < naming.size(); ++i) {
      if (!naming[i]) continue;
      if (before->second.names[i].empty()) {
        was.attributes.erase(naming[i]);
      } else {
        was.attributes[naming[i]] = before->second.names[i].str();
      }
    }
    bus_.publish(Event{0, type, "remove", was.id, std::move(was.attributes)});
    seen.erase(before);
  } else if (now) {
    Seen seen_now = seen_of(table, *now);
    if (now->healthy != before->second.healthy) {
      auto attributes = now->attributes;
      attributes["health"] = now->healthy ? "healthy" : "unhealthy";
      bus_.publish(Event{0, type, "health_status", now->id, std::move(attributes)});
    }
    if (seen_now.attributes != before->second.attributes) {
      bus_.publish(Event{0, type, "update", now->id, now->attributes});
    }
    before->second = std::move(seen_now);
  }
}

namespace {

// Strings as a LEB128 length and the bytes: any byte may occur in them, and
// no two different lists of strings pack alike.
void put_string(std::string& out, std::string_view s) {
  size_t n = s.size();
  do {
    uint8_t b = n & 0x7f;
    n >>= 7;
    out += static_cast<char>(n ? b | 0x80 : b);
  } while (n);
  out += s;
}

}  // namespace

StateEvents::Seen StateEvents::seen_of(TableId table, const Described& d) {
  // The id is not part of it: an entry's id never changes without its key.
  std::string packed;
  for (const auto& [k, v] : d.attributes) {
    put_string(packed, k);
    put_string(packed, v);
  }
  Seen seen{KeyDigest::of(packed), d.healthy, {}};
  const auto naming = naming_attributes(table);
  for (size_t i = 0; i < naming.size(); ++i) {
    if (!naming[i]) continue;
    if (auto it = d.attributes.find(naming[i]); it != d.attributes.end()) seen.names[i] = it->second;
  }
  return seen;
}

void StateEvents::member_changed(const std::string& id, const std::string& name, const std::string& address,
                                 const std::string& status, const std::string& before) {
  std::string action;
  if (status == "alive") {
    action = before.empty() || before == "left" ? "join" : before == "alive" ? "update" : "alive";
  } else if (status == "suspect") {
    action = "suspect";
  } else if (status == "dead") {
    action = "die";
  } else if (status == "left") {
    action = "leave";
  } else {
    action = status;
  }
  if (status == before) action = "update";  // its address changed
  bus_.publish(Event{0, "node", action, id, {{"name", name}, {"address", address}, {"status", status}}});
}

void StateEvents::keyring_changed(uint64_t version, size_t keys, const std::string& step) {
  bus_.publish(Event{0,
                     "cluster",
                     "key_rotate",
                     "",
                     {{"version", std::to_string(version)}, {"keys", std::to_string(keys)}, {"step", step}}});
}

}  // namespace swarmnet::daemon
