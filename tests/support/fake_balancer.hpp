// An lb::Balancer that holds what it was told, as the kernel would, for the
// unit tests of the parts that drive a balancer (load balancing, the
// routing mesh). The kernel balancers are tested for real in integration/.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lb/balancer.hpp"

namespace swarmnet::testing {

class FakeBalancer : public lb::Balancer {
 public:
  std::string_view name() const override { return "fake"; }
  void upsert(const lb::VirtualIp& vip) override {
    vips[vip.key] = vip;
    ++upserts;
  }
  void remove(const std::string& key) override { vips.erase(key); }
  void sync(const std::vector<lb::VirtualIp>& all) override {
    vips.clear();
    for (const auto& v : all) vips[v.key] = v;
  }
  std::vector<lb::VirtualIp> read_kernel_state() override {
    std::vector<lb::VirtualIp> out;
    for (const auto& [k, v] : vips) out.push_back(v);
    return out;
  }
  void clear() override { vips.clear(); }

  // The backends of the VIP at this address; nullopt: no such VIP programmed.
  std::optional<std::set<std::string>> backends_of(const std::string& vip) const {
    for (const auto& [k, v] : vips) {
      if (v.vip.str() != vip) continue;
      std::set<std::string> out;
      for (const auto& b : v.backends) out.insert(b.str());
      return out;
    }
    return std::nullopt;
  }

  std::map<std::string, lb::VirtualIp> vips;
  size_t upserts = 0;
};

}  // namespace swarmnet::testing
