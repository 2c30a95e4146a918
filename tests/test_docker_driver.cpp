// The Docker plugin without root: protocol decoders and replies, and the
// driver driven through Docker's call sequence against the real controller
// (through the API's request handler, a fake dataplane behind it), with
// fake host links and publisher.
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <set>

#include "common/error.hpp"
#include "daemon/api_server.hpp"
#include "daemon/encryption.hpp"
#include "plugin/docker/container_names.hpp"
#include "plugin/docker/dns_redirect.hpp"
#include "plugin/docker/driver.hpp"
#include "plugin/docker/protocol.hpp"
#include "plugin/docker/publisher.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using namespace swarmnet::docker;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;
namespace json = boost::json;

namespace {

class ControllerApi : public DaemonApi {
 public:
  explicit ControllerApi(daemon::Controller& c) : c_(c) {}
  json::value call(const std::string& method, const std::string& target,
                   const json::value* body) override {
    auto r = daemon::handle_request(c_, nullptr, method, target, body ? json::serialize(*body) : "");
    if (r.status >= 300) {
      const auto& o = r.body.as_object();
      throw Error(errc_from_string(o.at("code").as_string()), std::string(o.at("message").as_string()));
    }
    return r.body;
  }

 private:
  daemon::Controller& c_;
};

struct FakeLinks : HostLinks {
  std::set<std::string> links;
  void create_pair(const std::string& h, const std::string& c, unsigned, const std::string&,
                   const std::string&) override {
    links.insert(h);
    links.insert(c);
  }
  bool remove(const std::string& n) override { return links.erase(n) > 0; }
};

struct FakePublisher : PortPublisher {
  std::map<std::string, std::vector<PortBinding>> published;
  void publish(const std::string& e, Ipv4Address, const std::vector<PortBinding>& p) override {
    published[e] = p;
  }
  void unpublish(const std::string& e) override { published.erase(e); }
};

struct Fixture {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store{dir.path() + "/store"};
  daemon::Controller controller{store, dataplane, "test"};
  ControllerApi api{controller};
  FakeLinks links;
  FakePublisher publisher;
  StateDir state{dir.path() + "/plugin"};
  Driver driver{api, links, publisher, state};

  json::object call(const std::string& method, const json::value& body) {
    auto [status, reply] = driver.handle(method, json::serialize(body));
    REQUIRE(status == 200);
    return reply;
  }
  json::object ok(const std::string& method, const json::value& body) {
    json::object r = call(method, body);
    INFO(method << " -> " << json::serialize(r));
    CHECK(!r.contains("Err"));
    CHECK(!r.contains("Error"));
    return r;
  }
  size_t endpoints(const std::string& network) {
    return api.call("GET", "/v1/networks/" + network + "/endpoints", nullptr).as_array().size();
  }
};

const std::string kNet = "bfbcd762dd5d963f96955cd14e9fced8158e16c6cc89f21b7a0d8a9b33c3da70";
const std::string kEp = "f70e07acfd0eda8d1214d1d6212a4aba19d252f5d42717460a4864ec36af0c1f";

}  // namespace

TEST_CASE("docker: decoders name the bad field", "[docker]") {
  auto err = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(err([] { parse_join(json::parse(R"({"NetworkID":"a/b","EndpointID":"x","SandboxKey":"/s"})")); }),
             Catch::Contains("not a Docker id"));
  CHECK_THAT(err([] { parse_join(json::parse(R"({"NetworkID":"a","EndpointID":"x"})")); }),
             Catch::Contains("SandboxKey"));
  CHECK_THAT(err([] { parse_request_pool(json::parse(R"({"Pool":"10.0.0.1/24"})")); }),
             Catch::Contains("Pool"));
  CHECK_THAT(err([] { parse_release_address(json::parse(R"({"PoolID":"p","Address":"1.2.3"})")); }),
             Catch::Contains("Address"));
  CHECK_THAT(err([] { parse_create_endpoint(json::parse(R"({"NetworkID":"a","EndpointID":"b","Interface":{"Address":"x"}})")); }),
             Catch::Contains("Interface.Address"));
  CHECK_THAT(err([] { parse_program_external_connectivity(json::parse(
                 R"({"NetworkID":"a","EndpointID":"b","Options":{"com.docker.network.portmap":[{"Proto":1,"Port":80}]}})")); }),
             Catch::Contains("protocol number 1"));
}

