// Host-mode publishing without the kernel: which host ports an endpoint
// gets (daemon/host_ports.hpp). The command line's specifications are in
// test_port_spec.cpp.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "daemon/host_ports.hpp"

using namespace swarmnet;
using namespace swarmnet::daemon;

namespace {
ServiceRecord web_service(std::vector<ServicePortRecord> ports) {
  ServiceRecord s;
  s.name = "web";
  s.ports = std::move(ports);
  return s;
}
EndpointRecord endpoint(std::vector<HostPortRecord> ports = {}) {
  EndpointRecord e;
  e.id = "e1";
  e.container_id = "c1";
  e.service = "web";
  e.host_ports = std::move(ports);
  return e;
}
const PortRange kRange{40000, 40002};
}  // namespace

TEST_CASE("host ports: a service's host-mode ports and the runtime's mappings") {
  const ServiceRecord web = web_service({{80, "tcp", 8080, "host"}, {53, "udp", 0, ""}, {443, "tcp", 0, "host"}});
  const auto ports = resolve_host_ports(endpoint({{"udp", 5353, 53, "runtime"}}), &web, {}, kRange);
  REQUIRE(ports.size() == 3);
  CHECK(ports[0] == HostPortRecord{"udp", 5353, 53, "runtime"});
  CHECK(ports[1] == HostPortRecord{"tcp", 8080, 80, "service"});
  // No number: the first free one of the range; the unpublished 53 is not published.
  CHECK(ports[2] == HostPortRecord{"tcp", 40000, 443, "service"});

  // Without the service (removed, or the task detached) only the runtime's stay.
  const auto alone = resolve_host_ports(endpoint(ports), nullptr, {}, kRange);
  CHECK(alone == std::vector<HostPortRecord>{{"udp", 5353, 53, "runtime"}});
}

TEST_CASE("host ports: a taken port fails the second task, naming the holder") {
  const ServiceRecord web = web_service({{80, "tcp", 8080, "host"}});
  const std::map<std::string, std::string> taken{{"tcp/8080", "container c0 (task of web)"}};
  CHECK_THROWS_MATCHES(resolve_host_ports(endpoint(), &web, taken, kRange), Error,
                       Catch::Matchers::Predicate<Error>([](const Error& e) {
                         return e.code() == Errc::conflict &&
                                std::string(e.what()).find("host port tcp/8080 is taken on this node by container c0 "
                                                           "(task of web)") != std::string::npos;
                       }));
  // A service update cannot refuse: the port is left out and said why.
  std::vector<std::string> skipped;
  CHECK(resolve_host_ports(endpoint(), &web, taken, kRange, true, &skipped).empty());
  REQUIRE(skipped.size() == 1);
  CHECK_THAT(skipped[0], Catch::Contains("tcp/8080"));
  // The same port twice in one container (runtime and service) is refused too.
  CHECK_THROWS_AS(resolve_host_ports(endpoint({{"tcp", 8080, 81, "runtime"}}), &web, {}, kRange), Error);
}

TEST_CASE("host ports: chosen numbers skip taken ones, are kept, and run out clearly") {
  const ServiceRecord web = web_service({{80, "tcp", 0, "host"}});
  const std::map<std::string, std::string> taken{{"tcp/40000", "docker:abc"}, {"udp/40001", "x"}};
  auto ports = resolve_host_ports(endpoint(), &web, taken, kRange);
  REQUIRE(ports.size() == 1);
  CHECK(ports[0].published == 40001);  // udp/40001 does not take tcp/40001
  // Resolved again (a service update): the task keeps its number even when
  // a lower one is free now.
  ports = resolve_host_ports(endpoint(ports), &web, {}, kRange);
  CHECK(ports.at(0).published == 40001);
  const std::map<std::string, std::string> full{{"tcp/40000", "a"}, {"tcp/40001", "b"}, {"tcp/40002", "c"}};
  CHECK_THROWS_WITH(resolve_host_ports(endpoint(), &web, full, kRange), Catch::Contains("40000-40002 is full"));
}

TEST_CASE("host ports: the ephemeral range is read from the kernel") {
  const PortRange r = ephemeral_port_range();
  CHECK(r.first >= 1);
  CHECK(r.first <= r.last);
}
