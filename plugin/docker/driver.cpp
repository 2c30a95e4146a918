#include "plugin/docker/driver.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "common/api_client.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/random.hpp"

namespace swarmnet::docker {

namespace jf = json_fields;

namespace {

[[noreturn]] void fail(Errc code, const std::string& message) {
  throw Error(code, message);
}

std::string networks_target() { return "/v1/networks"; }
std::string network_target(const std::string& id) { return "/v1/networks/" + url_segment(id); }
std::string endpoints_target(const std::string& network_id) {
  return network_target(network_id) + "/endpoints";
}
std::string endpoint_target(const std::string& network_id, const std::string& container_id,
                            const std::string& ifname) {
  return endpoints_target(network_id) + "/" + url_segment(container_id) + "/" +
         url_segment(ifname);
}

std::string short_id(const std::string& id) { return id.substr(0, 12); }

// The request that makes this network again as it is.
api::NetworkCreate create_request_of(const api::Network& n) {
  api::NetworkCreate c;
  c.name = n.name;
  c.subnet = n.subnet;
  c.gateway = n.gateway;
  c.mtu = n.mtu;
  c.internal = n.internal;
  c.encrypted = n.encrypted;
  c.ip_range = n.ip_range;
  return c;
}

}  // namespace

std::string container_end_name(const std::string& host_ifname) {
  // swarmnetd names the host end "swv" + 12 characters of the endpoint id.
  return "swc" + host_ifname.substr(std::min<size_t>(3, host_ifname.size()));
}

std::string generated_network_name(const std::optional<Ipv4Prefix>& subnet) {
  if (!subnet) return "docker-" + random_hex(6);
  std::string s = "docker-" + subnet->network().str() + "-" + std::to_string(subnet->length());
  return s;
}

// --- StateDir ---------------------------------------------------------------

StateDir::StateDir(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  for (const char* sub : {"networks", "pools"}) {
    std::filesystem::create_directories(dir_ + "/" + sub, ec);
    if (ec) fail(Errc::internal, "cannot create " + dir_ + "/" + sub + ": " + ec.message());
  }
}

std::optional<StateDir::NetworkEntry> StateDir::network(const std::string& id) const {
  auto text = read_file(dir_ + "/networks/" + id);
  if (!text) return std::nullopt;
  try {
    const json::value doc = jf::parse(*text, "state file");
    const auto& o = jf::as_object(doc, "state file");
    NetworkEntry e;
    e.network_id = jf::required_string(o, "network_id");
    e.name = jf::required_string(o, "name");
    e.subnet = Ipv4Prefix::parse(jf::required_string(o, "subnet"));
    e.gateway = Ipv4Address::parse(jf::required_string(o, "gateway"));
    e.internal = jf::bool_or(o, "internal", false);  // absent in files of older releases
    return e;
  } catch (const Error& e) {
    fail(Errc::internal, "state file " + dir_ + "/networks/" + id + " is damaged: " + e.what());
  }
}

void StateDir::put_network(const std::string& id, const NetworkEntry& e) {
  json::object o{{"network_id", e.network_id},
                 {"name", e.name},
                 {"subnet", e.subnet.str()},
                 {"gateway", e.gateway.str()},
                 {"internal", e.internal}};
  write_file_atomically(dir_ + "/networks", id, json::serialize(o));
}

bool StateDir::erase_network(const std::string& id) {
  return ::unlink((dir_ + "/networks/" + id).c_str()) == 0;
}

std::optional<StateDir::PoolEntry> StateDir::pool(const std::string& id) const {
  auto text = read_file(dir_ + "/pools/" + id);
  if (!text) return std::nullopt;
  try {
    const json::value doc = jf::parse(*text, "state file");
    const auto& o = jf::as_object(doc, "state file");
    PoolEntry e{jf::required_string(o, "network_id"), jf::required_string(o, "name"),
                jf::bool_or(o, "created", false), std::nullopt};
    if (auto r = jf::optional_string(o, "ip_range")) e.ip_range = Ipv4Prefix::parse_network(*r);
    return e;
  } catch (const Error& e) {
    fail(Errc::internal, "state file " + dir_ + "/pools/" + id + " is damaged: " + e.what());
  }
}

void StateDir::put_pool(const std::string& id, const PoolEntry& e) {
  json::object o{{"network_id", e.network_id}, {"name", e.name}, {"created", e.created}};
  if (e.ip_range) o["ip_range"] = e.ip_range->str();
  write_file_atomically(dir_ + "/pools", id, json::serialize(o));
}

std::optional<std::string> StateDir::pool_of_network(const std::string& network_id) const {
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir_ + "/pools", ec)) {
    const std::string id = f.path().filename().string();
    if (auto e = pool(id); e && e->network_id == network_id) return id;
  }
  return std::nullopt;
}

