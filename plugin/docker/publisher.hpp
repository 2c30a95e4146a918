// Host-mode published ports for Docker's `-p HOST:CONTAINER`, as nftables
// rules in swarmnetd's table `inet swarmnet`: a DNAT in chain
// `published-dnat` (prerouting) and an accept in chain `published` (jumped
// to by the forward filter for traffic into a bridge). swarmnetd creates
// both chains empty and never touches their rules; every rule written here
// carries the comment "docker:ENDPOINT PROTO/PORT", which is how they are
// found again (after a restart too) and removed.
//
// Port publishing for services (issue 7) is another owner's: this file only
// ever reads and deletes rules with its own comment prefix.
#pragma once

#include <string>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/nftables.hpp"
#include "plugin/docker/driver.hpp"

namespace swarmnet::docker {

// The nft scripts, pure (unit-tested without root).
namespace publish_script {
inline constexpr std::string_view kCommentPrefix = "docker:";
// Adds the rules of one endpoint (one transaction).
std::string add(const std::string& endpoint_id, Ipv4Address container,
                const std::vector<PortBinding>& ports);
// Handles of the rules of `endpoint_id` ("" = any Docker endpoint) in a
// JSON listing of one chain (nft -j list chain ...).
std::vector<uint64_t> handles(std::string_view listing, const std::string& endpoint_id);
// "proto/port" host ports already published by other endpoints than
// `endpoint_id`, from a JSON listing of published-dnat.
std::vector<std::string> taken_ports(std::string_view listing, const std::string& endpoint_id);
}  // namespace publish_script

class NftPortPublisher : public PortPublisher {
 public:
  NftPortPublisher();
  void publish(const std::string& endpoint_id, Ipv4Address container,
               const std::vector<PortBinding>& ports) override;
  void unpublish(const std::string& endpoint_id) override;

 private:
  std::string list(const char* chain);
  std::string removal(const std::string& endpoint_id, std::string_view dnat_listing);
  kernel::NftContext nft_;
};

}  // namespace swarmnet::docker