TEST_CASE("docker: port bindings as Docker sends them", "[docker]") {
  auto r = parse_program_external_connectivity(json::parse(R"({"NetworkID":"a","EndpointID":"b","Options":{
    "com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
                                  {"Proto":17,"IP":"","Port":53,"HostIP":"192.0.2.1","HostPort":0,"HostPortEnd":0}]}})"));
  REQUIRE(r.ports.size() == 2);
  CHECK(r.ports[0].proto == "tcp");
  CHECK(r.ports[0].host_port == 8080);
  CHECK(!r.ports[0].host_ip);
  CHECK(r.ports[1].proto == "udp");
  CHECK(r.ports[1].host_port == 53);  // no host port: the container port
  CHECK(r.ports[1].host_ip == Ipv4Address::parse("192.0.2.1"));
  std::string script = kernel::published_ports_script::add(kPublishOwner, "e1", Ipv4Address::parse("10.0.0.5"),
                                                           published_ports(r.ports));
  CHECK_THAT(script, Catch::Contains("fib daddr type local tcp dport 8080 dnat ip to 10.0.0.5:80 comment \"docker:e1 tcp/8080\""));
  CHECK_THAT(script, Catch::Contains("ip daddr 192.0.2.1 udp dport 53 dnat ip to 10.0.0.5:53"));
  CHECK_THAT(script, Catch::Contains("add rule inet swarmnet published ip daddr 10.0.0.5 tcp dport 80 ct status dnat accept"));
  const char* listing = R"({"nftables":[{"metainfo":{}},{"chain":{"name":"published-dnat"}},
    {"rule":{"handle":7,"comment":"docker:e1 tcp/8080"}},{"rule":{"handle":9,"comment":"docker:e2 udp/53"}},
    {"rule":{"handle":11,"comment":"host:ab12 tcp/80"}},{"rule":{"handle":12,"comment":"not ours"}}]})";
  const auto rules = kernel::published_ports_script::rules(listing);
  REQUIRE(rules.size() == 3);
  CHECK(rules[0].owner == "docker");
  CHECK(rules[0].id == "e1");
  CHECK(rules[0].port == "tcp/8080");
  CHECK(rules[0].handle == 7);
  CHECK(rules[2].owner == "host");
  CHECK(rules[2].id == "ab12");
  CHECK(rules[2].port == "tcp/80");
}