bool StateDir::erase_pool(const std::string& id) {
  return ::unlink((dir_ + "/pools/" + id).c_str()) == 0;
}

// --- Driver -----------------------------------------------------------------

Driver::Driver(DaemonApi& daemon, HostLinks& links, PortPublisher& publisher, StateDir& state,
               EndpointNamer* namer)
    : daemon_(daemon), links_(links), publisher_(publisher), state_(state), namer_(namer) {}

std::pair<unsigned, json::object> Driver::handle(const std::string& method,
                                                 std::string_view body) {
  const Protocol protocol = protocol_of(method);
  if (protocol == Protocol::unknown) {
    return {404, error_reply(Protocol::network, "unknown plugin method " + method)};
  }
  std::lock_guard lock(mutex_);
  try {
    // Activate and the capability calls come with an empty body.
    json::value parsed = body.empty() ? json::value(json::object{}) : jf::parse(body, method);
    return {200, dispatch(method, parsed)};
  } catch (const std::exception& e) {
    spdlog::warn("{}: {}", method, e.what());
    return {200, error_reply(protocol, e.what())};
  }
}

json::object Driver::dispatch(const std::string& m, const json::value& b) {
  if (m == "/Plugin.Activate") return activate_reply();
  // IPAM
  if (m == "/IpamDriver.GetCapabilities") return ipam_capabilities_reply();
  if (m == "/IpamDriver.GetDefaultAddressSpaces") return address_spaces_reply();
  if (m == "/IpamDriver.RequestPool") return request_pool(parse_request_pool(b));
  if (m == "/IpamDriver.ReleasePool") return release_pool(parse_release_pool(b));
  if (m == "/IpamDriver.RequestAddress") return request_address(parse_request_address(b));
  if (m == "/IpamDriver.ReleaseAddress") return release_address(parse_release_address(b));
  // Network
  if (m == "/NetworkDriver.GetCapabilities") return network_capabilities_reply();
  if (m == "/NetworkDriver.CreateNetwork") return create_network(parse_create_network(b));
  if (m == "/NetworkDriver.DeleteNetwork") return delete_network(parse_network_ref(b));
  if (m == "/NetworkDriver.AllocateNetwork") {
    // Swarm-mode managers only; swarmnet keeps Docker out of cluster state.
    parse_network_ref(b);
    return {{"Options", json::object{}}};
  }
  if (m == "/NetworkDriver.FreeNetwork") {
    parse_network_ref(b);
    return {};
  }
  if (m == "/NetworkDriver.CreateEndpoint") return create_endpoint(parse_create_endpoint(b));
  if (m == "/NetworkDriver.DeleteEndpoint") return delete_endpoint(parse_endpoint_ref(b));
  if (m == "/NetworkDriver.EndpointOperInfo") return endpoint_info(parse_endpoint_ref(b));
  if (m == "/NetworkDriver.Join") return join(parse_join(b));
  if (m == "/NetworkDriver.Leave") return leave(parse_endpoint_ref(b));
  if (m == "/NetworkDriver.ProgramExternalConnectivity") {
    return program_external(parse_program_external_connectivity(b));
  }
  if (m == "/NetworkDriver.RevokeExternalConnectivity") {
    return revoke_external(parse_endpoint_ref(b));
  }
  if (m == "/NetworkDriver.DiscoverNew" || m == "/NetworkDriver.DiscoverDelete") {
    // Node discovery is swarmnetd's gossip; Docker's notifications add nothing.
    jf::as_object(b, "request body");
    return {};
  }
  fail(Errc::not_found, "unknown plugin method " + m);
}

