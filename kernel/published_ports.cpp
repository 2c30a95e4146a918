#include "kernel/published_ports.hpp"

#include <sstream>

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::kernel {

namespace json = boost::json;

namespace published_ports_script {

namespace {
constexpr const char* kTable = "inet swarmnet";
// The spread's hash seed: not the balancers' (lb/), so that the choice here
// and a balancer's choice behind it for the same flow are independent.
constexpr const char* kSpreadSeed = "0x4e5c0003";

std::string port_key(const PublishedPort& p) { return p.protocol + "/" + std::to_string(p.host_port); }

// "dnat ip to ..." of one port: the container, or the spread's hash map.
std::string dnat_target(Ipv4Address container, const PublishedPort& p, const Spread& spread) {
  const std::string port = std::to_string(p.container_port);
  if (spread.direct.empty()) return "dnat ip to " + container.str() + ":" + port;
  std::vector<Ipv4Address> slots = spread.direct;
  slots.insert(slots.end(), spread.shared, container);
  // The client's address and port: one flow, one slot (and conntrack keeps
  // the choice for the flow's life anyway).
  std::string s = "dnat ip to jhash ip saddr . " + p.protocol + " sport mod " + std::to_string(slots.size()) +
                  " seed " + kSpreadSeed + " map { ";
  for (size_t i = 0; i < slots.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(i) + " : " + slots[i].str() + " . " + port;
  }
  return s + " }";
}

}  // namespace

std::string add(std::string_view owner, const std::string& id, Ipv4Address container,
                const std::vector<PublishedPort>& ports, bool local, const Spread& spread) {
  std::ostringstream s;
  for (const auto& p : ports) {
    const std::string comment = std::string(owner) + ":" + id + " " + port_key(p);
    // Only traffic addressed to this host (or to the chosen address): the
    // DNAT must not catch forwarded traffic that merely uses the same port.
    const std::string match = p.host_ip ? "ip daddr " + p.host_ip->str() : "fib daddr type local";
    const std::string dnat = " meta nfproto ipv4 " + match + " " + p.protocol + " dport " +
                             std::to_string(p.host_port) + " " + dnat_target(container, p, spread) +
                             " comment \"" + comment + "\"\n";
    s << "add rule " << kTable << " published-dnat" << dnat;
    // The host's own processes (localhost:PORT, the node's own address)
    // reach the port too, as from outside.
    if (local) s << "add rule " << kTable << " published-dnat-local" << dnat;
    s << "add rule " << kTable << " published ip daddr " << container.str() << " " << p.protocol
      << " dport " << p.container_port << " ct status dnat accept comment \"" << comment << "\"\n";
    if (!spread.direct.empty()) {
      s << "add rule " << kTable << " published ip daddr { ";
      for (size_t i = 0; i < spread.direct.size(); ++i) s << (i ? ", " : "") << spread.direct[i].str();
      s << " } " << p.protocol << " dport " << p.container_port << " ct status dnat accept comment \"" << comment
        << "\"\n";
    }
  }
  return s.str();
}

std::vector<ListedRule> rules(std::string_view listing) {
  std::vector<ListedRule> out;
  json::value v = json_fields::parse(listing, "nft listing");
  const json::value* items = v.is_object() ? v.get_object().if_contains("nftables") : nullptr;
  if (!items || !items->is_array()) return out;
  for (const auto& item : items->get_array()) {
    const json::object* o = item.if_object();
    const json::value* rule = o ? o->if_contains("rule") : nullptr;
    if (!rule || !rule->is_object()) continue;
    const auto& r = rule->get_object();
    const json::value* comment = r.if_contains("comment");
    const json::value* handle = r.if_contains("handle");
    if (!comment || !comment->is_string() || !handle || !handle->is_number()) continue;
    // "OWNER:ID PROTO/PORT"
    const std::string_view c = comment->get_string();
    const auto colon = c.find(':');
    const auto space = c.find(' ');
    if (colon == std::string_view::npos || space == std::string_view::npos || space < colon) continue;
    out.push_back(ListedRule{std::string(c.substr(0, colon)), std::string(c.substr(colon + 1, space - colon - 1)),
                             std::string(c.substr(space + 1)), handle->to_number<uint64_t>()});
  }
  return out;
}

}  // namespace published_ports_script

PublishedPorts::PublishedPorts(std::string owner) : owner_(std::move(owner)) {}

std::string PublishedPorts::list(const char* chain) {
  try {
    return nft_.run(std::string("list chain inet swarmnet ") + chain, NftContext::Output::json);
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
    throw Error(Errc::unavailable, std::string("chain inet swarmnet ") + chain +
                                       " is missing: is swarmnetd running on this host?");
  }
}

// The deletion of the rules of `id`, given a listing of published-dnat.
// They are added and deleted in pairs, in one transaction each, so
// `published` is only read when published-dnat holds some.
std::string PublishedPorts::removal(const std::string& id, std::string_view dnat_listing,
                                    const std::optional<std::string>& local_listing) {
  std::ostringstream s;
  auto mine = [&](const published_ports_script::ListedRule& r) { return r.owner == owner_ && r.id == id; };
  for (const auto& r : published_ports_script::rules(dnat_listing)) {
    if (mine(r)) s << "delete rule inet swarmnet published-dnat handle " << r.handle << "\n";
  }
  if (s.tellp() == 0) return "";
  for (const auto& r : published_ports_script::rules(list("published"))) {
    if (mine(r)) s << "delete rule inet swarmnet published handle " << r.handle << "\n";
  }
  if (local_listing) {
    for (const auto& r : published_ports_script::rules(*local_listing)) {
      if (mine(r)) s << "delete rule inet swarmnet published-dnat-local handle " << r.handle << "\n";
    }
  }
  return s.str();
}

// The listing of published-dnat-local; nullopt when the chain is missing
// (a swarmnetd older than it: its ports then answer only from outside).
std::optional<std::string> PublishedPorts::list_local() {
  try {
    return list("published-dnat-local");
  } catch (const Error& e) {
    if (e.code() == Errc::unavailable) return std::nullopt;
    throw;
  }
}

void PublishedPorts::replace(const std::string& id, Ipv4Address container,
                             const std::vector<PublishedPort>& ports, const Spread& spread) {
  const std::string dnat = list("published-dnat");
  std::map<std::string, std::string> holders;
  for (const auto& r : published_ports_script::rules(dnat)) {
    if (r.owner != owner_ || r.id != id) holders.emplace(r.port, r.owner + ":" + r.id);
  }
  for (const auto& p : ports) {
    const std::string key = p.protocol + "/" + std::to_string(p.host_port);
    if (auto it = holders.find(key); it != holders.end()) {
      throw Error(Errc::conflict, "host port " + key + " is already published on this host (by " + it->second + ")");
    }
  }
  const std::optional<std::string> local = list_local();
  const std::string script =
      removal(id, dnat, local) + published_ports_script::add(owner_, id, container, ports, local.has_value(), spread);
  if (!script.empty()) nft_.run(script);
}

void PublishedPorts::remove(const std::string& id) {
  std::string dnat;
  try {
    dnat = list("published-dnat");
  } catch (const Error& e) {
    if (e.code() == Errc::unavailable) return;  // no table: nothing of ours left either
    throw;
  }
  if (std::string script = removal(id, dnat, list_local()); !script.empty()) nft_.run(script);
}

std::set<std::string> PublishedPorts::ids() {
  std::set<std::string> out;
  for (const auto& r : published_ports_script::rules(list("published-dnat"))) {
    if (r.owner == owner_) out.insert(r.id);
  }
  return out;
}

std::map<std::string, std::string> PublishedPorts::taken() {
  std::map<std::string, std::string> out;
  for (const auto& r : published_ports_script::rules(list("published-dnat"))) out.emplace(r.port, r.owner + ":" + r.id);
  return out;
}

}  // namespace swarmnet::kernel
