#include "plugin/docker/publisher.hpp"

#include <algorithm>
#include <sstream>

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::docker {

namespace json = boost::json;

namespace publish_script {

namespace {
constexpr const char* kTable = "inet swarmnet";

std::string comment_of(const std::string& endpoint_id, const PortBinding& p) {
  return std::string(kCommentPrefix) + endpoint_id + " " + p.proto + "/" +
         std::to_string(p.host_port);
}

// Every rule object of a `list chain` JSON listing with its comment.
template <typename F>
void for_each_rule(std::string_view listing, F&& f) {
  json::value v = json_fields::parse(listing, "nft listing");
  const json::value* items = v.is_object() ? v.get_object().if_contains("nftables") : nullptr;
  if (!items || !items->is_array()) return;
  for (const auto& item : items->get_array()) {
    const json::object* o = item.if_object();
    const json::value* rule = o ? o->if_contains("rule") : nullptr;
    if (!rule || !rule->is_object()) continue;
    const auto& r = rule->get_object();
    const json::value* comment = r.if_contains("comment");
    const json::value* handle = r.if_contains("handle");
    if (!comment || !comment->is_string() || !handle || !handle->is_number()) continue;
    std::string_view c = comment->get_string();
    if (!c.starts_with(kCommentPrefix)) continue;
    f(c, handle->to_number<uint64_t>());
  }
}

// "docker:EID tcp/80" -> ("EID", "tcp/80")
std::pair<std::string, std::string> split_comment(std::string_view c) {
  c.remove_prefix(kCommentPrefix.size());
  auto sp = c.find(' ');
  if (sp == std::string_view::npos) return {std::string(c), ""};
  return {std::string(c.substr(0, sp)), std::string(c.substr(sp + 1))};
}
}  // namespace

std::string add(const std::string& endpoint_id, Ipv4Address container,
                const std::vector<PortBinding>& ports) {
  std::ostringstream s;
  for (const auto& p : ports) {
    const std::string comment = comment_of(endpoint_id, p);
    // Only traffic addressed to this host (or to the -p address): the DNAT
    // must not catch forwarded traffic that merely uses the same port.
    std::string match = p.host_ip ? "ip daddr " + p.host_ip->str() : "fib daddr type local";
    s << "add rule " << kTable << " published-dnat meta nfproto ipv4 " << match << " "
      << p.proto << " dport " << p.host_port << " dnat ip to " << container.str() << ":"
      << p.container_port << " comment \"" << comment << "\"\n";
    s << "add rule " << kTable << " published ip daddr " << container.str() << " " << p.proto
      << " dport " << p.container_port << " ct status dnat accept comment \"" << comment
      << "\"\n";
  }
  return s.str();
}

std::vector<uint64_t> handles(std::string_view listing, const std::string& endpoint_id) {
  std::vector<uint64_t> out;
  for_each_rule(listing, [&](std::string_view c, uint64_t h) {
    if (endpoint_id.empty() || split_comment(c).first == endpoint_id) out.push_back(h);
  });
  return out;
}

std::vector<std::string> taken_ports(std::string_view listing, const std::string& endpoint_id) {
  std::vector<std::string> out;
  for_each_rule(listing, [&](std::string_view c, uint64_t) {
    auto [eid, port] = split_comment(c);
    if (eid != endpoint_id) out.push_back(port);
  });
  return out;
}

}  // namespace publish_script

NftPortPublisher::NftPortPublisher() = default;

std::string NftPortPublisher::list(const char* chain) {
  try {
    return nft_.run(std::string("list chain inet swarmnet ") + chain,
                    kernel::NftContext::Output::json);
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
    throw Error(Errc::unavailable, std::string("chain inet swarmnet ") + chain +
                                       " is missing: is swarmnetd running on this host?");
  }
}

// The deletion of the rules of `endpoint_id`, given a listing of
// published-dnat. They are added and deleted in pairs, in one transaction
// each, so `published` is only read when published-dnat holds some.
std::string NftPortPublisher::removal(const std::string& endpoint_id,
                                      std::string_view dnat_listing) {
  const auto dnat = publish_script::handles(dnat_listing, endpoint_id);
  if (dnat.empty()) return "";
  std::ostringstream s;
  for (uint64_t h : dnat) s << "delete rule inet swarmnet published-dnat handle " << h << "\n";
  for (uint64_t h : publish_script::handles(list("published"), endpoint_id)) {
    s << "delete rule inet swarmnet published handle " << h << "\n";
  }
  return s.str();
}

void NftPortPublisher::publish(const std::string& endpoint_id, Ipv4Address container,
                               const std::vector<PortBinding>& ports) {
  const std::string dnat = list("published-dnat");
  const auto taken = publish_script::taken_ports(dnat, endpoint_id);
  for (const auto& p : ports) {
    std::string key = p.proto + "/" + std::to_string(p.host_port);
    if (std::find(taken.begin(), taken.end(), key) != taken.end()) {
      throw Error(Errc::conflict, "host port " + key + " is already published by another container");
    }
  }
  // The old rules go and the new come in one transaction.
  nft_.run(removal(endpoint_id, dnat) + publish_script::add(endpoint_id, container, ports));
}

void NftPortPublisher::unpublish(const std::string& endpoint_id) {
  std::string dnat;
  try {
    dnat = list("published-dnat");
  } catch (const Error& e) {
    if (e.code() == Errc::unavailable) return;  // no table: nothing of ours left either
    throw;
  }
  if (std::string script = removal(endpoint_id, dnat); !script.empty()) nft_.run(script);
}

}  // namespace swarmnet::docker