const std::string& Driver::node_id() {
  if (node_id_.empty()) {
    node_id_ = json::value_to<api::Status>(daemon_.call("GET", "/v1/status")).node_id;
  }
  return node_id_;
}

std::optional<api::Network> Driver::find_network(const std::string& name_or_id) {
  try {
    return json::value_to<api::Network>(daemon_.call("GET", network_target(name_or_id)));
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
    return std::nullopt;
  }
}

std::optional<api::Network> Driver::find_network_by_subnet(const Ipv4Prefix& subnet) {
  auto all = json::value_to<std::vector<api::Network>>(daemon_.call("GET", networks_target()));
  for (auto& n : all) {
    if (n.subnet.network() == subnet.network() && n.subnet.length() == subnet.length()) {
      return std::move(n);
    }
  }
  return std::nullopt;
}

// --- IPAM -------------------------------------------------------------------

json::object Driver::request_pool(const RequestPool& r) {
  if (r.v6) fail(Errc::invalid_argument, "swarmnet networks are IPv4 only: drop --ipv6");
  if (r.sub_pool && (!r.pool || !r.pool->contains(*r.sub_pool))) {
    fail(Errc::invalid_argument, "--ip-range " + r.sub_pool->str() + " must lie inside --subnet" +
                                     (r.pool ? " " + r.pool->str() : ""));
  }
  if (r.pool) {
    if (auto why = api::subnet_refusal(*r.pool)) fail(Errc::invalid_argument, *why);
  }
  std::optional<api::Network> network;
  std::string wanted_name;
  if (auto it = r.options.find(kNetworkOption); it != r.options.end()) {
    wanted_name = it->second;
    if (!api::valid_network_name(wanted_name)) {
      fail(Errc::invalid_argument, "--ipam-opt swarmnet.network: invalid network name \"" +
                                       wanted_name + "\"");
    }
    network = find_network(wanted_name);
    if (network && r.pool && network->subnet.network() != r.pool->network()) {
      fail(Errc::conflict, "swarmnet network " + wanted_name + " has subnet " +
                               network->subnet.str() + ", not " + r.pool->str());
    }
  } else if (r.pool) {
    network = find_network_by_subnet(*r.pool);
  }
  bool created = false;
  if (!network) {
    api::NetworkCreate create;
    create.name = wanted_name.empty() ? generated_network_name(r.pool) : wanted_name;
    create.subnet = r.pool;
    // The range is the network's: its blocks are cut to fit it, so that
    // every node can get a block of it (one not yet given is its creator's).
    create.ip_range = r.sub_pool;
    json::value body = json::value_from(create);
    network = json::value_to<api::Network>(daemon_.call("POST", networks_target(), &body));
    created = true;
    spdlog::info("RequestPool: created swarmnet network {} ({})", network->name,
                 network->subnet.str());
  }
  if (state_.pool_of_network(network->id)) {
    if (created) daemon_.call("DELETE", network_target(network->id));
    fail(Errc::conflict, "swarmnet network " + network->name +
                             " is already the pool of another Docker network on this host");
  }
  state_.put_pool(network->id, {network->id, network->name, created, r.sub_pool});
  spdlog::info("RequestPool: pool {} = swarmnet network {} {}", short_id(network->id),
               network->name, network->subnet.str());
  return request_pool_reply(network->id, Ipv4Prefix(network->subnet.network(),
                                                    network->subnet.length()),
                            network->gateway);
}

json::object Driver::release_pool(const ReleasePool& r) {
  auto pool = state_.pool(r.pool_id);
  if (!pool) fail(Errc::not_found, "unknown pool " + r.pool_id);
  if (pool->created) {
    try {
      daemon_.call("DELETE", network_target(pool->network_id));
      spdlog::info("ReleasePool: deleted swarmnet network {}", pool->name);
    } catch (const Error& e) {
      // Another host's containers may still use it: it stays, ours goes.
      if (e.code() != Errc::not_found) {
        spdlog::warn("ReleasePool: swarmnet network {} stays: {}", pool->name, e.what());
      }
    }
  }
  state_.erase_pool(r.pool_id);
  return {};
}

