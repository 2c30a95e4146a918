#include "lb/nft_plan.hpp"

#include <algorithm>
#include <sstream>

#include "common/error.hpp"

namespace swarmnet::lb::nft {
namespace {

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '/' || c == '-';
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

void check_key(const std::string& key) {
  bool ok = !key.empty() && key.size() <= 63;
  for (char c : key) ok = ok && key_char(c);
  if (!ok) {
    throw Error(Errc::invalid_argument,
                "invalid VIP key \"" + key + "\": 1 to 63 characters of A-Z a-z 0-9 . _ / -");
  }
}

std::string vip_chain(const std::string& key) { return kVipChainPrefix + key; }

std::optional<std::string> key_of_chain(const std::string& chain) {
  const std::string prefix = kVipChainPrefix;
  if (chain.size() <= prefix.size() || chain.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  return chain.substr(prefix.size());
}

std::string vip_chain_comment(Ipv4Address vip, const std::string& bridge) {
  return "vip " + vip.str() + " bridge " + bridge;
}

std::optional<std::pair<Ipv4Address, std::string>> parse_vip_chain_comment(const std::string& text) {
  std::istringstream in(text);
  std::string vip_word, vip, bridge_word, bridge, rest;
  if (!(in >> vip_word >> vip >> bridge_word >> bridge) || (in >> rest) || vip_word != "vip" ||
      bridge_word != "bridge") {
    return std::nullopt;
  }
  auto address = Ipv4Address::try_parse(vip);
  if (!address) return std::nullopt;
  return std::make_pair(*address, bridge);
}

void plan_base(Plan& plan) {
  plan.push_back(AddTable{});
  plan.push_back(AddBaseChains{});
  plan.push_back(AddSets{});
  plan.push_back(AddBaseRules{});
}

KernelVip assume_consistent(KernelVip vip) {
  vip.elements.clear();
  for (uint32_t i = 0; i < vip.buckets; ++i) vip.elements[i] = Ipv4Address();
  vip.mapped = vip.listed = true;
  return vip;
}

bool matches(const KernelVip& have, const VirtualIp& want) {
  if (have.key != want.key || have.vip != want.vip || have.bridge != want.bridge || !have.mapped ||
      !have.listed || have.buckets != want.backends.size() ||
      have.elements.size() != want.backends.size()) {
    return false;
  }
  uint32_t bucket = 0;
  for (const auto& [index, backend] : have.elements) {
    if (index != bucket || backend != want.backends[bucket]) return false;
    ++bucket;
  }
  return true;
}

namespace {

void delete_elements(const KernelVip& old, Plan& plan) {
  if (old.elements.empty()) return;
  DeleteBackends del{old.vip, {}};
  for (const auto& [bucket, backend] : old.elements) del.buckets.push_back(bucket);
  plan.push_back(std::move(del));
}

}  // namespace

void plan_remove(const KernelVip& old, Plan& plan) {
  if (old.mapped || old.listed) plan.push_back(DeleteVipElement{old.vip, old.mapped, old.listed});
  delete_elements(old, plan);
  plan.push_back(DeleteChain{vip_chain(old.key)});
}

void plan_upsert(const std::optional<KernelVip>& old, const VirtualIp& want, Plan& plan) {
  std::string chain = vip_chain(want.key);
  // The comment cannot be changed on a live chain, and the old address's
  // elements are keyed by it: a moved VIP is a removal and an addition.
  bool same_place = old && old->vip == want.vip && old->bridge == want.bridge;
  if (old && !same_place) plan_remove(*old, plan);
  if (same_place) {
    plan.push_back(FlushChain{chain});
    delete_elements(*old, plan);
  } else {
    plan.push_back(AddVipChain{chain, vip_chain_comment(want.vip, want.bridge)});
  }
  if (!want.backends.empty()) {
    plan.push_back(AddBackends{want.vip, want.backends});
    plan.push_back(AddBalanceRule{chain, static_cast<uint32_t>(want.backends.size())});
  }
  // Also when nothing changed here: adding an element that is there is a
  // no-op, and one that went missing comes back.
  plan.push_back(AddVipElement{want.vip, chain});
}

Plan order_for_batch(const Plan& plan) {
  // The phase of each alternative of Op, by index.
  auto phase = [](const Op& op) {
    return std::visit(Overloaded{
                          [](const AddTable&) { return 0; },
                          [](const AddBaseChains&) { return 1; },
                          [](const AddSets&) { return 2; },
                          [](const AddBaseRules&) { return 3; },
                          [](const DeleteVipElement&) { return 4; },
                          [](const DeleteBackends&) { return 5; },
                          [](const FlushChain&) { return 6; },
                          [](const DeleteChain&) { return 7; },
                          [](const AddVipChain&) { return 8; },
                          [](const AddBackends&) { return 9; },
                          [](const AddBalanceRule&) { return 10; },
                          [](const AddVipElement&) { return 11; },
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
                   [&](const AddBaseRules&) { out << "replace base rules\n"; },
                   [&](const FlushChain& o) { out << "flush chain " << o.chain << "\n"; },
                   [&](const AddVipChain& o) {
                     out << "add chain " << o.chain << " \"" << o.comment << "\"\n";
                   },
                   [&](const DeleteChain& o) { out << "delete chain " << o.chain << "\n"; },
                   [&](const AddBalanceRule& o) {
                     out << "add rule " << o.chain << " mod " << o.buckets << "\n";
                   },
                   [&](const AddVipElement& o) {
                     out << "add vip " << o.vip.str() << " -> " << o.chain << "\n";
                   },
                   [&](const DeleteVipElement& o) {
                     out << "delete vip " << o.vip.str() << (o.from_map ? " from vips" : "")
                         << (o.from_addresses ? " from vip-addresses" : "") << "\n";
                   },
                   [&](const AddBackends& o) {
                     out << "add backends of " << o.vip.str() << ":";
                     for (auto b : o.backends) out << " " << b.str();
                     out << "\n";
                   },
                   [&](const DeleteBackends& o) {
                     out << "delete " << o.buckets.size() << " backends of " << o.vip.str() << "\n";
                   },
               },
               op);
  }
  return out.str();
}

}  // namespace swarmnet::lb::nft