TEST_CASE("docker: Docker's whole call sequence leaves nothing behind", "[docker]") {
  Fixture f;
  f.ok("/Plugin.Activate", json::object{});
  auto pool = f.ok("/IpamDriver.RequestPool", json::parse(R"({"AddressSpace":"swarmnet-local","Pool":"10.77.0.0/24","Options":{}})"));
  const std::string pool_id(pool.at("PoolID").as_string());
  CHECK(pool.at("Pool") == "10.77.0.0/24");
  CHECK(pool.at("Data").at("com.docker.network.gateway") == "10.77.0.1/24");
  f.ok("/NetworkDriver.CreateNetwork", json::parse(R"({"NetworkID":")" + kNet +
      R"(","Options":{"com.docker.network.generic":{}},"IPv4Data":[{"AddressSpace":"swarmnet-local","Gateway":"10.77.0.1/24","Pool":"10.77.0.0/24"}],"IPv6Data":[]})"));
  auto addr = f.ok("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", ""}, {"Options", nullptr}});
  CHECK(addr.at("Address") == "10.77.0.2/24");
  CHECK(f.endpoints(pool_id) == 1);  // the reservation

  auto ce = f.ok("/NetworkDriver.CreateEndpoint", json::object{{"NetworkID", kNet}, {"EndpointID", kEp},
      {"Interface", json::object{{"Address", "10.77.0.2/24"}, {"MacAddress", ""}}}});
  CHECK(ce.at("Interface").at("MacAddress") == "02:42:0a:4d:00:02");
  auto ep = f.api.call("GET", "/v1/networks/" + pool_id + "/endpoints/" + kEp + "/docker", nullptr);
  CHECK(ep.at("attach") == true);
  CHECK(f.endpoints(pool_id) == 1);  // reservation turned into the endpoint

  auto join = f.ok("/NetworkDriver.Join", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}, {"SandboxKey", "/var/run/docker/netns/x"}});
  CHECK(join.at("Gateway") == "10.77.0.1");
  CHECK(join.at("InterfaceName").at("DstPrefix") == "eth");
  CHECK(f.links.links.count(std::string(join.at("InterfaceName").at("SrcName").as_string())) == 1);
  f.ok("/NetworkDriver.ProgramExternalConnectivity", json::parse(R"({"NetworkID":")" + kNet + R"(","EndpointID":")" + kEp +
      R"(","Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":8080,"HostPortEnd":8080}]}})"));
  CHECK(f.publisher.published.count(kEp) == 1);

  SECTION("the container's names reach swarmnetd (PATCH)") {
    json::value update = json::value_from(endpoint_names({"cccc3333dddd4444", "web1", {{"swarmnet.service", "web"}}, {}}));
    f.api.call("PATCH", "/v1/networks/" + pool_id + "/endpoints/" + kEp + "/docker", &update);
    auto named = f.api.call("GET", "/v1/networks/" + pool_id + "/endpoints/" + kEp + "/docker", nullptr);
    CHECK(named.at("name") == "web1");
    CHECK(named.at("service") == "web");
    CHECK(named.at("aliases") == json::array{"cccc3333dddd"});
    CHECK(named.at("address") == "10.77.0.2/24");
    CHECK_THROWS_AS(f.api.call("PATCH", "/v1/networks/" + pool_id + "/endpoints/nope/docker", &update), Error);
  }

  SECTION("bad calls change nothing") {
    auto r = f.call("/NetworkDriver.Join", json::object{{"NetworkID", "abc"}, {"EndpointID", kEp}, {"SandboxKey", "/x"}});
    CHECK_THAT(std::string(r.at("Err").as_string()), Catch::Contains("unknown network abc"));
    r = f.call("/IpamDriver.ReleaseAddress", json::object{{"PoolID", pool_id}, {"Address", "10.77.0.99"}});
    CHECK_THAT(std::string(r.at("Error").as_string()), Catch::Contains("not allocated"));
    r = f.call("/NetworkDriver.CreateEndpoint", json::object{{"NetworkID", kNet}, {"EndpointID", "beef"},
        {"Interface", json::object{{"Address", "10.77.0.50/24"}}}});
    CHECK_THAT(std::string(r.at("Err").as_string()), Catch::Contains("was not handed out"));
    auto [status, raw] = f.driver.handle("/IpamDriver.RequestPool", "{\"Pool\":");
    CHECK(status == 200);
    CHECK_THAT(std::string(raw.at("Error").as_string()), Catch::Contains("invalid JSON"));
    CHECK(f.driver.handle("/Unknown.Method", "{}").first == 404);
    CHECK(f.endpoints(pool_id) == 1);
  }

  f.ok("/NetworkDriver.RevokeExternalConnectivity", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}});
  CHECK(f.publisher.published.empty());
  f.ok("/NetworkDriver.Leave", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}});
  CHECK(f.links.links.empty());
  f.ok("/NetworkDriver.DeleteEndpoint", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}});
  auto again = f.call("/NetworkDriver.DeleteEndpoint", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}});
  CHECK_THAT(std::string(again.at("Err").as_string()), Catch::Contains("unknown endpoint"));
  f.ok("/IpamDriver.ReleaseAddress", json::object{{"PoolID", pool_id}, {"Address", "10.77.0.2"}});
  CHECK(f.endpoints(pool_id) == 0);
  f.ok("/NetworkDriver.DeleteNetwork", json::object{{"NetworkID", kNet}});
  f.ok("/IpamDriver.ReleasePool", json::object{{"PoolID", pool_id}});
  CHECK(f.api.call("GET", "/v1/networks", nullptr).as_array().empty());  // made for Docker, gone with it
  auto twice = f.call("/IpamDriver.ReleasePool", json::object{{"PoolID", pool_id}});
  CHECK(twice.contains("Error"));
}

