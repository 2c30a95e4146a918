#include "daemon/read_model.hpp"

#include "common/api.hpp"
#include "daemon/store.hpp"

namespace swarmnet::daemon {

const ReadModel::Keys& ReadModel::get(const std::map<std::string, Keys>& m, const std::string& k) {
  static const Keys none;
  auto it = m.find(k);
  return it == m.end() ? none : it->second;
}

void ReadModel::unlink(std::map<std::string, Keys>& m, const std::string& k, std::string_view key) {
  auto it = m.find(k);
  if (it == m.end()) return;
  it->second.erase(key);
  if (it->second.empty()) m.erase(it);  // no empty sets left behind by churn
}

void ReadModel::endpoint_changed(const std::string& key, const EndpointRecord* before, const EndpointRecord* after) {
  auto each = [&](const EndpointRecord& e, auto&& op) {
    if (!e.service.empty()) op(by_service_, e.service);
    // A node's own address on a network follows the containers; it is none.
    if (e.attach && e.owner != api::kOwnerNode) op(e.node == node_id_ ? local_attached_ : remote_containers_, e.network_id);
    if (auto vip = e.labels.find(kVipLabel); vip != e.labels.end()) op(vips_of_, vip->second);
  };
  if (before) {
    each(*before, [&](auto& m, const std::string& k) { unlink(m, k, key); });
    auto held = holders_.find(holder_key(before->network_id, before->ip));
    if (held != holders_.end() && --held->second == 0) holders_.erase(held);
  }
  if (after) {
    each(*after, [&](auto& m, const std::string& k) { m[k].insert(key); });
    ++holders_[holder_key(after->network_id, after->ip)];
  }
}

EndpointKeys::const_iterator::const_iterator(const EndpointKeys* keys) : keys_(keys) {
  const Table& t = *keys->table_;
  if (keys->of_ == Of::network) {
    // One network: its keys are those that begin with its id and the separator.
    it_ = t.lower_bound(keys->id_ + kKeySeparator);
    range_end_ = t.lower_bound(keys->id_ + kPastSeparator);
    next_network_ = t.end();
  } else {
    // One node: a range in each network's part of the table, found in turn.
    it_ = range_end_ = t.begin();
    next_network_ = t.begin();
  }
  settle();
}

void EndpointKeys::const_iterator::settle() {
  const Table& t = *keys_->table_;
  for (;;) {
    while (it_ != range_end_ && !keys_->asked(it_->second)) ++it_;
    if (it_ != range_end_) return;
    if (next_network_ == t.end()) {
      it_ = t.end();  // what end() is, so the two compare equal
      return;
    }
    enter_network(next_network_);
  }
}

void EndpointKeys::const_iterator::enter_network(Table::const_iterator at) {
  const Table& t = *keys_->table_;
  const std::string_view key = at->first;
  const std::string network(key.substr(0, key.find(kKeySeparator)));
  const std::string prefix = network + kKeySeparator + keys_->id_;
  it_ = t.lower_bound(prefix + kKeySeparator);
  range_end_ = t.lower_bound(prefix + kPastSeparator);
  // Past every key of this network (each is greater than `at`'s: no loop).
  next_network_ = t.lower_bound(network + kPastSeparator);
}

uint64_t ReadModel::holder_key(const std::string& network_id, Ipv4Address ip) {
  return (std::hash<std::string>{}(network_id) & 0xffffffff00000000u) | ip.value();
}

uint32_t ReadModel::holders(const std::string& network_id, Ipv4Address ip) const {
  auto it = holders_.find(holder_key(network_id, ip));
  return it == holders_.end() ? 0 : it->second;
}

void ReadModel::service_changed(const std::string& id, const ServiceRecord* before, const ServiceRecord* after) {
  if (before) {
    for (const auto& n : before->networks) unlink(services_on_, n, id);
    unlink(service_by_name_, before->name, id);
  }
  if (after) {
    for (const auto& n : after->networks) services_on_[n].insert(id);
    service_by_name_[after->name].insert(id);
  }
}

std::string ReadModel::service_named(const std::string& name) const {
  const Keys& ids = get(service_by_name_, name);
  return ids.empty() ? std::string() : *ids.begin();
}

bool is_healthy_task(const EndpointRecord& e, const Liveness& alive) {
  return !e.service.empty() && e.attach && e.healthy && alive(e.node);
}

std::vector<const EndpointRecord*> healthy_tasks(const Store& store, const std::string& service_name,
                                                 const std::string& network_id, const Liveness& alive) {
  std::vector<const EndpointRecord*> out;
  for (const std::string& key : store.index().endpoints_of_service(service_name)) {
    const EndpointRecord* e = store.find_endpoint(key);
    if (!e || e->network_id != network_id || !is_healthy_task(*e, alive)) continue;
    out.push_back(e);
  }
  return out;
}

}  // namespace swarmnet::daemon
