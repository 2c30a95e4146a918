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

constexpr const char* kBucketSetPrefix = "vips-";
constexpr const char* kLegacyChainPrefix = "mod-";

// N of "<prefix>N", N > 0 without leading zeros; nullopt otherwise.
std::optional<uint32_t> number_after(const std::string& prefix, const std::string& name) {
  if (name.size() <= prefix.size() || name.size() > prefix.size() + 9 ||
      name.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  uint32_t n = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<uint32_t>(name[i] - '0');
  }
  if (n == 0 || prefix + std::to_string(n) != name) return std::nullopt;  // no leading zeros
  return n;
}

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

std::string bucket_set(uint32_t buckets) { return kBucketSetPrefix + std::to_string(buckets); }

std::optional<uint32_t> buckets_of_set(const std::string& set) { return number_after(kBucketSetPrefix, set); }

std::optional<uint32_t> buckets_of_legacy_chain(const std::string& chain) {
  return number_after(kLegacyChainPrefix, chain);
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
  return vip;
}

VirtualIp reachable(const KernelVip& have, const std::set<uint32_t>& rules) {
  VirtualIp vip{have.key, have.vip, have.bridge, {}};
  if (rules.count(have.buckets)) {
    for (const auto& [bucket, backend] : have.elements) {
      if (bucket < have.buckets) vip.backends.push_back(backend);
    }
  }
  std::sort(vip.backends.begin(), vip.backends.end());
  vip.backends.erase(std::unique(vip.backends.begin(), vip.backends.end()), vip.backends.end());
  return vip;
}

void plan_base(TableState& state, Plan& plan) {
  plan.push_back(AddTable{});
  plan.push_back(AddBaseChains{});
  plan.push_back(AddSets{});
  plan.push_back(AddBaseRules{});
  for (uint32_t n = 1; n <= kPrecreatedBuckets; ++n) {
    if (state.bucket_rules.insert(n).second) plan.push_back(AddBucketRule{n});
  }
  state.exists = true;
}

std::vector<VirtualIp> plan_rebuild(TableState& state, Plan& plan) {
  std::vector<VirtualIp> held;
  for (const auto& [key, have] : state.vips) held.push_back(reachable(have, state.bucket_rules));
  plan.push_back(DeleteTable{});
  state = TableState{};
  plan_base(state, plan);
  return held;
}

void count_backends(TableState& state) {
  state.backend_refs.clear();
  for (const auto& [key, vip] : state.vips) {
    for (const auto& [bucket, task] : vip.elements) ++state.backend_refs[task];
  }
}

void plan_remove(const KernelVip& old, TableState& state, Plan& plan) {
  plan.push_back(DeleteVip{old.vip});
  if (old.buckets > 0) plan.push_back(DeleteMember{old.vip, old.buckets});
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
  if (next.buckets > 0 && state.bucket_rules.insert(next.buckets).second) {
    plan.push_back(AddBucketRule{next.buckets});
  }
  const bool same_vip = old && old->vip == next.vip;
  // The @vip-addresses element carries the comment: replaced when it
  // changes (a deletion and an addition in one batch).
  const bool keep_record = same_vip && old->key == next.key && old->bridge == next.bridge;
  const bool keep_member = same_vip && old->buckets == next.buckets;
  if (old && !keep_record) plan.push_back(DeleteVip{old->vip});
  if (old && !keep_member && old->buckets > 0) plan.push_back(DeleteMember{old->vip, old->buckets});
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
  if (!keep_member && next.buckets > 0) plan.push_back(AddMember{next.vip, next.buckets});
  if (!keep_record) plan.push_back(AddVip{next.vip, vip_comment(next.key, next.bridge)});
}

void plan_orphans(TableState& state, Plan& plan) {
  DeleteHairpin unneeded;
  for (Ipv4Address task : state.hairpin) {
    if (!state.backend_refs.count(task)) unneeded.tasks.push_back(task);
  }
  for (Ipv4Address task : unneeded.tasks) state.hairpin.erase(task);
  if (!unneeded.tasks.empty()) plan.push_back(std::move(unneeded));
  for (Ipv4Address vip : state.orphan_addresses) plan.push_back(DeleteVip{vip});
  for (const auto& [buckets, vips] : state.orphan_members) {
    for (Ipv4Address vip : vips) plan.push_back(DeleteMember{vip, buckets});
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
                          [](const DeleteTable&) { return 0; },
                          [](const AddTable&) { return 1; },
                          [](const AddBaseChains&) { return 2; },
                          [](const AddSets&) { return 3; },
                          [](const AddBaseRules&) { return 4; },
                          [](const AddBucketRule&) { return 5; },
                          [](const DeleteVip&) { return 6; },
                          [](const DeleteMember&) { return 7; },
                          [](const DeleteBackends&) { return 8; },
                          [](const DeleteHairpin&) { return 9; },
                          [](const AddBackends&) { return 10; },
                          [](const AddHairpin&) { return 11; },
                          [](const AddMember&) { return 12; },
                          [](const AddVip&) { return 13; },
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
  auto addresses = [&](const std::vector<Ipv4Address>& all) {
    for (Ipv4Address a : all) out << " " << a.str();
    out << "\n";
  };
  for (const Op& op : plan) {
    std::visit(Overloaded{
                   [&](const DeleteTable&) { out << "delete table\n"; },
                   [&](const AddTable&) { out << "add table\n"; },
                   [&](const AddBaseChains&) { out << "add base chains\n"; },
                   [&](const AddSets&) { out << "add sets\n"; },
                   [&](const AddBaseRules&) { out << "add base rules\n"; },
                   [&](const AddBucketRule& o) { out << "add set " << bucket_set(o.buckets) << " and its rule\n"; },
                   [&](const DeleteVip& o) { out << "delete " << o.vip.str() << " from vip-addresses\n"; },
                   [&](const DeleteMember& o) {
                     out << "delete " << o.vip.str() << " from " << bucket_set(o.buckets) << "\n";
                   },
                   [&](const DeleteBackends& o) {
                     out << "delete backends " << o.vip.str() << " .";
                     for (uint32_t b : o.buckets) out << " " << b;
                     out << "\n";
                   },
                   [&](const DeleteHairpin& o) {
                     out << "delete hairpin";
                     addresses(o.tasks);
                   },
                   [&](const AddBackends& o) {
                     out << "add backends " << o.vip.str() << " .";
                     for (const auto& [b, a] : o.buckets) out << " " << b << ":" << a.str();
                     out << "\n";
                   },
                   [&](const AddHairpin& o) {
                     out << "add hairpin";
                     addresses(o.tasks);
                   },
                   [&](const AddMember& o) { out << "add " << o.vip.str() << " to " << bucket_set(o.buckets) << "\n"; },
                   [&](const AddVip& o) {
                     out << "add " << o.vip.str() << " to vip-addresses (\"" << o.comment << "\")\n";
                   },
               },
               op);
  }
  return out.str();
}

}  // namespace swarmnet::lb::nft