TEST_CASE("docker: a pool maps onto an existing swarmnet network by name or subnet", "[docker]") {
  Fixture f;
  json::value create = json::parse(R"({"name":"shared","subnet":"10.94.0.0/24"})");
  f.api.call("POST", "/v1/networks", &create);
  auto by_name = f.ok("/IpamDriver.RequestPool", json::parse(R"({"Options":{"swarmnet.network":"shared"}})"));
  CHECK(by_name.at("Pool") == "10.94.0.0/24");
  auto dup = f.call("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.94.0.0/24"})"));
  CHECK_THAT(std::string(dup.at("Error").as_string()), Catch::Contains("already the pool"));
  f.ok("/IpamDriver.ReleasePool", json::object{{"PoolID", by_name.at("PoolID")}});
  CHECK(f.api.call("GET", "/v1/networks", nullptr).as_array().size() == 1);  // not ours to delete
  auto wrong = f.call("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.95.0.0/24","Options":{"swarmnet.network":"shared"}})"));
  CHECK_THAT(std::string(wrong.at("Error").as_string()), Catch::Contains("has subnet 10.94.0.0/24"));
}

TEST_CASE("docker: the container of an endpoint in dockerd's container list", "[docker]") {
  auto list = json::parse(R"([
    {"Id":"aaaa1111bbbb2222","Names":["/other"],"Labels":{},"NetworkSettings":{"Networks":{"n":{"EndpointID":"e0"}}}},
    {"Id":"cccc3333dddd4444","Names":["/web/alias","/web1"],"Labels":{"swarmnet.service":"web"},
     "NetworkSettings":{"Networks":{"n":{"EndpointID":"e1"},"m":{"EndpointID":"e2"}}}}])");
  auto c = container_of_endpoint(list, "e2");
  REQUIRE(c);
  CHECK(c->name == "web1");
  auto u = endpoint_names(*c);
  CHECK(u.name == "web1");
  CHECK(u.service == "web");
  CHECK(u.aliases == std::vector<std::string>{"cccc3333dddd"});
  CHECK(!container_of_endpoint(list, "e9"));
  CHECK(!container_of_endpoint(json::parse("{}"), "e1"));
}

TEST_CASE("docker: a pool in a range IP reserves is refused before any network is made", "[docker][underlay]") {
  Fixture f;
  for (const char* pool : {"224.0.0.0/24", "169.254.0.0/16", "0.0.0.0/0", "127.0.0.0/24"}) {
    INFO(pool);
    auto r = f.call("/IpamDriver.RequestPool", json::object{{"Pool", pool}});
    CHECK_THAT(std::string(r.at("Error").as_string()), Catch::Contains("refused") && Catch::Contains(pool));
  }
  CHECK(f.api.call("GET", "/v1/networks", nullptr).as_array().empty());
  // Control: an ordinary pool makes its network.
  f.ok("/IpamDriver.RequestPool", json::object{{"Pool", "10.96.0.0/24"}});
  CHECK(f.api.call("GET", "/v1/networks", nullptr).as_array().size() == 1);
}

namespace {
// CreateNetwork as dockerd 20.10 sends it, with `generic` as the -o options.
json::value create_network_body(const std::string& pool, const std::string& gateway, const json::object& generic,
                                bool internal) {
  json::object options{{"com.docker.network.enable_ipv6", false}, {"com.docker.network.generic", generic}};
  if (internal) options["com.docker.network.internal"] = true;
  return json::object{{"NetworkID", kNet},
                      {"Options", options},
                      {"IPv4Data", json::array{json::object{{"AddressSpace", "swarmnet-local"}, {"Gateway", gateway}, {"Pool", pool}}}},
                      {"IPv6Data", json::array{}}};
}
}  // namespace

