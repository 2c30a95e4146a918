// The CNI result (and prevResult) as values, and its JSON for each spec
// version: 0.3.x/0.4.0 carry "version" on each ip, 1.0.0 drops it, 1.1.0 adds
// interface mtu/socketPath/pciID and route mtu/advmss/priority/table/scope.
// Addresses stay text: a prevResult from another plugin may hold IPv6.
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "plugin/cni/protocol.hpp"

namespace swarmnet::cni {

struct Interface {
  std::string name;
  std::string mac;
  std::string sandbox;
  std::optional<unsigned> mtu;  // 1.1.0
  std::string socket_path;      // 1.1.0
  std::string pci_id;           // 1.1.0
  bool operator==(const Interface&) const = default;
};

struct IpConfig {
  std::string address;  // CIDR, "10.1.0.5/24"
  std::string gateway;  // may be empty
  std::optional<unsigned> interface;
  bool operator==(const IpConfig&) const = default;
};

struct Route {
  std::string dst;                                       // CIDR
  std::string gw;                                        // may be empty
  std::optional<unsigned> mtu, advmss, priority, table;  // 1.1.0
  std::optional<int> scope;                              // 1.1.0
  bool operator==(const Route&) const = default;
};

struct Dns {
  std::vector<std::string> nameservers;
  std::string domain;
  std::vector<std::string> search;
  std::vector<std::string> options;
  bool operator==(const Dns&) const = default;
  bool empty() const {
    return nameservers.empty() && domain.empty() && search.empty() && options.empty();
  }
};

struct Result {
  std::vector<Interface> interfaces;
  std::vector<IpConfig> ips;
  std::vector<Route> routes;
  Dns dns;
  bool operator==(const Result&) const = default;
};

// The result object for `version` (fields the version lacks are dropped).
boost::json::object encode_result(const Result& r, SpecVersion version);
std::string encode_result_text(const Result& r, SpecVersion version);

// Decodes a result of any supported version. Throws CniError(7) naming the
// field ("prevResult.ips[0].address: expected a string") on a wrong shape.
Result decode_result(const boost::json::value& v, std::string_view where);
Dns decode_dns(const boost::json::value& v, std::string_view where);
Route decode_route(const boost::json::value& v, std::string_view where);

// Appends `ours` to `prev`, shifting the interface indexes of our ips past
// prev's interfaces, as a chained plugin must. DNS: ours fills what prev lacks.
Result append_result(Result prev, const Result& ours);

}  // namespace swarmnet::cni
