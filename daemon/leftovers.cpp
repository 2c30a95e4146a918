#include "daemon/leftovers.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "daemon/ingress/ingress.hpp"
#include "kernel/netlink.hpp"
#include "kernel/nftables.hpp"
#include "lb/vip_addresses.hpp"

namespace swarmnet::daemon {

namespace {

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// "swv" or "swc" and 12 hex digits: an endpoint's veth (controller.cpp
// names the host end after the endpoint id, the Docker driver the other).
bool is_veth_name(std::string_view name) {
  if (name.size() != 15 || !(starts_with(name, "swv") || starts_with(name, "swc"))) return false;
  return std::all_of(name.begin() + 3, name.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_swarmnet_table(std::string_view name) { return name == "swarmnet" || starts_with(name, "swarmnet-"); }

}  // namespace

bool is_swarmnet_link(std::string_view name) {
  return starts_with(name, "swn-") || starts_with(name, "swx-") || starts_with(name, "swi-") ||
         is_veth_name(name);
}

std::vector<std::string> stale_links(const std::vector<std::string>& links, const Store& store) {
  std::set<std::string> owned;
  for (const auto& [id, e] : store.networks()) {
    if (e.deleted) continue;
    owned.insert(bridge_name(id));
    owned.insert(vxlan_name(id));
  }
  for (const auto& [key, e] : store.endpoints()) {
    if (e.deleted || e.value.host_ifname.empty()) continue;
    owned.insert(e.value.host_ifname);
    owned.insert("swc" + e.value.host_ifname.substr(std::min<size_t>(3, e.value.host_ifname.size())));
  }
  for (const std::string& link : ingress_host_links(store)) owned.insert(link);
  std::vector<std::string> out;
  for (const auto& name : links) {
    if (is_swarmnet_link(name) && !owned.contains(name)) out.push_back(name);
  }
  return out;
}

std::vector<std::string> stale_tables(const std::vector<std::string>& tables,
                                      const std::set<std::string>& in_use) {
  std::vector<std::string> out;
  for (const auto& t : tables) {
    const auto space = t.find(' ');
    if (space == std::string::npos) continue;
    const std::string name = t.substr(space + 1);
    if (is_swarmnet_table(name) && !in_use.contains(name)) out.push_back(t);
  }
  return out;
}

size_t remove_stale_links(const Store& store) {
  auto nl = kernel::NetlinkSocket::open();
  std::vector<std::string> names;
  for (const auto& link : nl.links()) names.push_back(link.name);
  size_t removed = 0;
  for (const auto& name : stale_links(names, store)) {
    // A veth's peer goes with it, so a later name may be gone already.
    if (nl.delete_link(name)) {
      spdlog::info("leftovers: removed link {}: swarmnet's by its name, and no network or endpoint of "
                   "this node's state owns it",
                   name);
      ++removed;
    }
  }
  return removed;
}

size_t remove_stale_tables(const std::set<std::string>& in_use) {
  kernel::NftContext nft;
  std::vector<std::string> tables;
  const std::string listing = nft.run("list tables");
  size_t start = 0;
  while (start < listing.size()) {
    size_t end = listing.find('\n', start);
    if (end == std::string::npos) end = listing.size();
    const std::string line = listing.substr(start, end - start);
    if (starts_with(line, "table ")) tables.push_back(line.substr(6));
    start = end + 1;
  }
  size_t removed = 0;
  for (const auto& table : stale_tables(tables, in_use)) {
    nft.run("delete table " + table);
    spdlog::info("leftovers: removed nftables table {}: swarmnet's by its name, and unused by this daemon",
                 table);
    ++removed;
  }
  return removed;
}

size_t remove_stale_vips() {
  auto nl = kernel::NetlinkSocket::open();
  size_t removed = 0;
  for (const auto& [bridge, vip] : lb::list_vip_routes(nl)) {
    lb::remove_vip_route(nl, bridge, vip);
    spdlog::info("leftovers: removed the local route of VIP {} on {}: this daemon runs no balancer",
                 vip.str(), bridge);
    ++removed;
  }
  if (size_t addresses = lb::remove_legacy_vip_addresses(nl)) {
    spdlog::info(
        "leftovers: removed {} VIP address(es) of an earlier release: this daemon runs no balancer",
        addresses);
    removed += addresses;
  }
  return removed;
}

}  // namespace swarmnet::daemon
