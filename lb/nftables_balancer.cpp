// The nftables Balancer: plans (nft_plan) sent as netlink batches
// (nft_netlink), plus the VIPs' local routes (vip_addresses).
//
// It keeps what it last read from or wrote to the kernel (the table's
// VIPs and mod-N chains), so an update is one batch with no read before
// it: the table is read once, at the first call, and again after any
// failed batch (someone changed the table behind our back) before one
// retry. read_kernel_state() and sync() always read the kernel.
//
// A backend that leaves a VIP also leaves its UDP flows: their conntrack
// entries are deleted (lb/stale_flows.hpp, just after the change), so a
// client that keeps its source port fails over like a new one.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <set>

#include "common/error.hpp"
#include "kernel/netlink.hpp"
#include "lb/balancer.hpp"
#include "lb/nft_netlink.hpp"
#include "lb/nft_plan.hpp"
#include "lb/stale_flows.hpp"
#include "lb/vip_addresses.hpp"

namespace swarmnet::lb {
namespace {

// Checks what the daemon sends and puts the backends in bucket order
// (sorted, no duplicates), so a plan never half-applies on bad input.
VirtualIp checked(const VirtualIp& in) {
  nft::check_key(in.key);
  if (in.bridge.empty() || in.bridge.size() > 15 || in.bridge.find(' ') != std::string::npos) {
    throw Error(Errc::invalid_argument,
                "VIP " + in.key + ": invalid bridge name \"" + in.bridge + "\"");
  }
  VirtualIp out = in;
  std::sort(out.backends.begin(), out.backends.end());
  out.backends.erase(std::unique(out.backends.begin(), out.backends.end()), out.backends.end());
  return out;
}

// The backends a VIP holds in the kernel, sorted.
std::vector<Ipv4Address> backends_of(const nft::KernelVip& vip) {
  std::vector<Ipv4Address> out;
  for (const auto& [bucket, backend] : vip.elements) out.push_back(backend);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Those of `before` that are not in `after` (both sorted).
std::vector<Ipv4Address> left(const std::vector<Ipv4Address>& before,
                              const std::vector<Ipv4Address>& after) {
  std::vector<Ipv4Address> out;
  std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                      std::back_inserter(out));
  return out;
}

class NftablesBalancer : public Balancer {
 public:
  NftablesBalancer() : nl_(kernel::NetlinkSocket::open()) {
    try {
      stale_flows_ = std::make_unique<StaleFlows>();
    } catch (const Error& e) {
      spdlog::warn(
          "nftables balancer: {}; UDP flows of a backend that leaves a VIP stay on it until idle",
          e.what());
    }
  }

  std::string_view name() const override { return "nftables"; }

  void upsert(const VirtualIp& in) override {
    VirtualIp want = checked(in);
    std::optional<nft::KernelVip> old;
    with_retry([&](nft::TableState& state) {
      old = find(state, want.key);
      nft::Plan plan;
      plan_table(state, plan, want.key);
      nft::plan_upsert(find(state, want.key), want, state, plan);
      nft_.apply(plan);
      state.vips[want.key] = nft::expected(want);
    });
    // A VIP that moved to another bridge keeps its address: replaced in
    // one request by ensure_vip_route.
    if (old && old->vip != want.vip) remove_vip_route(nl_, old->bridge, old->vip);
    ensure_vip_route(nl_, want.bridge, want.vip);
    if (!old) return;
    if (old->vip != want.vip) {
      forget_flows(old->vip, backends_of(*old));
    } else {
      forget_flows(want.vip, left(backends_of(*old), want.backends));
    }
  }

  void remove(const std::string& key) override {
    nft::check_key(key);
    std::optional<nft::KernelVip> old;
    with_retry([&](nft::TableState& state) {
      old = find(state, key);
      if (!old) return;
      // The route first: from then on the VIP draws no new traffic.
      remove_vip_route(nl_, old->bridge, old->vip);
      nft::Plan plan;
      plan_table(state, plan, key);
      if (auto still = find(state, key)) nft::plan_remove(*still, state, plan);
      nft_.apply(plan);
      state.vips.erase(key);
    });
    if (old) forget_flows(old->vip, backends_of(*old));
  }

