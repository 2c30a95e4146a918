// The API's routing and error mapping, driven without a socket.
#include <catch2/catch.hpp>

#include "daemon/api_server.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;

namespace {
struct Fixture {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store{dir.path()};
  daemon::Controller controller{store, dataplane, "test"};
  daemon::HttpReply call(const std::string& method, const std::string& target,
                         const std::string& body = "") {
    return daemon::handle_request(controller, nullptr, method, target, body);
  }
};
std::string code(const daemon::HttpReply& r) {
  return std::string(r.body.as_object().at("code").as_string());
}
}  // namespace

TEST_CASE("api: a table of requests and their replies", "[api]") {
  Fixture f;
  struct Case {
    const char* what;
    const char* method;
    const char* target;
    const char* body;
    unsigned status;
    const char* code;  // "" for success
  };
  const Case cases[] = {
      {"create", "POST", "/v1/networks", R"({"name":"web","subnet":"10.8.0.0/24"})", 201, ""},
      {"duplicate", "POST", "/v1/networks", R"({"name":"web","subnet":"10.9.0.0/24"})", 409, "conflict"},
      {"bad JSON", "POST", "/v1/networks", R"({"name":)", 400, "invalid_argument"},
      {"not an object", "POST", "/v1/networks", R"([1,2])", 400, "invalid_argument"},
      {"wrong type", "POST", "/v1/networks", R"({"name":"x","mtu":"big"})", 400, "invalid_argument"},
      {"bad subnet", "POST", "/v1/networks", R"({"name":"x","subnet":"10.0.0.0/33"})", 400, "invalid_argument"},
      {"list", "GET", "/v1/networks", "", 200, ""},
      {"inspect", "GET", "/v1/networks/web", "", 200, ""},
      {"inspect unknown", "GET", "/v1/networks/nope", "", 404, "not_found"},
      {"endpoint", "POST", "/v1/networks/web/endpoints", R"({"container_id":"c1","ifname":"eth0"})", 201, ""},
      {"endpoint again", "POST", "/v1/networks/web/endpoints", R"({"container_id":"c1","ifname":"eth0"})", 200, ""},
      {"endpoint get", "GET", "/v1/networks/web/endpoints/c1/eth0", "", 200, ""},
      {"endpoint get unknown", "GET", "/v1/networks/web/endpoints/c9/eth0", "", 404, "not_found"},
      {"rm busy", "DELETE", "/v1/networks/web", "", 409, "conflict"},
      {"endpoint del", "DELETE", "/v1/networks/web/endpoints/c1/eth0", "", 204, ""},
      {"endpoint del again", "DELETE", "/v1/networks/web/endpoints/c1/eth0", "", 204, ""},
      {"gc bad", "POST", "/v1/networks/web/gc", R"({"valid":5})", 400, "invalid_argument"},
      {"gc", "POST", "/v1/networks/web/gc", R"({"valid":[]})", 200, ""},
      {"rm", "DELETE", "/v1/networks/web", "", 204, ""},
      {"unknown route", "GET", "/v2/whatever", "", 404, "not_found"},
      {"wrong method", "PATCH", "/v1/networks", "", 404, "not_found"},
      {"status", "GET", "/v1/status", "", 200, ""},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    auto r = f.call(c.method, c.target, c.body);
    CHECK(r.status == c.status);
    if (*c.code) CHECK(code(r) == c.code);
  }
}

TEST_CASE("api: percent-encoded path segments", "[api]") {
  Fixture f;
  f.call("POST", "/v1/networks", R"({"name":"a.b-c","subnet":"10.8.0.0/24"})");
  CHECK(f.call("GET", "/v1/networks/a%2Eb-c").status == 200);
}
