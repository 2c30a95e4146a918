#include "daemon/load_balancing.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "common/error.hpp"
#include "common/log.hpp"
#include "daemon/services.hpp"
#include "lb/vip_addresses.hpp"

namespace swarmnet::daemon {

namespace {
std::string vip_key(const ServiceRecord& s, const std::string& network_id) {
  // At most 63 characters (balancer.hpp): 16 + 1 + 32 at most.
  return s.id.substr(0, 16) + "/" + network_id.substr(0, 32);
}
}  // namespace

LoadBalancing::LoadBalancing(Store& store, Controller& controller, lb::Balancer& balancer, NodeAddressKernel kernel)
    : store_(store),
      controller_(controller),
      alive_([&controller](const std::string& node) { return controller.is_alive(node); }),
      balancer_(balancer),
      node_address_kernel_(std::move(kernel)) {
  if (!node_address_kernel_) {
    node_address_kernel_ = [this](const std::string& bridge, const std::optional<NodeAddress>& address) {
      if (!nl_) nl_ = std::make_unique<kernel::NetlinkSocket>(kernel::NetlinkSocket::open());
      if (!nft_) nft_ = std::make_unique<kernel::NftContext>();
      if (address) lb::ensure_node_address(*nl_, bridge, address->ip, address->mac);
      set_node_address_element(bridge, address ? std::optional(address->ip) : std::nullopt);
    };
  }
  for (const auto& [key, e] : store_.endpoints()) {
    if (!e.deleted && !e.value.service.empty()) service_of_[KeyDigest::of(key)] = e.value.service;
  }
  subscription_ = store_.feed().subscribe(Stage::load_balancing, [this](const Change& c) { on_change(c); });
}

LoadBalancing::~LoadBalancing() = default;

// The VIP lives on the network's bridge: only while this host has one (a
// local container on the network) is there a VIP to program.
std::optional<lb::VirtualIp> LoadBalancing::vip_of(const ServiceRecord& s, const std::string& network_id) const {
  auto vip = s.vips.find(network_id);
  if (s.mode != ServiceMode::vip || vip == s.vips.end()) return std::nullopt;
  if (store_.index().local_attachments(network_id).empty()) return std::nullopt;
  lb::VirtualIp v;
  v.key = vip_key(s, network_id);
  v.vip = vip->second;
  v.bridge = bridge_name(network_id);
  for (const EndpointRecord* task : healthy_tasks(store_, s.name, network_id, alive_)) v.backends.push_back(task->ip);
  std::sort(v.backends.begin(), v.backends.end());
  v.backends.erase(std::unique(v.backends.begin(), v.backends.end()), v.backends.end());
  return v;
}

std::vector<lb::VirtualIp> LoadBalancing::intended() const {
  std::vector<lb::VirtualIp> out;
  for (const auto& [id, e] : store_.services()) {
    if (e.deleted) continue;
    for (const auto& network_id : e.value.networks)
      if (auto v = vip_of(e.value, network_id)) out.push_back(*v);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  return out;
}

void LoadBalancing::program(const std::string& key, const std::optional<lb::VirtualIp>& want) {
  auto it = programmed_.find(key);
  // Times one call into the balancer, failed or not.
  auto timed = [this](const char* operation, auto&& call) {
    const auto start = std::chrono::steady_clock::now();
    auto report = [&](bool failed) {
      if (observer_)
        observer_(operation, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), failed);
    };
    try {
      call();
    } catch (...) {
      report(true);
      throw;
    }
    report(false);
  };
  if (want) {
    if (it != programmed_.end() && it->second == *want) return;
    timed("upsert", [&] { balancer_.upsert(*want); });
    spdlog::info("lb: VIP {} on {}: {} backend(s)", want->vip.str(), want->bridge, want->backends.size());
    programmed_[key] = *want;
  } else if (it != programmed_.end()) {
    timed("remove", [&] { balancer_.remove(key); });
    spdlog::info("lb: VIP {} removed", it->second.vip.str());
    programmed_.erase(it);
  }
}

void LoadBalancing::update_service(const ServiceRecord& s) {
  for (const auto& network_id : s.networks) program(vip_key(s, network_id), vip_of(s, network_id));
}

void LoadBalancing::update_services_on(const std::string& network_id) {
  for (const std::string& id : store_.index().services_on_network(network_id)) {
    if (const ServiceRecord* s = store_.find_service(id)) update_service(*s);
  }
}

void LoadBalancing::update_services_of_node(const std::string& node_id) {
  std::set<std::string> names;
  for (const std::string& key : store_.index().endpoints_of_node(node_id)) {
    if (const EndpointRecord* e = store_.find_endpoint(key); e && !e->service.empty()) names.insert(e->service);
  }
  for (const std::string& name : names) update_services_named(name);
}

void LoadBalancing::update_services_named(const std::string& name) {
  if (name.empty()) return;
  for (const std::string& id : store_.index().services_named(name)) {
    if (const ServiceRecord* s = store_.find_service(id)) update_service(*s);
  }
}

void LoadBalancing::on_change(const Change& c) {
  const std::string& key = c.key;
  try {
    if (c.kind == Change::Kind::membership) {
      // A node died or came back: its tasks leave or rejoin their VIPs. A
      // change of the whole membership (joined or left a cluster) may move
      // any of them.
      if (c.member) {
        update_services_of_node(c.member->id);
      } else {
        for (const auto& [id, e] : store_.services())
          if (!e.deleted) update_service(e.value);
      }
    } else if (c.table == TableId::services) {
      auto it = store_.services().find(key);
      if (it == store_.services().end()) return;
      const ServiceRecord& s = it->second.value;  // a tombstone keeps its last value
      if (it->second.deleted) {
        for (const auto& network_id : s.networks) program(vip_key(s, network_id), std::nullopt);
      } else {
        // Networks the service left (an update) lose its VIP here too.
        std::vector<std::string> stale;
        const std::string prefix = s.id.substr(0, 16) + "/";
        for (const auto& [k, v] : programmed_)
          if (k.rfind(prefix, 0) == 0) stale.push_back(k);
        for (const auto& k : stale) {
          bool kept = std::any_of(s.networks.begin(), s.networks.end(),
                                  [&](const std::string& n) { return vip_key(s, n) == k; });
          if (!kept) program(k, std::nullopt);
        }
        update_service(s);
      }
    } else if (c.table == TableId::endpoints) {
      auto it = store_.endpoints().find(key);
      if (it == store_.endpoints().end()) return;
      const EndpointRecord& e = it->second.value;
      if (is_vip_endpoint(e)) return;
      // The service the endpoint was a task of until now: an attach or
      // detach (here or on another host) moves it, and the service it left
      // must drop it as well as the new one take it.
      std::string before;
      const KeyDigest digest = KeyDigest::of(key);
      if (auto was = service_of_.find(digest); was != service_of_.end()) before = was->second;
      const std::string now = it->second.deleted ? "" : e.service;
      if (now.empty()) {
        service_of_.erase(digest);
      } else {
        service_of_[digest] = now;
      }
      // Any endpoint may bring this node's own address (the first local
      // container, the first on another node) or end it (the last local one).
      if (e.attach && e.owner != api::kOwnerNode) sync_node_address(e.network_id);
      // The first local container of a network brings its bridge here, the
      // last one takes it away: every VIP of the network follows. Any other
      // change moves only the services the endpoint leaves and joins.
      // (With none left, each VIP of the network is only dropped: cheap.)
      // The node's own address comes and goes with the containers.
      const size_t local_now = store_.index().local_attachments(e.network_id).size();
      const bool live_container = !it->second.deleted && e.attach;
      if (e.node == store_.node_id() && e.owner != api::kOwnerNode &&
          (local_now == 0 || (local_now == 1 && live_container))) {
        update_services_on(e.network_id);
      } else {
        update_services_named(before);
        if (e.service != before) update_services_named(e.service);
      }
    }
  } catch (const std::exception& ex) {
    spdlog::error("lb: applying {} {}: {}", c.kind == Change::Kind::membership ? "membership" : table_name(c.table), key,
                  ex.what());
  }
}

void LoadBalancing::sync_node_address(const std::string& network_id) {
  const NetworkRecord* n = store_.find_network(network_id);
  if (!n) return;
  const NetworkRecord network = *n;
  const std::string& me = store_.node_id();
  const bool local = !store_.index().local_attachments(network_id).empty();
  const bool remote = !store_.index().remote_containers(network_id).empty();
  const std::string key = endpoint_key(network_id, me, kNodeContainerId, kNodeIfname);
  const EndpointRecord* have = store_.find_endpoint(key);
  const bool wanted = local && network.carries_containers();
  if (!have && (!wanted || !remote)) return;
  const std::string bridge = bridge_name(network_id);
  // Its own endpoint's change, written here, reaches on_change only after
  // this (change_feed.hpp), and is skipped there (owner node).
  try {
    if (!wanted) {
      node_addresses_.erase(network_id);
      node_address_kernel_(bridge, std::nullopt);
      controller_.release_endpoint(key);  // the bridge goes with the network
      spdlog::info("lb: network {} left this node: its node address released", network.name);
    } else {
      if (!have) {
        api::EndpointCreate req;
        req.container_id = kNodeContainerId;
        req.ifname = kNodeIfname;
        req.netns = "(this node)";
        req.owner = api::kOwnerNode;
        controller_.create_endpoint(network.name, req);
        have = store_.find_endpoint(key);
        if (!have) throw Error(Errc::internal, "the node's endpoint vanished");
        spdlog::info("lb: network {}: this node's own address {}", network.name, have->ip.str());
      }
      // Once per address: this runs for every change of the network's endpoints.
      if (auto it = node_addresses_.find(network_id); it == node_addresses_.end() || it->second != have->ip) {
        node_address_kernel_(bridge, NodeAddress{have->ip, have->mac()});
        node_addresses_[network_id] = have->ip;
      }
    }
  } catch (const BlockNeeded& e) {
    controller_.request_block(e);  // the blocks' change brings an endpoint change later
  } catch (const std::exception& e) {
    spdlog::error("lb: network {}: this node's own address: {}", network.name, e.what());
  }
}

void LoadBalancing::set_node_address_element(const std::string& bridge, std::optional<Ipv4Address> address) {
  const std::string map = "inet swarmnet node-addresses";
  const std::string key = "\"" + bridge + "\"";
  if (address) {
    const std::string add = "add element " + map + " { " + key + " : " + address->str() + " }\n";
    try {
      nft_->run(add);
    } catch (const Error& e) {
      if (e.code() != Errc::conflict) throw;
      nft_->run("delete element " + map + " { " + key + " }\n" + add);  // another address before
    }
    return;
  }
  try {
    nft_->run("delete element " + map + " { " + key + " }\n");
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
  }
}

void LoadBalancing::resync() {
  // The node addresses written below reach the feed's subscribers (this
  // class among them) once the balancer holds the VIPs.
  auto hold = store_.feed().hold();
  for (const auto& [id, e] : store_.networks()) {
    if (!e.deleted) sync_node_address(id);
  }
  auto all = intended();
  balancer_.sync(all);
  programmed_.clear();
  for (auto& v : all) programmed_[v.key] = v;
  spdlog::info("lb: {} balancer holds {} VIP(s)", balancer_.name(), all.size());
}

std::string LoadBalancing::check() { return lb::describe_differences(intended(), balancer_.read_kernel_state()); }

std::unique_ptr<lb::Balancer> choose_balancer(const std::string& wanted) {
  if (wanted == "nftables") {
    spdlog::info("lb: nftables balancer (--lb-backend nftables)");
    return lb::make_nftables_balancer();
  }
  if (wanted == "ipvs") {
    if (!lb::ipvs_available()) {
      throw Error(Errc::unavailable, "--lb-backend ipvs: this kernel has no IPVS (ip_vs module); use nftables or auto");
    }
    spdlog::info("lb: IPVS balancer (--lb-backend ipvs)");
    return lb::make_ipvs_balancer();
  }
  if (wanted != "auto") throw Error(Errc::invalid_argument, "--lb-backend: auto, ipvs or nftables, not " + wanted);
  if (lb::ipvs_available()) {
    spdlog::info("lb: the kernel has IPVS: IPVS balancer (--lb-backend auto)");
    return lb::make_ipvs_balancer();
  }
  spdlog::info("lb: the kernel has no IPVS: nftables balancer (--lb-backend auto)");
  return lb::make_nftables_balancer();
}

}  // namespace swarmnet::daemon
