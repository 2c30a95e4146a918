// The command line's port specifications (common/port_spec.hpp): --port,
// and --publish in both of docker service create's forms, with ranges.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "common/port_spec.hpp"

using namespace swarmnet;
using Specs = std::vector<PortSpec>;

TEST_CASE("port spec: --port") {
  CHECK(parse_port_spec("53/udp") == PortSpec{53, "udp", std::nullopt, ""});
  CHECK(parse_port_spec("80") == PortSpec{80, "tcp", std::nullopt, ""});
  CHECK_THROWS_WITH(parse_port_spec("80/icmp"), Catch::Contains("--port 80/icmp: expected PORT[/tcp|/udp]"));
}

TEST_CASE("port spec: --publish short form") {
  CHECK(parse_publish_spec("8080:80") == Specs{{80, "tcp", 8080, "ingress"}});
  CHECK(parse_publish_spec("mode=host,8080:80/udp") == Specs{{80, "udp", 8080, "host"}});
  CHECK(parse_publish_spec("mode=host,:80") == Specs{{80, "tcp", 0, "host"}});
  // As docker service create: a target alone gets a chosen published port.
  CHECK(parse_publish_spec("80") == Specs{{80, "tcp", 0, "ingress"}});
  CHECK(parse_publish_spec("53/udp") == Specs{{53, "udp", 0, "ingress"}});
  for (const char* bad : {"mode=hots,80:80", "x:80", "8080:0", "8080:", "70000:80", "mode=host,8080:80x", "",
                          ":", "80-", "-80", "90-80:90-80"}) {
    INFO(bad);
    CHECK_THROWS_WITH(parse_publish_spec(bad), Catch::Contains("expected [mode=host|ingress,][[PUBLISHED]:]TARGET"));
  }
}

TEST_CASE("port spec: --publish ranges map one to one") {
  CHECK(parse_publish_spec("8000-8002:80-82") ==
        Specs{{80, "tcp", 8000, "ingress"}, {81, "tcp", 8001, "ingress"}, {82, "tcp", 8002, "ingress"}});
  CHECK(parse_publish_spec("mode=host,9000-9001:9000-9001/udp") ==
        Specs{{9000, "udp", 9000, "host"}, {9001, "udp", 9001, "host"}});
  CHECK(parse_publish_spec("80-81") == Specs{{80, "tcp", 0, "ingress"}, {81, "tcp", 0, "ingress"}});
  CHECK(parse_publish_spec("65534-65535:1-2").back() == PortSpec{2, "tcp", 65535, "ingress"});
  CHECK(parse_publish_spec("1-1000:1-1000").size() == 1000);
  CHECK_THROWS_WITH(parse_publish_spec("8000-8010:80"), Catch::Contains("differ in length; they map one to one"));
  CHECK_THROWS_WITH(parse_publish_spec("8000:80-81"), Catch::Contains("differ in length"));
  CHECK_THROWS_WITH(parse_publish_spec("1-1001:1-1001"), Catch::Contains("a range of 1001 ports, more than 1000"));
  CHECK_THROWS_WITH(parse_publish_spec("1-65535"), Catch::Contains("more than 1000"));
}

TEST_CASE("port spec: --publish long form") {
  CHECK(parse_publish_spec("published=8080,target=80") == Specs{{80, "tcp", 8080, "ingress"}});
  CHECK(parse_publish_spec("target=53,published=5353,protocol=udp,mode=host") == Specs{{53, "udp", 5353, "host"}});
  CHECK(parse_publish_spec("mode=ingress,target=80") == Specs{{80, "tcp", 0, "ingress"}});
  CHECK(parse_publish_spec("published=8000-8001,target=80-81,protocol=tcp") ==
        Specs{{80, "tcp", 8000, "ingress"}, {81, "tcp", 8001, "ingress"}});
  const std::vector<std::pair<const char*, const char*>> refused = {
      {"published=8080", "target is required"},
      {"mode=host", "target is required"},
      {"published=8080,target=80,mode=vip", "mode \"vip\": host or ingress"},
      {"published=8080,target=80,protocol=icmp", "unknown protocol \"icmp\" (tcp or udp)"},
      {"published=8080,target=x", "target \"x\" is not a port"},
      {"published=0,target=80", "published \"0\" is not a port"},
      {"published=8080,target=80,target=81", "\"target\" given twice"},
      {"published=8080,target=80,name=web", "unknown key \"name\""},
      {"published=8080,80", "\"80\" is not KEY=VALUE"},
      {"published=8000-8002,target=80", "differ in length"},
  };
  for (const auto& [text, why] : refused) {
    INFO(text);
    CHECK_THROWS_WITH(parse_publish_spec(text), Catch::Contains(std::string("--publish ") + text) && Catch::Contains(why));
  }
}

TEST_CASE("port spec: what Docker takes and swarmnet does not is refused by name") {
  CHECK_THROWS_WITH(parse_publish_spec("8080:80/sctp"), Catch::Contains("sctp is not supported (tcp or udp)"));
  CHECK_THROWS_WITH(parse_publish_spec("published=8080,target=80,protocol=sctp"), Catch::Contains("sctp is not supported"));
  CHECK_THROWS_WITH(parse_publish_spec("127.0.0.1:8080:80"),
                    Catch::Contains("a host address (IP:PUBLISHED:TARGET) is not supported for a service"));
}