TEST_CASE("docker: --internal, the MTU and --gateway make the network; no default route on an internal one", "[docker]") {
  Fixture f;
  auto pool = f.ok("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.78.0.0/24","Options":{"swarmnet.network":"inet"}})"));
  const std::string pool_id(pool.at("PoolID").as_string());
  auto gw = f.ok("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", "10.78.0.254"},
      {"Options", json::object{{"RequestAddressType", "com.docker.network.gateway"}}}});
  CHECK(gw.at("Address") == "10.78.0.254/24");
  f.ok("/NetworkDriver.CreateNetwork",
       create_network_body("10.78.0.0/24", "10.78.0.254/24", {{"com.docker.network.driver.mtu", "1400"}}, true));
  auto n = f.api.call("GET", "/v1/networks/inet", nullptr);
  CHECK(n.at("internal") == true);
  CHECK(n.at("mtu") == 1400);
  CHECK(n.at("gateway") == "10.78.0.254");
  auto addr = f.ok("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", ""}});
  CHECK(addr.at("Address") == "10.78.0.1/24");  // the old gateway is an ordinary address now
  f.ok("/NetworkDriver.CreateEndpoint", json::object{{"NetworkID", kNet}, {"EndpointID", kEp},
      {"Interface", json::object{{"Address", "10.78.0.1/24"}}}});
  auto join = f.ok("/NetworkDriver.Join", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}, {"SandboxKey", "/x"}});
  CHECK(!join.contains("Gateway"));
  auto ep = f.api.call("GET", "/v1/networks/inet/endpoints/" + kEp + "/docker", nullptr);
  CHECK(ep.at("mtu") == 1400);
  f.ok("/NetworkDriver.Leave", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}});
  f.ok("/NetworkDriver.DeleteEndpoint", json::object{{"NetworkID", kNet}, {"EndpointID", kEp}});
  f.ok("/IpamDriver.ReleaseAddress", json::object{{"PoolID", pool_id}, {"Address", "10.78.0.1"}});
  f.ok("/NetworkDriver.DeleteNetwork", json::object{{"NetworkID", kNet}});
  f.ok("/IpamDriver.ReleasePool", json::object{{"PoolID", pool_id}});
  CHECK(f.api.call("GET", "/v1/networks", nullptr).as_array().empty());  // the remade network went with the pool
}

TEST_CASE("docker: options swarmnet does not take are refused, the network left as it was", "[docker]") {
  Fixture f;
  auto pool = f.ok("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.79.0.0/24"})"));
  const std::string pool_id(pool.at("PoolID").as_string());
  const std::vector<std::pair<json::object, const char*>> refused = {
      {{{"com.docker.network.bridge.name", "br0"}}, "-o com.docker.network.bridge.name is not supported by swarmnet"},
      {{{"com.docker.network.driver.mtu", "x"}}, "not a number"},
      {{{"com.docker.network.driver.mtu", "100"}}, "out of range"},
  };
  for (const auto& [generic, why] : refused) {
    INFO(why);
    auto r = f.call("/NetworkDriver.CreateNetwork", create_network_body("10.79.0.0/24", "10.79.0.1/24", generic, false));
    CHECK_THAT(std::string(r.at("Err").as_string()), Catch::Contains(why));
    auto nets = f.api.call("GET", "/v1/networks", nullptr).as_array();
    REQUIRE(nets.size() == 1);
    CHECK(nets[0].at("subnet") == "10.79.0.0/24");
    CHECK(nets[0].at("internal") == false);
  }
  f.ok("/IpamDriver.ReleasePool", json::object{{"PoolID", pool_id}});
  CHECK(f.api.call("GET", "/v1/networks", nullptr).as_array().empty());

  // A network made before (swarmnetctl, another host) keeps its options.
  json::value create = json::parse(R"({"name":"made","subnet":"10.80.0.0/24","internal":true})");
  f.api.call("POST", "/v1/networks", &create);
  auto made = f.ok("/IpamDriver.RequestPool", json::parse(R"({"Options":{"swarmnet.network":"made"}})"));
  auto gw = f.call("/IpamDriver.RequestAddress", json::object{{"PoolID", made.at("PoolID")}, {"Address", "10.80.0.9"},
      {"Options", json::object{{"RequestAddressType", "com.docker.network.gateway"}}}});
  CHECK_THAT(std::string(gw.at("Error").as_string()), Catch::Contains("--gateway 10.80.0.9 cannot be used"));
  auto r = f.call("/NetworkDriver.CreateNetwork", create_network_body("10.80.0.0/24", "10.80.0.1/24", {}, false));
  CHECK_THAT(std::string(r.at("Err").as_string()), Catch::Contains("exists with gateway 10.80.0.1") && Catch::Contains("internal"));
  f.ok("/NetworkDriver.CreateNetwork", create_network_body("10.80.0.0/24", "10.80.0.1/24", {}, true));
}

