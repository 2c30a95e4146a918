#include "daemon/encryption.hpp"

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/error.hpp"

namespace swarmnet::daemon {

namespace encryption {

namespace {

std::vector<uint8_t> info_of(uint32_t generation, const std::string& src, const std::string& dst) {
  const std::string label = "swarmnet esp";
  std::vector<uint8_t> info(label.begin(), label.end());
  for (int shift = 24; shift >= 0; shift -= 8) info.push_back(static_cast<uint8_t>(generation >> shift));
  // Node ids are fixed-length hex, but length-prefix them anyway so no two
  // pairs ever give the same input.
  for (const std::string* id : {&src, &dst}) {
    info.push_back(static_cast<uint8_t>(id->size()));
    info.insert(info.end(), id->begin(), id->end());
  }
  return info;
}

}  // namespace

kernel::EspKey derive_key(const ClusterKey& key, uint32_t generation, const std::string& src_node,
                          const std::string& dst_node) {
  const std::vector<uint8_t> info = info_of(generation, src_node, dst_node);
  kernel::EspKey out{};
  size_t out_len = out.size();
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr),
                                                                  EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 || EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), key.data(), static_cast<int>(key.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &out_len) <= 0 || out_len != out.size()) {
    throw Error(Errc::internal, "HKDF-SHA256 failed deriving an ESP key");
  }
  return out;
}

uint32_t spi(uint32_t generation, const std::string& src_node, const std::string& dst_node) {
  // FNV-1a over the pair: stable across nodes and releases.
  uint32_t h = 2166136261u;
  for (const std::string* id : {&src_node, &dst_node}) {
    for (unsigned char c : *id) h = (h ^ c) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
  }
  // 1..255: SPIs below 256 are reserved, so the top byte is never 0.
  const uint32_t top = (generation - 1) % 255 + 1;
  return top << 24 | (h & 0xffffff);
}

uint32_t generation_of_spi(uint32_t spi) { return spi >> 24; }

std::vector<kernel::EspState> plan_states(const std::string& self_id, Ipv4Address self,
                                          const std::vector<Peer>& peers, const std::vector<Generation>& generations) {
  std::vector<kernel::EspState> states;
  for (const Peer& peer : peers) {
    if (peer.id == self_id) continue;
    for (const Generation& g : generations) {
      states.push_back({self, peer.address, spi(g.number, self_id, peer.id), kReqidBase + g.number,
                        derive_key(g.key, g.number, self_id, peer.id)});
      states.push_back({peer.address, self, spi(g.number, peer.id, self_id), kReqidBase + g.number,
                        derive_key(g.key, g.number, peer.id, self_id)});
    }
  }
  return states;
}

uint32_t outbound_generation(const Peer& peer, uint32_t primary, const std::vector<Generation>& generations,
                             std::optional<uint32_t> current) {
  auto confirmed = [&](uint32_t g) {
    return peer.confirmed && std::find(peer.confirmed->begin(), peer.confirmed->end(), g) != peer.confirmed->end();
  };
  if (confirmed(primary)) return primary;
  if (current && (!peer.confirmed || confirmed(*current))) return *current;
  uint32_t newest = 0;
  for (const Generation& g : generations) {
    if (confirmed(g.number)) newest = std::max(newest, g.number);
  }
  return newest ? newest : primary;
}

}  // namespace encryption

namespace {

class XfrmKernel final : public EspKernel {
 public:
  XfrmKernel() : xfrm_(kernel::XfrmSocket::open()) {}
  void update_state(const kernel::EspState& s) override { xfrm_.update_state(s); }
  void delete_state(Ipv4Address dst, uint32_t spi) override { xfrm_.delete_state(dst, spi); }
  std::vector<kernel::EspStateInfo> list_states() override { return xfrm_.list_states(); }
  void update_policy(const kernel::EspPolicy& p) override { xfrm_.update_policy(p); }
  void delete_policy(const kernel::EspPolicy& p) override { xfrm_.delete_policy(p); }
  std::vector<kernel::EspPolicy> list_policies(uint32_t mark) override { return xfrm_.list_policies(mark); }

 private:
  kernel::XfrmSocket xfrm_;
};

bool ours(uint32_t reqid) { return (reqid & encryption::kReqidMask) == encryption::kReqidBase; }

bool same_selector(const kernel::EspPolicy& a, const kernel::EspPolicy& b) {
  return a.dport == b.dport && a.sport == b.sport && a.sport_mask == b.sport_mask && a.mark == b.mark;
}

}  // namespace

std::unique_ptr<EspKernel> make_xfrm_kernel() { return std::make_unique<XfrmKernel>(); }

Encryption::Encryption(std::unique_ptr<EspKernel> kernel, std::optional<std::string> missing, uint16_t vxlan_port,
                       std::chrono::steady_clock::duration grace, Clock clock)
    : kernel_(std::move(kernel)),
      missing_(std::move(missing)),
      vxlan_port_(vxlan_port),
      grace_(grace),
      clock_(std::move(clock)) {}