std::vector<api::Endpoint> Driver::endpoints(const std::string& network_id) {
  return json::value_to<std::vector<api::Endpoint>>(
      daemon_.call("GET", endpoints_target(network_id)));
}

const api::Endpoint* Driver::reservation_in(const std::vector<api::Endpoint>& eps,
                                            Ipv4Address a) {
  for (const auto& e : eps) {
    if (e.node == node_id() && !e.attach && e.container_id.starts_with(kReservationPrefix) &&
        e.address.address() == a) {
      return &e;
    }
  }
  return nullptr;
}

api::Endpoint Driver::reserve(const std::string& network_id, std::optional<Ipv4Address> address,
                              std::optional<Ipv4Prefix> range) {
  api::EndpointCreate req;
  req.container_id = kReservationPrefix + random_hex(8);
  req.ifname = kEndpointIfname;
  req.attach = false;
  req.owner = api::kOwnerDocker;
  if (address) req.static_ips = {*address};
  req.ip_range = range;
  json::value body = json::value_from(req);
  return json::value_to<api::Endpoint>(daemon_.call("POST", endpoints_target(network_id), &body));
}

json::object Driver::request_address(const RequestAddress& r) {
  auto pool = state_.pool(r.pool_id);
  if (!pool) fail(Errc::not_found, "unknown pool " + r.pool_id);
  if (r.gateway()) {
    // The gateway is the network's own (on every host's bridge), not an
    // allocation. A network this plugin made for the pool takes another
    // --gateway: CreateNetwork remakes it with that gateway. One that
    // existed before keeps its own.
    auto n = find_network(pool->network_id);
    if (!n) fail(Errc::not_found, "swarmnet network " + pool->name + " no longer exists");
    if (r.address && *r.address != n->gateway) {
      if (!pool->created) {
        fail(Errc::invalid_argument, "swarmnet network " + n->name + " has gateway " +
                                         n->gateway.str() + ": --gateway " + r.address->str() +
                                         " cannot be used");
      }
      if (!n->subnet.contains(*r.address) || *r.address == n->subnet.network() ||
          *r.address == n->subnet.broadcast()) {
        fail(Errc::invalid_argument, "--gateway " + r.address->str() +
                                         " is not a host address of the subnet " + n->subnet.str());
      }
      return request_address_reply(Ipv4Prefix(*r.address, n->subnet.length()));
    }
    return request_address_reply(Ipv4Prefix(n->gateway, n->subnet.length()));
  }
  if (!r.address && pool->ip_range) {
    // swarmnetd picks inside the range, and gets a block of it from the
    // node that owns one when this node has no free address there.
    api::Endpoint e = reserve(pool->network_id, std::nullopt, pool->ip_range);
    spdlog::info("RequestAddress: {} on {} (--ip-range {})", e.address.str(), pool->name,
                 pool->ip_range->str());
    return request_address_reply(e.address);
  }
  api::Endpoint e = reserve(pool->network_id, r.address);
  spdlog::info("RequestAddress: {} on {}", e.address.str(), pool->name);
  return request_address_reply(e.address);
}

json::object Driver::release_address(const ReleaseAddress& r) {
  auto pool = state_.pool(r.pool_id);
  if (!pool) fail(Errc::not_found, "unknown pool " + r.pool_id);
  const auto eps = endpoints(pool->network_id);
  const api::Endpoint* res = reservation_in(eps, r.address);
  if (!res) {
    auto n = find_network(pool->network_id);
    if (n && n->gateway == r.address) return {};  // the gateway: never allocated
    fail(Errc::not_found, "address " + r.address.str() + " is not allocated in pool " +
                              pool->name + " on this host");
  }
  daemon_.call("DELETE", endpoint_target(pool->network_id, res->container_id, res->ifname));
  spdlog::info("ReleaseAddress: {} on {}", r.address.str(), pool->name);
  return {};
}

// --- NetworkDriver ------------------------------------------------------------

StateDir::NetworkEntry Driver::network_of(const std::string& docker_network_id) const {
  auto e = state_.network(docker_network_id);
  if (!e) fail(Errc::not_found, "unknown network " + docker_network_id);
  return *e;
}