  void sync(const std::vector<VirtualIp>& all) override {
    std::vector<VirtualIp> wanted;
    std::map<std::string, size_t> index_of;  // key -> its place in `wanted`
    for (const VirtualIp& vip : all) {
      if (!index_of.emplace(vip.key, wanted.size()).second) {
        throw Error(Errc::invalid_argument, "VIP key " + vip.key + " given twice");
      }
      wanted.push_back(checked(vip));
    }
    state_.reset();
    nft::TableState state = nft_.read_table();
    nft::Plan plan;
    if (!state.exists) nft::plan_base(state, plan);
    if (state.legacy) nft::plan_rebuild(state, plan);  // what it held is in `wanted` or goes
    nft::plan_orphans(state, plan);
    for (const auto& [key, have] : state.vips) {
      if (!index_of.count(key)) nft::plan_remove(have, state, plan);
    }
    for (const VirtualIp& want : wanted) nft::plan_upsert(find(state, want.key), want, state, plan);
    nft_.apply(plan);
    // What each VIP the kernel held loses (all of it if the VIP goes or
    // moves to another address).
    std::vector<std::pair<Ipv4Address, std::vector<Ipv4Address>>> gone;
    for (const auto& [key, have] : state.vips) {
      auto it = index_of.find(key);
      const VirtualIp* want = it != index_of.end() ? &wanted[it->second] : nullptr;
      bool same_address = want && want->vip == have.vip;
      gone.emplace_back(
          have.vip,
          left(backends_of(have), same_address ? want->backends : std::vector<Ipv4Address>{}));
    }
    state.vips.clear();
    state.orphan_addresses.clear();
    state.orphan_members.clear();
    state.orphan_backends.clear();
    for (const VirtualIp& want : wanted) state.vips[want.key] = nft::expected(want);
    state_ = std::move(state);

    // Routes: exactly the wanted ones, each through its bridge.
    std::set<std::pair<std::string, Ipv4Address>> want_routes;
    for (const VirtualIp& want : wanted) want_routes.emplace(want.bridge, want.vip);
    auto have = list_vip_routes(nl_);
    for (const auto& route : have) {
      if (!want_routes.count(route)) remove_vip_route(nl_, route.first, route.second);
    }
    std::set<std::pair<std::string, Ipv4Address>> have_set(have.begin(), have.end());
    std::vector<std::pair<std::string, Ipv4Address>> missing;
    for (const auto& route : want_routes) {
      if (!have_set.count(route)) missing.push_back(route);
    }
    ensure_vip_routes(nl_, missing);
    // Then an earlier release's addresses: each VIP stays local throughout.
    remove_legacy_vip_addresses(nl_);
    for (const auto& [vip, backends] : gone) forget_flows(vip, backends);
  }

  std::vector<VirtualIp> read_kernel_state() override {
    nft::TableState state = nft_.read_table();
    auto routes = list_vip_routes(nl_);
    std::set<std::pair<std::string, Ipv4Address>> on_bridges(routes.begin(), routes.end());
    std::vector<VirtualIp> out;
    for (const auto& [key, have] : state.vips) {
      VirtualIp vip = nft::reachable(have, state.bucket_rules);
      // The bridge only when the route really is there: a missing route
      // shows as a difference.
      if (!on_bridges.count({have.bridge, have.vip})) vip.bridge.clear();
      out.push_back(std::move(vip));
    }
    return out;  // by key: state.vips is a map
  }

  void clear() override {
    state_.reset();
    nft::TableState state = nft_.read_table();
    for (const auto& [key, have] : state.vips) remove_vip_route(nl_, have.bridge, have.vip);
    for (const auto& [bridge, vip] : list_vip_routes(nl_)) remove_vip_route(nl_, bridge, vip);
    remove_legacy_vip_addresses(nl_);
    nft_.delete_table();
  }

 private:
  // The base objects for a missing table; for one of the earlier shape, a
  // new table holding what the old one did, except `key` (which the
  // caller plans itself).
  static void plan_table(nft::TableState& state, nft::Plan& plan, const std::string& key) {
    if (!state.exists) nft::plan_base(state, plan);
    if (!state.legacy) return;
    for (const VirtualIp& held : nft::plan_rebuild(state, plan)) {
      if (held.key != key) nft::plan_upsert(std::nullopt, held, state, plan);
    }
  }

  static std::optional<nft::KernelVip> find(const nft::TableState& state, const std::string& key) {
    auto it = state.vips.find(key);
    if (it == state.vips.end()) return std::nullopt;
    return it->second;
  }

  // Runs `change` on the known state; if the kernel refuses the batch
  // because it differs from what we knew (not_found, conflict), reads the
  // table again and runs it once more.
  template <typename Change>
  void with_retry(Change change) {
    bool fresh = !state_;
    if (!state_) state_ = nft_.read_table();
    try {
      change(*state_);
      return;
    } catch (const Error& e) {
      state_.reset();
      if (fresh || (e.code() != Errc::not_found && e.code() != Errc::conflict)) throw;
      spdlog::warn("nftables: {}; reading table {} again", e.what(), nft::kTable);
    }
    state_ = nft_.read_table();
    try {
      change(*state_);
    } catch (...) {
      state_.reset();
      throw;
    }
  }

  void forget_flows(Ipv4Address vip, const std::vector<Ipv4Address>& backends) {
    if (stale_flows_) stale_flows_->forget(vip, backends);
  }

  nft::NftSocket nft_;
  kernel::NetlinkSocket nl_;
  std::unique_ptr<StaleFlows> stale_flows_;  // null if conntrack netlink is unavailable
  std::optional<nft::TableState> state_;
};

}  // namespace

std::unique_ptr<Balancer> make_nftables_balancer() {
  return std::make_unique<NftablesBalancer>();
}

}  // namespace swarmnet::lb