kernel::EspPolicy Encryption::policy(Ipv4Address self, Ipv4Address peer, uint32_t reqid) const {
  return kernel::EspPolicy{self, peer, vxlan_port_, 0, reqid, encryption::kSourcePortMin,
                           encryption::kSourcePortMask};
}

void Encryption::sync(bool wanted, const std::string& self_id, Ipv4Address self,
                      const std::vector<encryption::Peer>& peers,
                      const std::vector<encryption::Generation>& generations, uint32_t primary) {
  if (missing_ || !kernel_) return;
  wanted = wanted && !generations.empty();
  const auto now = clock_();

  using StateKey = std::pair<Ipv4Address, uint32_t>;  // dst, spi
  std::map<StateKey, uint32_t> have_states;           // -> reqid
  for (const auto& s : kernel_->list_states()) {
    if (ours(s.reqid)) have_states[{s.dst, s.spi}] = s.reqid;
  }
  using PolicyKey = std::pair<Ipv4Address, Ipv4Address>;  // src, dst
  std::map<PolicyKey, kernel::EspPolicy> have_policies;
  for (const auto& p : kernel_->list_policies(0)) {
    if (ours(p.reqid)) have_policies[{p.src, p.dst}] = p;
  }
  // Left by a version that selected by mark: the firewall marks nothing now.
  for (const auto& p : kernel_->list_policies(encryption::kMark)) kernel_->delete_policy(p);

  size_t added = 0, removed = 0, switched = 0, behind = 0;
  // New SAs first (both directions), then the policies that use them, then
  // what is stale: outbound never points at an SA that is not there.
  std::set<StateKey> wanted_states, in_use;
  if (wanted) {
    for (const auto& s : encryption::plan_states(self_id, self, peers, generations)) {
      wanted_states.insert({s.dst, s.spi});
      auto it = have_states.find({s.dst, s.spi});
      if (it != have_states.end() && it->second == s.reqid) continue;
      kernel_->update_state(s);
      have_states[{s.dst, s.spi}] = s.reqid;
      ++added;
    }
  }
  std::set<PolicyKey> wanted_policies;
  uint32_t oldest = 0;
  for (const auto& peer : peers) {
    if (!wanted || peer.id == self_id) continue;
    const auto it = have_policies.find({self, peer.address});
    std::optional<uint32_t> current;
    if (it != have_policies.end() && same_selector(it->second, policy(self, peer.address, 0))) {
      const uint32_t g = it->second.reqid - encryption::kReqidBase;
      if (ours(it->second.reqid) && have_states.count({peer.address, encryption::spi(g, self_id, peer.id)})) {
        current = g;
      }
    }
    const uint32_t g = encryption::outbound_generation(peer, primary, generations, current);
    if (g != primary) ++behind;
    oldest = oldest == 0 ? g : std::min(oldest, g);
    in_use.insert({peer.address, encryption::spi(g, self_id, peer.id)});
    wanted_policies.insert({self, peer.address});
    const kernel::EspPolicy p = policy(self, peer.address, encryption::kReqidBase + g);
    const bool same = it != have_policies.end() && same_selector(it->second, p);
    if (same && it->second.reqid == p.reqid) continue;
    // Another selector is another policy: replace it, not add beside it.
    if (it != have_policies.end() && !same) kernel_->delete_policy(it->second);
    kernel_->update_policy(p);
    ++switched;
  }
  for (const auto& [key, p] : have_policies) {
    if (!wanted_policies.count(key)) {
      kernel_->delete_policy(p);
      ++removed;
    }
  }
  for (const auto& [key, reqid] : have_states) {
    if (wanted_states.count(key) || in_use.count(key)) {
      stale_since_.erase(key);
      continue;
    }
    if (wanted) {
      const auto since = stale_since_.try_emplace(key, now).first->second;
      if (now - since < grace_) continue;
    }
    kernel_->delete_state(key.first, key.second);
    stale_since_.erase(key);
    ++removed;
  }
  // Forget what the kernel no longer holds (removed by someone else).
  std::erase_if(stale_since_, [&](const auto& e) { return !have_states.count(e.first); });

  inbound_.clear();
  if (wanted) {
    for (const auto& g : generations) inbound_.push_back(g.number);
    std::sort(inbound_.begin(), inbound_.end());
  }
  if (added || removed || switched || oldest != generation_) {
    spdlog::info("encryption: {} ESP SA(s) added, {} outbound policy(ies) set, {} removed; {} peer(s), primary key "
                 "generation {}, {} peer(s) not yet confirming it (outbound stays on their previous one)",
                 added, switched, removed, wanted_policies.size(), primary, behind);
  }
  generation_ = oldest;
}

}  // namespace swarmnet::daemon
