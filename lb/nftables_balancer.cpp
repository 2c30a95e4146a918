// The nftables Balancer: plans (nft_plan) sent as netlink batches
// (nft_netlink), plus the VIP addresses on the bridges (vip_addresses).
#include <algorithm>
#include <set>

#include "common/error.hpp"
#include <spdlog/spdlog.h>
#include "kernel/netlink.hpp"
#include "lb/balancer.hpp"
#include "lb/nft_netlink.hpp"
#include "lb/nft_plan.hpp"
#include "lb/vip_addresses.hpp"

namespace swarmnet::lb {
namespace {

// Checks what the daemon sends and puts the backends in the order the
// buckets use (sorted, no duplicates), so a plan never half-applies
// because of bad input.
VirtualIp checked(const VirtualIp& in) {
  nft::check_key(in.key);
  if (in.bridge.empty() || in.bridge.size() > 15) {
    throw Error(Errc::invalid_argument, "VIP " + in.key + ": invalid bridge name \"" + in.bridge + "\"");
  }
  VirtualIp out = in;
  std::sort(out.backends.begin(), out.backends.end());
  out.backends.erase(std::unique(out.backends.begin(), out.backends.end()), out.backends.end());
  return out;
}

class NftablesBalancer : public Balancer {
 public:
  NftablesBalancer() : nl_(kernel::NetlinkSocket::open()) {}

  std::string_view name() const override { return "nftables"; }

  void upsert(const VirtualIp& in) override {
    VirtualIp want = checked(in);
    std::optional<nft::KernelVip> old = nft_.read_vip(want.key);
    try {
      apply_upsert(old, want);
    } catch (const Error& e) {
      // The quick read assumed the VIP's elements were all there; someone
      // removed one by hand. Read them for real and try once more.
      if (e.code() != Errc::not_found || !old) throw;
      spdlog::warn("nftables: {}; rereading VIP {} from the kernel", e.what(), want.key);
      nft::TableState state = nft_.read_table();
      auto it = state.vips.find(want.key);
      apply_upsert(it == state.vips.end() ? std::nullopt : std::optional(it->second), want);
    }
    if (old && (old->vip != want.vip || old->bridge != want.bridge)) {
      remove_vip_address(nl_, old->bridge, old->vip);
    }
    ensure_vip_address(nl_, want.bridge, want.vip);
  }

  void remove(const std::string& key) override {
    nft::check_key(key);
    std::optional<nft::KernelVip> old = nft_.read_vip(key);
    if (!old) return;
    // The address first: from then on the VIP stops drawing new traffic.
    remove_vip_address(nl_, old->bridge, old->vip);
    nft::Plan plan;
    nft::plan_remove(*old, plan);
    try {
      nft_.apply(plan);
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) throw;
      nft::TableState state = nft_.read_table();
      auto it = state.vips.find(key);
      if (it == state.vips.end()) return;
      plan.clear();
      nft::plan_remove(it->second, plan);
      nft_.apply(plan);
    }
  }

  void sync(const std::vector<VirtualIp>& all) override {
    std::vector<VirtualIp> wanted;
    std::set<std::string> keys;
    for (const VirtualIp& vip : all) {
      wanted.push_back(checked(vip));
      if (!keys.insert(vip.key).second) {
        throw Error(Errc::invalid_argument, "VIP key " + vip.key + " given twice");
      }
    }
    nft::TableState state = nft_.read_table();
    nft::Plan plan;
    nft::plan_base(plan);
    for (const auto& [key, have] : state.vips) {
      if (!keys.count(key)) nft::plan_remove(have, plan);
    }
    for (const VirtualIp& want : wanted) {
      auto it = state.vips.find(want.key);
      if (it != state.vips.end() && nft::matches(it->second, want)) continue;
      nft::plan_upsert(it == state.vips.end() ? std::nullopt : std::optional(it->second), want, plan);
    }
    nft_.apply(plan);

    // Addresses: exactly the wanted ones, each on its bridge.
    std::set<std::pair<std::string, Ipv4Address>> want_addresses;
    for (const VirtualIp& want : wanted) want_addresses.emplace(want.bridge, want.vip);
    auto have = list_vip_addresses(nl_);
    for (const auto& address : have) {
      if (!want_addresses.count(address)) remove_vip_address(nl_, address.first, address.second);
    }
    std::set<std::pair<std::string, Ipv4Address>> have_set(have.begin(), have.end());
    for (const auto& address : want_addresses) {
      if (!have_set.count(address)) ensure_vip_address(nl_, address.first, address.second);
    }
  }

  std::vector<VirtualIp> read_kernel_state() override {
    nft::TableState state = nft_.read_table();
    auto addresses = list_vip_addresses(nl_);
    std::set<std::pair<std::string, Ipv4Address>> on_bridges(addresses.begin(), addresses.end());
    std::vector<VirtualIp> out;
    for (const auto& [key, have] : state.vips) {
      VirtualIp vip;
      vip.key = key;
      vip.vip = have.vip;
      // The bridge only when the address really is there: a missing
      // address shows as a difference.
      if (on_bridges.count({have.bridge, have.vip})) vip.bridge = have.bridge;
      // Only what packets can reach: the buckets the rule hashes into,
      // through the VIP's entry in @vips.
      if (have.mapped) {
        for (const auto& [bucket, backend] : have.elements) {
          if (bucket < have.buckets) vip.backends.push_back(backend);
        }
      }
      std::sort(vip.backends.begin(), vip.backends.end());
      out.push_back(std::move(vip));
    }
    return out;  // by key: state.vips is a map
  }

  void clear() override {
    nft::TableState state = nft_.read_table();
    for (const auto& [key, have] : state.vips) remove_vip_address(nl_, have.bridge, have.vip);
    for (const auto& [bridge, vip] : list_vip_addresses(nl_)) remove_vip_address(nl_, bridge, vip);
    nft_.delete_table();
  }

 private:
  void apply_upsert(const std::optional<nft::KernelVip>& old, const VirtualIp& want) {
    nft::Plan plan;
    nft::plan_base(plan);
    nft::plan_upsert(old, want, plan);
    nft_.apply(plan);
  }

  nft::NftSocket nft_;
  kernel::NetlinkSocket nl_;
};

}  // namespace

std::unique_ptr<Balancer> make_nftables_balancer() { return std::make_unique<NftablesBalancer>(); }

}  // namespace swarmnet::lb