std::optional<api::Endpoint> Driver::find_endpoint(const std::string& network_id,
                                                   const std::string& container_id) {
  try {
    return json::value_to<api::Endpoint>(
        daemon_.call("GET", endpoint_target(network_id, container_id, kEndpointIfname)));
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
    return std::nullopt;
  }
}

api::Endpoint Driver::endpoint_of(const StateDir::NetworkEntry& n, const std::string& eid) {
  auto e = find_endpoint(n.network_id, eid);
  if (!e) fail(Errc::not_found, "unknown endpoint " + eid + " on network " + n.name);
  return *e;
}

api::Network Driver::recreate(const std::string& pool_id, const api::Network& old,
                              const api::NetworkCreate& wanted) {
  // Docker's IPAM call (RequestPool, which made the network) comes before
  // the network driver learns --internal, the MTU and the gateway; the
  // network has no endpoint yet, so it is made again with them.
  daemon_.call("DELETE", network_target(old.id));
  json::value body = json::value_from(wanted);
  api::Network made;
  try {
    made = json::value_to<api::Network>(daemon_.call("POST", networks_target(), &body));
  } catch (const Error& e) {
    // Put back the network the pool names, so the pool stays usable
    // and Docker's ReleasePool finds what it expects.
    json::value b = json::value_from(create_request_of(old));
    try {
      const auto restored = json::value_to<api::Network>(daemon_.call("POST", networks_target(), &b));
      state_.put_pool(pool_id, {restored.id, restored.name, true, state_.pool(pool_id)->ip_range});
    } catch (const Error& e2) {
      spdlog::error("CreateNetwork: could not restore swarmnet network {}: {}", old.name, e2.what());
    }
    throw;
  }
  auto entry = *state_.pool(pool_id);
  entry.network_id = made.id;
  state_.put_pool(pool_id, entry);
  spdlog::info("CreateNetwork: swarmnet network {} made again: gateway {} mtu {}{}", made.name,
               made.gateway.str(), made.mtu, made.internal ? " internal" : "");
  return made;
}

json::object Driver::create_network(const CreateNetwork& r) {
  if (r.ipv6_pools > 0) fail(Errc::invalid_argument, "swarmnet networks are IPv4 only: drop --ipv6");
  if (r.ipv4.size() != 1) {
    fail(Errc::invalid_argument, "a swarmnet network has exactly one IPv4 subnet, got " +
                                     std::to_string(r.ipv4.size()));
  }
  const IpamData& data = r.ipv4.front();
  auto network = find_network_by_subnet(data.pool);
  if (!network) {
    fail(Errc::invalid_argument, "no swarmnet network has subnet " + data.pool.str() +
                                     ": create the Docker network with --ipam-driver swarmnet");
  }
  if (auto it = r.generic_options.find(kNetworkOption);
      it != r.generic_options.end() && it->second != network->name && it->second != network->id) {
    fail(Errc::invalid_argument, "-o swarmnet.network=" + it->second + " but subnet " +
                                     data.pool.str() + " is swarmnet network " + network->name);
  }
  std::optional<unsigned> mtu;
  bool encrypted = false;
  for (const auto& [key, value] : r.generic_options) {
    if (key == kNetworkOption) continue;
    if (key == kEncryptedOption) {
      encrypted = true;
      continue;
    }
    if (key == kMtuOption) {
      const auto n = parse_port(value);  // a decimal 1-65535; swarmnetd checks the range
      if (!n) fail(Errc::invalid_argument, "-o " + key + "=" + value + ": not a number");
      mtu = *n;
      continue;
    }
    // Dropping an option silently would leave the user believing it holds.
    fail(Errc::invalid_argument, "-o " + key + " is not supported by swarmnet (it takes " +
                                     kMtuOption + ", " + kEncryptedOption + " and " + kNetworkOption + ")");
  }
  if (auto prev = state_.network(r.network_id); prev && prev->network_id != network->id) {
    fail(Errc::conflict, "Docker network " + r.network_id + " is already swarmnet network " +
                             prev->name);
  }
  const std::optional<Ipv4Address> gateway =
      data.gateway ? std::optional(data.gateway->address()) : std::nullopt;
  const bool differs = (gateway && *gateway != network->gateway) ||
                       (mtu && *mtu != network->mtu) || r.internal != network->internal ||
                       (encrypted && !network->encrypted);
  if (differs) {
    const auto pool_id = state_.pool_of_network(network->id);
    const auto pool = pool_id ? state_.pool(*pool_id) : std::nullopt;
    if (!pool || !pool->created) {
      // Options are the network's, cluster-wide; set where it is created.
      fail(Errc::invalid_argument,
           "swarmnet network " + network->name + " exists with gateway " + network->gateway.str() +
               ", mtu " + std::to_string(network->mtu) + (network->internal ? ", internal" : ", not internal") +
               (network->encrypted ? ", encrypted" : ", not encrypted") +
               ": give the Docker network the same (--gateway, -o " + kMtuOption +
               ", --internal, -o encrypted), or set them with swarmnetctl network create");
    }
    api::NetworkCreate wanted = create_request_of(*network);
    wanted.gateway = gateway;
    wanted.mtu = mtu;
    wanted.internal = r.internal;
    wanted.encrypted = encrypted || network->encrypted;
    network = recreate(*pool_id, *network, wanted);
  }
  state_.put_network(r.network_id, {network->id, network->name, network->subnet, network->gateway,
                                    network->internal});
  spdlog::info("CreateNetwork: Docker network {} = swarmnet network {}", short_id(r.network_id),
               network->name);
  return {};
}

