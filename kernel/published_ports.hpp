// Ports published on this host: a DNAT and an accept rule per port in
// swarmnetd's table `inet swarmnet`, in the chains `published-dnat`
// (prerouting) and `published` (jumped to by the forward filter for traffic
// into a bridge), and the same DNAT in `published-dnat-local` (output: the
// host's own processes, localhost:PORT included), which swarmnetd's
// firewall creates empty and never rewrites. Three owners write there:
// swarmnetd's host-mode publishing (services' host-mode ports and the CNI
// portMappings capability, owner "host", daemon/host_ports.hpp), its
// routing mesh (each ingress port to the service's ingress VIP, owner
// "ingress", daemon/ingress/routing_mesh.hpp), and swarmnet-docker (Docker's -p,
// owner "docker"). Every rule carries the comment "OWNER:ID PROTO/PORT":
// that is how an owner finds its rules again (after a restart too), and how
// each sees a port that another already published, so one host port never
// goes to two containers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipv4.hpp"
#include "kernel/nftables.hpp"

namespace swarmnet::kernel {

struct PublishedPort {
  std::string protocol;  // "tcp", "udp" or "sctp"
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  std::optional<Ipv4Address> host_ip;  // nullopt: every local address of the host
  auto operator<=>(const PublishedPort&) const = default;
};

// A DNAT spread by a hash of the flow over this host's own targets and the
// rule's default target (the routing mesh's shortcut: a service's tasks on
// this node are DNATed to straight, as in host mode, and the share of the
// tasks of other nodes goes to the ingress VIP, whose balancer then picks
// among those only). Empty `direct`: one plain DNAT to the default target.
struct Spread {
  std::vector<Ipv4Address> direct;  // one hash slot each
  unsigned shared = 0;              // hash slots of the default target
  auto operator<=>(const Spread&) const = default;
};

// The nft scripts and the reading of listings, pure (tested without root).
namespace published_ports_script {
// The rules of one container, to add in one transaction; `local`: also in
// published-dnat-local (the host's own processes). With a spread, each
// port's DNAT picks one of spread.direct and `container` by a hash of the
// flow (jhash of the client's address and port, mod the number of slots),
// and `published` accepts the direct targets' port too.
std::string add(std::string_view owner, const std::string& id, Ipv4Address container,
                const std::vector<PublishedPort>& ports, bool local = true, const Spread& spread = {});
struct ListedRule {
  std::string owner;
  std::string id;
  std::string port;  // "tcp/8080"
  uint64_t handle = 0;
};
// The rules of a JSON listing of one chain (nft -j list chain ...) that
// carry a published-port comment; other rules are skipped.
std::vector<ListedRule> rules(std::string_view listing);
}  // namespace published_ports_script

class PublishedPorts {
 public:
  // owner: "host" or "docker"; runs in the calling thread's namespace.
  explicit PublishedPorts(std::string owner);

  // Makes the rules of `id` exactly `ports` (old ones out, new ones in, one
  // transaction). Error(conflict) naming the holder when a host port is
  // published already by another id, of any owner; Error(unavailable) when
  // swarmnetd's chains are missing. `spread`: see published_ports_script::add.
  void replace(const std::string& id, Ipv4Address container, const std::vector<PublishedPort>& ports,
               const Spread& spread = {});
  // Removes the rules of `id`; nothing to do when it has none (or when the
  // table is gone).
  void remove(const std::string& id);
  // The ids of this owner that have rules.
  std::set<std::string> ids();
  // Every published host port ("tcp/8080") and its holder ("docker:ID").
  std::map<std::string, std::string> taken();

 private:
  std::string list(const char* chain);
  std::string removal(const std::string& id, std::string_view dnat_listing,
                      const std::optional<std::string>& local_listing);
  std::optional<std::string> list_local();

  std::string owner_;
  NftContext nft_;
};

}  // namespace swarmnet::kernel
