// docs/api.md against the code: its route table lists exactly the routes
// swarmnetd serves (the daemon's own table, add_all_routes), and every field
// of every body in common/api.hpp is named in it.
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "common/api.hpp"
#include "daemon/api_routes.hpp"
#include "daemon/events.hpp"
#include "daemon/services.hpp"
#include "support/daemon_routes.hpp"

using namespace swarmnet;
namespace json = boost::json;

namespace {

std::string api_md() {
  std::ifstream in(std::string(SWARMNET_FIXTURES_DIR) + "/../../docs/api.md");
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "GET /v1/networks/NAME" for each row of the document's route table (a
// row starts with "| `METHOD /path`").
std::set<std::string> documented_routes(const std::string& doc) {
  std::set<std::string> out;
  static const std::regex row(R"(^\| `(GET|POST|PUT|PATCH|DELETE) (/[^` ]*)` \|)");
  std::istringstream lines(doc);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, row)) out.insert(m[1].str() + " " + m[2].str());
  }
  return out;
}

std::set<std::string> served_routes(const daemon::Router& router) {
  std::set<std::string> out;
  for (const auto& r : router.routes()) out.insert(r.method + " " + r.pattern);
  return out;
}

// What one set has and the other lacks, for the failure message.
std::string missing_from(const std::set<std::string>& have, const std::set<std::string>& other) {
  std::string out;
  for (const auto& r : have)
    if (!other.count(r)) out += "  " + r + "\n";
  return out;
}

// Every object key in a JSON value, nested ones included, but not the
// keys of maps (labels, vips), which are data.
void keys_of(const json::value& v, std::set<std::string>& out) {
  if (const auto* o = v.if_object()) {
    for (const auto& [k, value] : *o) {
      out.insert(std::string(k));
      if (k != "labels" && k != "vips") keys_of(value, out);
    }
  } else if (const auto* a = v.if_array()) {
    for (const auto& e : *a) keys_of(e, out);
  }
}

}  // namespace

TEST_CASE("api docs: the route table of docs/api.md is the daemon's", "[api][docs]") {
  testing::DaemonRoutes d;
  const auto served = served_routes(d.router);
  const auto documented = documented_routes(api_md());
  REQUIRE(served.size() > 20);
  INFO("served, not in docs/api.md:\n" << missing_from(served, documented));
  INFO("in docs/api.md, not served:\n" << missing_from(documented, served));
  CHECK(served == documented);
}

TEST_CASE("api docs: a route added without documentation is told apart", "[api][docs]") {
  // The control of the test above: it can see a difference.
  testing::DaemonRoutes d;
  d.router.add("GET", "/v1/undocumented/NAME", "other", [](const daemon::ApiRequest&) { return daemon::HttpReply{}; });
  const auto served = served_routes(d.router);
  const auto documented = documented_routes(api_md());
  CHECK(served != documented);
  CHECK(missing_from(served, documented) == "  GET /v1/undocumented/NAME\n");
}

TEST_CASE("api docs: every field of every body is named in docs/api.md", "[api][docs]") {
  const std::string doc = api_md();
  // Optional fields set, so that each body shows every field it can have.
  api::NetworkCreate network_create;
  network_create.subnet = Ipv4Prefix::parse("10.1.0.0/24");
  network_create.gateway = Ipv4Address::parse("10.1.0.1");
  network_create.mtu = 1400;
  network_create.encrypted = true;
  api::Network network;
  network.encrypted = true;
  network.encryption_missing = "no ESP";
  api::EndpointCreate create;
  create.port_mappings.push_back({});
  create.labels = {{"k", "v"}};
  create.cni_config = "demo";
  api::EndpointUpdate update;
  update.name = "n";
  update.aliases = std::vector<std::string>{};
  update.service = "s";
  api::ServiceCreate service_create;
  service_create.ports.push_back(api::ServicePort{80, "tcp", 8080, "ingress"});
  service_create.health = api::HealthCheck{"http", 80, "/", 5, 3};
  api::Service service;
  service.ports = service_create.ports;
  service.vips = {api::ServiceVip{"front", "10.1.0.2"}};
  service.ingress_vip = "10.255.0.2";
  service.tasks = std::vector<api::ServiceTask>{api::ServiceTask{}};
  service.tasks->front().host_ports.push_back({});
  const json::value bodies[] = {
      json::value_from(network_create),         json::value_from(network),
      json::value_from(create),                 json::value_from(api::Endpoint{}),
      json::value_from(update),                 json::value_from(api::GcRequest{{api::AttachmentKey{}}, ""}),
      json::value_from(api::GcResult{}),        json::value_from(api::Status{}),
      json::value_from(api::ErrorBody{}),       json::value_from(service_create),
      json::value_from(api::ServiceUpdate{}),   json::value_from(api::ServiceAttach{}),
      json::value_from(api::ServiceAttached{}), json::value_from(service),
  };
  std::set<std::string> fields;
  for (const auto& b : bodies) keys_of(b, fields);
  REQUIRE(fields.size() > 50);
  std::string missing;
  for (const auto& f : fields)
    if (doc.find("`" + f + "`") == std::string::npos) missing += " " + f;
  INFO("fields not named (as `field`) in docs/api.md:" << missing);
  CHECK(missing.empty());
}
