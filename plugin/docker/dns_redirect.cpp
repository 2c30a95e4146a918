#include "plugin/docker/dns_redirect.hpp"

#include <sstream>

namespace swarmnet::docker {

std::vector<Ipv4Address> docker_upstreams(std::string_view resolv_conf) {
  std::vector<Ipv4Address> out;
  std::istringstream in{std::string(resolv_conf)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, value;
    if (!(words >> key >> value) || key != "nameserver") continue;
    const auto a = Ipv4Address::try_parse(value);
    if (!a || (a->value() >> 24) == 127) continue;
    bool seen = false;
    for (const auto& b : out) seen = seen || b == *a;
    if (!seen) out.push_back(*a);
  }
  if (out.empty()) out = {Ipv4Address::parse("8.8.8.8"), Ipv4Address::parse("8.8.4.4")};
  return out;
}

std::string dns_redirect_script(const std::vector<Ipv4Address>& upstreams) {
  std::string elements;
  for (const auto& a : upstreams) elements += (elements.empty() ? "" : ", ") + a.str();
  const std::string t = std::string("ip ") + kDnsRedirectTable;
  // "redirect" sends the packet to the primary address of the interface it
  // came in on: a swarmnet bridge's is its network's gateway.
  return "add table " + t + "\n" + "delete table " + t + "\n" + "add table " + t + "\n" +
         "add set " + t + " upstreams { type ipv4_addr; elements = { " + elements + " }; }\n" +
         "add chain " + t + " prerouting { type nat hook prerouting priority dstnat; policy accept; }\n" +
         "add rule " + t + " prerouting iifname \"swn-*\" ip daddr @upstreams meta l4proto { tcp, udp } " +
         "th dport 53 counter redirect comment \"Docker's embedded DNS forwarding: answered by swarmnetd at the gateway\"\n";
}

std::string dns_redirect_removal() {
  const std::string t = std::string("ip ") + kDnsRedirectTable;
  return "add table " + t + "\ndelete table " + t + "\n";
}

}  // namespace swarmnet::docker