TEST_CASE("docker: --ip-range hands out addresses of the range, --ip any of the subnet", "[docker]") {
  Fixture f;
  auto bad = f.call("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.81.0.0/24","SubPool":"10.82.0.0/28"})"));
  CHECK_THAT(std::string(bad.at("Error").as_string()), Catch::Contains("must lie inside --subnet 10.81.0.0/24"));
  auto pool = f.ok("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.81.0.0/24","SubPool":"10.81.0.4/30"})"));
  const std::string pool_id(pool.at("PoolID").as_string());
  std::vector<std::string> got;
  for (int i = 0; i < 4; ++i) {
    got.emplace_back(f.ok("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", ""}}).at("Address").as_string());
  }
  CHECK(got == std::vector<std::string>{"10.81.0.4/24", "10.81.0.5/24", "10.81.0.6/24", "10.81.0.7/24"});
  auto full = f.call("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", ""}});
  CHECK_THAT(std::string(full.at("Error").as_string()), Catch::Contains("no free address in ip range 10.81.0.4/30"));
  CHECK(f.ok("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", "10.81.0.200"}}).at("Address") ==
        "10.81.0.200/24");
  f.ok("/IpamDriver.ReleaseAddress", json::object{{"PoolID", pool_id}, {"Address", "10.81.0.5"}});
  CHECK(f.ok("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", ""}}).at("Address") == "10.81.0.5/24");
  // The range is the network's, in blocks it holds whole, so that other
  // hosts get blocks of it; remaking the network for --internal keeps it.
  const std::string name = "docker-10.81.0.0-24";
  CHECK(f.api.call("GET", "/v1/networks/" + name, nullptr).at("ip_range") == "10.81.0.4/30");
  CHECK(f.api.call("GET", "/v1/networks/" + name, nullptr).at("block_length") == 30);
  for (const char* a : {"10.81.0.4", "10.81.0.5", "10.81.0.6", "10.81.0.7", "10.81.0.200"})
    f.ok("/IpamDriver.ReleaseAddress", json::object{{"PoolID", pool_id}, {"Address", a}});
  f.ok("/NetworkDriver.CreateNetwork", create_network_body("10.81.0.0/24", "10.81.0.1/24", {}, true));
  const auto remade = f.api.call("GET", "/v1/networks/" + name, nullptr);
  CHECK(remade.at("internal") == true);
  CHECK(remade.at("ip_range") == "10.81.0.4/30");
  CHECK(f.ok("/IpamDriver.RequestAddress", json::object{{"PoolID", pool_id}, {"Address", ""}}).at("Address") == "10.81.0.4/24");
}

