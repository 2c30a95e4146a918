#include "lb/nft_plan.hpp"

// GCC 12 reports the moves of a std::variant inside vector growth as
// "may be used uninitialized" (a known false positive, GCC PR 105562 and
// kin) once push_back is inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <sstream>

#include "common/error.hpp"

namespace swarmnet::lb::nft {
namespace {

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '/' || c == '-';
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

constexpr const char* kModPrefix = "mod-";

}  // namespace

void check_key(const std::string& key) {
  bool ok = !key.empty() && key.size() <= 63;
  for (char c : key) ok = ok && key_char(c);
  if (!ok) {
    throw Error(Errc::invalid_argument,
                "invalid VIP key \"" + key + "\": 1 to 63 characters of A-Z a-z 0-9 . _ : / -");
  }
}

std::string mod_chain(uint32_t buckets) { return kModPrefix + std::to_string(buckets); }

std::optional<uint32_t> buckets_of_chain(const std::string& chain) {
  const std::string prefix = kModPrefix;
  if (chain.size() <= prefix.size() || chain.size() > prefix.size() + 9 ||
      chain.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  uint32_t n = 0;
  for (size_t i = prefix.size(); i < chain.size(); ++i) {
    if (chain[i] < '0' || chain[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<uint32_t>(chain[i] - '0');
  }
  if (n == 0 || mod_chain(n) != chain) return std::nullopt;  // no leading zeros
  return n;
}

std::string vip_comment(const std::string& key, const std::string& bridge) {
  return "key " + key + " bridge " + bridge;
}

std::optional<std::pair<std::string, std::string>> parse_vip_comment(const std::string& text) {
  std::istringstream in(text);
  std::string key_word, key, bridge_word, bridge, rest;
  if (!(in >> key_word >> key >> bridge_word >> bridge) || (in >> rest) || key_word != "key" ||
      bridge_word != "bridge") {
    return std::nullopt;
  }
  return std::make_pair(key, bridge);
}

KernelVip expected(const VirtualIp& want) {
  KernelVip vip;
  vip.key = want.key;
  vip.vip = want.vip;
  vip.bridge = want.bridge;
  vip.buckets = static_cast<uint32_t>(want.backends.size());
  for (uint32_t i = 0; i < want.backends.size(); ++i) vip.elements[i] = want.backends[i];
  vip.listed = true;
  return vip;
}

void plan_base(TableState& state, Plan& plan) {
  plan.push_back(AddTable{});
  plan.push_back(AddBaseChains{});
  plan.push_back(AddSets{});
  plan.push_back(AddBaseRules{});
  for (uint32_t n = 1; n <= kPrecreatedModChains; ++n) {
    if (state.mod_chains.insert(n).second) plan.push_back(AddModChain{n});
  }
  state.exists = true;
}

void plan_remove(const KernelVip& old, Plan& plan) {
  plan.push_back(DeleteVipElement{old.vip, true, old.listed});
  if (!old.elements.empty()) {
    DeleteBackends del{old.vip, {}};
    for (const auto& [bucket, backend] : old.elements) del.buckets.push_back(bucket);
    plan.push_back(std::move(del));
  }
}

void plan_upsert(const std::optional<KernelVip>& old, const VirtualIp& want, TableState& state,
                 Plan& plan) {
  KernelVip next = expected(want);
  if (old && *old == next) return;
  if (next.buckets > 0 && state.mod_chains.insert(next.buckets).second) {
    plan.push_back(AddModChain{next.buckets});
  }
  bool same_vip = old && old->vip == next.vip;
  // The @vips element carries the comment and the verdict: replaced when
  // either changes (a deletion and an addition in one batch).
  bool keep_map = same_vip && old->key == next.key && old->bridge == next.bridge &&
                  old->buckets == next.buckets;
  bool keep_address = same_vip && old->listed;
  if (old && (!keep_map || !keep_address)) {
    plan.push_back(DeleteVipElement{old->vip, !keep_map, old->listed && !keep_address});
  }
  // Buckets: only those whose task changes.
  DeleteBackends del{old ? old->vip : next.vip, {}};
  AddBackends add{next.vip, {}};
  if (old) {
    for (const auto& [bucket, backend] : old->elements) {
      auto it = next.elements.find(bucket);
      if (!same_vip || it == next.elements.end() || it->second != backend) del.buckets.push_back(bucket);
    }
  }
  for (const auto& [bucket, backend] : next.elements) {
    bool kept = false;
    if (same_vip) {
      auto it = old->elements.find(bucket);
      kept = it != old->elements.end() && it->second == backend;
    }
    if (!kept) add.buckets.emplace_back(bucket, backend);
  }
  if (!del.buckets.empty()) plan.push_back(std::move(del));
  if (!add.buckets.empty()) plan.push_back(std::move(add));
  if (!keep_map || !keep_address) {
    plan.push_back(AddVipElement{next.vip, vip_comment(next.key, next.bridge), next.buckets, !keep_map,
                                 !keep_address});
  }
}

void plan_orphans(const TableState& state, Plan& plan) {
  for (Ipv4Address vip : state.orphan_mapped) {
    plan.push_back(DeleteVipElement{vip, true, state.orphan_addresses.count(vip) > 0});
  }
  for (Ipv4Address vip : state.orphan_addresses) {
    if (!state.orphan_mapped.count(vip)) plan.push_back(DeleteVipElement{vip, false, true});
  }
  for (const auto& [vip, buckets] : state.orphan_backends) {
    DeleteBackends del;
    del.vip = vip;
    del.buckets = buckets;
    plan.emplace_back(std::move(del));
  }
}

Plan order_for_batch(const Plan& plan) {
  auto phase = [](const Op& op) {
    return std::visit(Overloaded{
                          [](const AddTable&) { return 0; },
                          [](const AddBaseChains&) { return 1; },
                          [](const AddSets&) { return 2; },
                          [](const AddBaseRules&) { return 3; },
                          [](const AddModChain&) { return 4; },
                          [](const DeleteVipElement&) { return 5; },
                          [](const DeleteBackends&) { return 6; },
                          [](const AddBackends&) { return 7; },
                          [](const AddVipElement&) { return 8; },
                      },
                      op);
  };
  Plan out = plan;
  std::stable_sort(out.begin(), out.end(),
                   [&](const Op& a, const Op& b) { return phase(a) < phase(b); });
  return out;
}

std::string describe(const Plan& plan) {
  std::ostringstream out;
  for (const Op& op : plan) {
    std::visit(Overloaded{
                   [&](const AddTable&) { out << "add table\n"; },
                   [&](const AddBaseChains&) { out << "add base chains\n"; },
                   [&](const AddSets&) { out << "add sets\n"; },
                   [&](const AddBaseRules&) { out << "add base rules\n"; },
                   [&](const AddModChain& o) { out << "add chain " << mod_chain(o.buckets) << "\n"; },
                   [&](const DeleteVipElement& o) {
                     out << "delete " << o.vip.str() << " from" << (o.from_map ? " vips" : "")
                         << (o.from_addresses ? " vip-addresses" : "") << "\n";
                   },
                   [&](const DeleteBackends& o) {
                     out << "delete backends " << o.vip.str() << " .";
                     for (uint32_t b : o.buckets) out << " " << b;
                     out << "\n";
                   },
                   [&](const AddBackends& o) {
                     out << "add backends " << o.vip.str() << " .";
                     for (const auto& [b, a] : o.buckets) out << " " << b << ":" << a.str();
                     out << "\n";
                   },
                   [&](const AddVipElement& o) {
                     out << "add " << o.vip.str() << " to" << (o.to_map ? " vips" : "")
                         << (o.to_addresses ? " vip-addresses" : "");
                     if (o.to_map) {
                       out << " (" << (o.buckets ? "goto " + mod_chain(o.buckets) : "accept") << ", \""
                           << o.comment << "\")";
                     }
                     out << "\n";
                   },
               },
               op);
  }
  return out.str();
}

}  // namespace swarmnet::lb::nft
