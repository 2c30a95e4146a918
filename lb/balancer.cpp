#include <algorithm>
#include <map>
#include <sstream>

#include "lb/balancer.hpp"

namespace swarmnet::lb {
namespace {

std::string summary(const VirtualIp& vip) {
  std::string bridge = vip.bridge.empty() ? "no bridge" : vip.bridge;
  return vip.vip.str() + " on " + bridge + ", " + std::to_string(vip.backends.size()) +
         (vip.backends.size() == 1 ? " backend" : " backends");
}

std::map<std::string, const VirtualIp*> by_key(const std::vector<VirtualIp>& vips) {
  std::map<std::string, const VirtualIp*> out;
  for (const VirtualIp& vip : vips) out.emplace(vip.key, &vip);
  return out;
}

std::vector<Ipv4Address> sorted(std::vector<Ipv4Address> addresses) {
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  return addresses;
}

}  // namespace

std::string describe_differences(const std::vector<VirtualIp>& intended,
                                 const std::vector<VirtualIp>& actual) {
  auto want = by_key(intended);
  auto have = by_key(actual);
  std::ostringstream out;
  for (const auto& [key, w] : want) {
    auto it = have.find(key);
    if (it == have.end()) {
      out << "VIP " << key << ": missing from the kernel (intended " << summary(*w) << ")\n";
      continue;
    }
    const VirtualIp& h = *it->second;
    if (h.vip != w->vip) {
      out << "VIP " << key << ": address " << h.vip.str() << " in the kernel, " << w->vip.str()
          << " intended\n";
    }
    if (h.bridge != w->bridge) {
      out << "VIP " << key << ": "
          << (h.bridge.empty() ? "no local route on any bridge" : "on bridge " + h.bridge) << ", "
          << w->bridge << " intended\n";
    }
    // Both ways: a stale backend (in the kernel only) is the one that hurts.
    auto hb = sorted(h.backends);
    auto wb = sorted(w->backends);
    std::vector<Ipv4Address> stale, missing;
    std::set_difference(hb.begin(), hb.end(), wb.begin(), wb.end(), std::back_inserter(stale));
    std::set_difference(wb.begin(), wb.end(), hb.begin(), hb.end(), std::back_inserter(missing));
    for (Ipv4Address a : stale) out << "VIP " << key << ": stale backend " << a.str() << "\n";
    for (Ipv4Address a : missing) out << "VIP " << key << ": missing backend " << a.str() << "\n";
  }
  for (const auto& [key, h] : have) {
    if (!want.count(key)) out << "VIP " << key << ": not intended, in the kernel (" << summary(*h) << ")\n";
  }
  return out.str();
}

}  // namespace swarmnet::lb