TEST_CASE("docker: --network-alias and connect --alias from dockerd's inspect", "[docker]") {
  auto inspect = json::parse(R"({"Id":"cccc3333dddd4444","NetworkSettings":{"Networks":{
    "a":{"EndpointID":"e1","Aliases":["db","primary.db","cccc3333dddd"]},"b":{"EndpointID":"e2","Aliases":null}}}})");
  CHECK(endpoint_aliases(inspect, "e1") == std::vector<std::string>{"db", "primary.db", "cccc3333dddd"});
  CHECK(endpoint_aliases(inspect, "e2").empty());
  CHECK(endpoint_aliases(json::parse("[]"), "e1").empty());
  ContainerInfo c{"cccc3333dddd4444", "web1", {}, endpoint_aliases(inspect, "e1")};
  c.aliases.push_back("web1");
  CHECK(endpoint_names(c).aliases == std::vector<std::string>{"cccc3333dddd", "db", "primary.db"});
}

TEST_CASE("docker: the nameservers Docker's embedded DNS forwards to", "[docker]") {
  auto strs = [](const std::vector<Ipv4Address>& v) {
    std::vector<std::string> out;
    for (const auto& a : v) out.push_back(a.str());
    return out;
  };
  CHECK(strs(docker_upstreams("# x\nnameserver 10.255.255.53\nsearch lan\nnameserver 192.0.2.1\nnameserver 10.255.255.53\n")) ==
        std::vector<std::string>{"10.255.255.53", "192.0.2.1"});
  CHECK(strs(docker_upstreams("nameserver 127.0.0.53\nnameserver ::1\nnameserver 198.51.100.7\n")) ==
        std::vector<std::string>{"198.51.100.7"});
  // Only loopback ones, or none: Docker's fallback.
  CHECK(strs(docker_upstreams("nameserver 127.0.0.53\n")) == std::vector<std::string>{"8.8.8.8", "8.8.4.4"});
  CHECK(strs(docker_upstreams("")) == std::vector<std::string>{"8.8.8.8", "8.8.4.4"});
  const std::string script = dns_redirect_script({Ipv4Address::parse("10.255.255.53"), Ipv4Address::parse("192.0.2.1")});
  CHECK_THAT(script, Catch::Contains("elements = { 10.255.255.53, 192.0.2.1 }"));
  CHECK_THAT(script, Catch::Contains("iifname \"swn-*\" ip daddr @upstreams meta l4proto { tcp, udp } th dport 53 counter redirect"));
  CHECK_THAT(script, Catch::StartsWith("add table ip swarmnet_docker_dns\ndelete table ip swarmnet_docker_dns\n"));
}

TEST_CASE("docker: -o encrypted makes the network encrypted, refused with the reason without ESP", "[docker][encryption]") {
  Fixture f;
  const json::object encrypted{{"encrypted", ""}};
  SECTION("without ESP: refused with the reason, the network left as it was") {
    f.ok("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.78.0.0/24"})"));
    auto r = f.call("/NetworkDriver.CreateNetwork", create_network_body("10.78.0.0/24", "10.78.0.1/24", encrypted, false));
    CHECK_THAT(std::string(r.at("Err").as_string()), Catch::Contains("needs IPsec ESP"));
    auto nets = f.api.call("GET", "/v1/networks", nullptr).as_array();
    REQUIRE(nets.size() == 1);
    CHECK(nets[0].at("encrypted") == false);
  }
  SECTION("with ESP: made again encrypted, with room for ESP in its MTU") {
    daemon::Encryption encryption(nullptr, std::nullopt, 4789);
    f.controller.set_encryption(&encryption);
    f.ok("/IpamDriver.RequestPool", json::parse(R"({"Pool":"10.78.0.0/24","Options":{"swarmnet.network":"sec"}})"));
    f.ok("/NetworkDriver.CreateNetwork", create_network_body("10.78.0.0/24", "10.78.0.1/24", encrypted, false));
    auto n = f.api.call("GET", "/v1/networks/sec", nullptr);
    CHECK(n.at("encrypted") == true);
    CHECK(n.at("mtu") == 1410);
    f.controller.set_encryption(nullptr);
  }
}