json::object Driver::delete_network(const NetworkRef& r) {
  if (!state_.network(r.network_id)) fail(Errc::not_found, "unknown network " + r.network_id);
  state_.erase_network(r.network_id);
  spdlog::info("DeleteNetwork: Docker network {}", short_id(r.network_id));
  return {};
}

json::object Driver::create_endpoint(const CreateEndpoint& r) {
  const auto n = network_of(r.network_id);
  if (r.has_ipv6) fail(Errc::invalid_argument, "swarmnet networks are IPv4 only");
  if (!r.address) {
    fail(Errc::invalid_argument, "endpoint without an IPv4 address: use --ipam-driver swarmnet");
  }
  if (!n.subnet.contains(r.address->address())) {
    fail(Errc::invalid_argument, "address " + r.address->str() + " is outside network " + n.name +
                                     " (" + n.subnet.str() + ")");
  }
  // One listing answers both questions: is the endpoint there already, and
  // which reservation holds its address.
  const auto eps = endpoints(n.network_id);
  const auto existing = std::find_if(eps.begin(), eps.end(), [&](const api::Endpoint& e) {
    return e.node == node_id() && e.container_id == r.endpoint_id && e.ifname == kEndpointIfname;
  });
  if (existing != eps.end()) {
    // A repeated call (Docker retried after we restarted): same answer.
    if (existing->address.address() != r.address->address()) {
      fail(Errc::conflict, "endpoint " + r.endpoint_id + " exists with address " +
                               existing->address.str());
    }
    return create_endpoint_reply(r.mac.empty() ? existing->mac : "");
  }
  if (!r.mac.empty()) {
    fail(Errc::invalid_argument,
         "swarmnet chooses the MAC address (from the IP address, as other hosts expect): drop "
         "--mac-address");
  }
  const api::Endpoint* res = reservation_in(eps, r.address->address());
  if (!res) {
    fail(Errc::invalid_argument, "address " + r.address->str() +
                                     " was not handed out by swarmnet's IPAM on this host: use "
                                     "--ipam-driver swarmnet");
  }
  daemon_.call("DELETE", endpoint_target(n.network_id, res->container_id, res->ifname));
  api::EndpointCreate req;
  req.container_id = r.endpoint_id;
  req.ifname = kEndpointIfname;
  req.static_ips = {r.address->address()};
  req.attach = true;
  req.owner = api::kOwnerDocker;
  req.labels = {{"com.docker.network.id", r.network_id}};
  json::value body = json::value_from(req);
  api::Endpoint ep;
  try {
    ep = json::value_to<api::Endpoint>(daemon_.call("POST", endpoints_target(n.network_id), &body));
  } catch (const Error& e) {
    try {
      reserve(n.network_id, r.address->address());
    } catch (const Error& e2) {
      spdlog::error("CreateEndpoint: could not restore the reservation of {}: {}",
                    r.address->str(), e2.what());
    }
    throw;
  }
  spdlog::info("CreateEndpoint: {} on {}: {} mac {}", short_id(r.endpoint_id), n.name,
               ep.address.str(), ep.mac);
  return create_endpoint_reply(ep.mac);
}

