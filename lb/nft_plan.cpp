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

// Counts `gone` out of and `come` into state.backend_refs (both lists of
// @backends elements' tasks), and plans the @hairpin elements of the tasks
// that got their first element or lost their last.
void plan_hairpin(TableState& state, const std::vector<Ipv4Address>& gone, const std::vector<Ipv4Address>& come,
                  Plan& plan) {
  std::set<Ipv4Address> touched;
  for (Ipv4Address task : gone) {
    auto it = state.backend_refs.find(task);
    if (it != state.backend_refs.end() && --it->second == 0) state.backend_refs.erase(it);
    touched.insert(task);
  }
  for (Ipv4Address task : come) {
    ++state.backend_refs[task];
    touched.insert(task);
  }
  if (!state.hairpin_ready) return;
  AddHairpin add;
  DeleteHairpin del;
  for (Ipv4Address task : touched) {
    const bool wanted = state.backend_refs.count(task) > 0;
    const bool held = state.hairpin.count(task) > 0;
    if (wanted && !held) {
      add.tasks.push_back(task);
      state.hairpin.insert(task);
    } else if (!wanted && held) {
      del.tasks.push_back(task);
      state.hairpin.erase(task);
    }
  }
  if (!del.tasks.empty()) plan.push_back(std::move(del));
  if (!add.tasks.empty()) plan.push_back(std::move(add));
}

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
  state.hairpin_ready = true;
}

void plan_upgrade(TableState& state, Plan& plan) {
  plan.push_back(AddHairpinBase{});
  state.hairpin_ready = true;
  AddHairpin add;
  for (const auto& [task, count] : state.backend_refs) {
    if (state.hairpin.insert(task).second) add.tasks.push_back(task);
  }
  if (!add.tasks.empty()) plan.push_back(std::move(add));
}

void count_backends(TableState& state) {
  state.backend_refs.clear();
  for (const auto& [key, vip] : state.vips) {
    for (const auto& [bucket, task] : vip.elements) ++state.backend_refs[task];
  }
}

void plan_remove(const KernelVip& old, TableState& state, Plan& plan) {
  plan.push_back(DeleteVipElement{old.vip, true, old.listed});
  if (!old.elements.empty()) {
    DeleteBackends del{old.vip, {}};
    std::vector<Ipv4Address> gone;
    for (const auto& [bucket, backend] : old.elements) {
      del.buckets.push_back(bucket);
      gone.push_back(backend);
    }
    plan.push_back(std::move(del));
    plan_hairpin(state, gone, {}, plan);
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
  std::vector<Ipv4Address> gone, come;
  if (old) {
    for (const auto& [bucket, backend] : old->elements) {
      auto it = next.elements.find(bucket);
      if (!same_vip || it == next.elements.end() || it->second != backend) {
        del.buckets.push_back(bucket);
        gone.push_back(backend);
      }
    }
  }
  for (const auto& [bucket, backend] : next.elements) {
    bool kept = false;
    if (same_vip) {
      auto it = old->elements.find(bucket);
      kept = it != old->elements.end() && it->second == backend;
    }
    if (!kept) {
      add.buckets.emplace_back(bucket, backend);
      come.push_back(backend);
    }
  }
  if (!del.buckets.empty()) plan.push_back(std::move(del));
  if (!add.buckets.empty()) plan.push_back(std::move(add));
  plan_hairpin(state, gone, come, plan);
  if (!keep_map || !keep_address) {
    plan.push_back(AddVipElement{next.vip, vip_comment(next.key, next.bridge), next.buckets, !keep_map,
                                 !keep_address});
  }
}

void plan_orphans(TableState& state, Plan& plan) {
  DeleteHairpin unneeded;
  for (Ipv4Address task : state.hairpin) {
    if (!state.backend_refs.count(task)) unneeded.tasks.push_back(task);
  }
  for (Ipv4Address task : unneeded.tasks) state.hairpin.erase(task);
  if (!unneeded.tasks.empty()) plan.push_back(std::move(unneeded));
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
                          [](const AddHairpinBase&) { return 3; },
                          [](const AddModChain&) { return 4; },
                          [](const DeleteVipElement&) { return 5; },
                          [](const DeleteBackends&) { return 6; },
                          [](const DeleteHairpin&) { return 7; },
                          [](const AddBackends&) { return 8; },
                          [](const AddHairpin&) { return 9; },
                          [](const AddVipElement&) { return 10; },
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
                   [&](const AddHairpinBase&) { out << "add chain output, set hairpin, their rules\n"; },
                   [&](const AddModChain& o) { out << "add chain " << mod_chain(o.buckets) << "\n"; },
                   [&](const DeleteHairpin& o) {
                     out << "delete hairpin";
                     for (Ipv4Address a : o.tasks) out << " " << a.str();
                     out << "\n";
                   },
                   [&](const AddHairpin& o) {
                     out << "add hairpin";
                     for (Ipv4Address a : o.tasks) out << " " << a.str();
                     out << "\n";
                   },
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
