// Swarmnet's names for Docker containers without `--dns`. A container on a
// Docker network other than the default bridge asks Docker's embedded DNS
// (127.0.0.11), which answers Docker's own names and forwards the rest,
// from inside the container's namespace, to the nameservers of the host's
// resolv.conf as dockerd read it. The driver protocol has no say in any of
// that (its Join reply carries no DNS), so the plugin meets the forwarded
// queries on the host instead: a query that arrives from a swarmnet bridge
// for one of those nameservers is redirected to the address of the bridge
// it came in on, the network's gateway, where swarmnetd answers swarmnet's
// names for that container and forwards the rest to the same nameservers.
// One nat rule in a table of the plugin's own, in the host namespace; no
// per-container state.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/ipv4.hpp"

namespace swarmnet::docker {

// Not "swarmnet" nor "swarmnet-*": those are swarmnetd's, and it removes
// the ones it does not use when it starts.
inline constexpr const char* kDnsRedirectTable = "swarmnet_docker_dns";

// The nameservers dockerd forwards to, from a resolv.conf's text: its IPv4
// nameservers but loopback ones (a loopback resolver is not reachable from
// a container, so dockerd 20.10 drops them), or, when none is left,
// Docker's own fallback, 8.8.8.8 and 8.8.4.4.
std::vector<Ipv4Address> docker_upstreams(std::string_view resolv_conf);

// The nft script that (re)creates the table for `upstreams`, and the one
// that removes it.
std::string dns_redirect_script(const std::vector<Ipv4Address>& upstreams);
std::string dns_redirect_removal();

}  // namespace swarmnet::docker