json::object Driver::delete_endpoint(const EndpointRef& r) {
  const auto n = network_of(r.network_id);
  const api::Endpoint ep = endpoint_of(n, r.endpoint_id);
  publisher_.unpublish(r.endpoint_id);
  if (!ep.host_ifname.empty()) links_.remove(ep.host_ifname);
  daemon_.call("DELETE", endpoint_target(n.network_id, ep.container_id, ep.ifname));
  // Docker releases the address in a call of its own (ReleaseAddress).
  try {
    reserve(n.network_id, ep.address.address());
  } catch (const Error& e) {
    spdlog::warn("DeleteEndpoint: address {} is free already: {}", ep.address.str(), e.what());
  }
  spdlog::info("DeleteEndpoint: {} on {}", short_id(r.endpoint_id), n.name);
  return {};
}

json::object Driver::endpoint_info(const EndpointRef& r) {
  const auto n = network_of(r.network_id);
  const api::Endpoint ep = endpoint_of(n, r.endpoint_id);
  json::object value{{"swarmnet.network", n.name},
                     {"swarmnet.endpoint", ep.id},
                     {"address", ep.address.str()},
                     {"mac", ep.mac},
                     {"host_ifname", ep.host_ifname}};
  return {{"Value", std::move(value)}};
}

json::object Driver::join(const Join& r) {
  const auto n = network_of(r.network_id);
  const api::Endpoint ep = endpoint_of(n, r.endpoint_id);
  if (ep.host_ifname.empty() || ep.bridge.empty()) {
    fail(Errc::internal, "swarmnetd returned endpoint " + ep.id + " without bridge or host link");
  }
  const std::string src = container_end_name(ep.host_ifname);
  links_.create_pair(ep.host_ifname, src, ep.mtu != 0 ? ep.mtu : 1500, ep.mac, ep.bridge);
  spdlog::info("Join: {} on {}: {} ({} -> {}), sandbox {}", short_id(r.endpoint_id), n.name,
               ep.address.str(), ep.host_ifname, src, r.sandbox_key);
  if (namer_) namer_->joined(n.network_id, r.endpoint_id);
  // An internal network has no way out: no default route through it, as
  // Docker's own internal networks (the gateway still answers DNS).
  return join_reply(src, "eth", n.internal ? std::nullopt : std::optional(ep.gateway));
}

json::object Driver::leave(const EndpointRef& r) {
  const auto n = network_of(r.network_id);
  const api::Endpoint ep = endpoint_of(n, r.endpoint_id);
  publisher_.unpublish(r.endpoint_id);
  // Docker has moved the container end back under its SrcName (or the
  // namespace is gone and took it along): deleting the host end takes both.
  links_.remove(ep.host_ifname);
  links_.remove(container_end_name(ep.host_ifname));
  spdlog::info("Leave: {} on {}", short_id(r.endpoint_id), n.name);
  return {};
}

json::object Driver::program_external(const ProgramExternalConnectivity& r) {
  const auto n = network_of(r.network_id);
  const api::Endpoint ep = endpoint_of(n, r.endpoint_id);
  if (!r.ports.empty()) {
    publisher_.publish(r.endpoint_id, ep.address.address(), r.ports);
    spdlog::info("ProgramExternalConnectivity: {} publishes {} port(s)", short_id(r.endpoint_id),
                 r.ports.size());
  }
  return {};
}

json::object Driver::revoke_external(const EndpointRef& r) {
  const auto n = network_of(r.network_id);
  endpoint_of(n, r.endpoint_id);
  publisher_.unpublish(r.endpoint_id);
  return {};
}

}  // namespace swarmnet::docker
