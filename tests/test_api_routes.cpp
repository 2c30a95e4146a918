// The API's route table and error mapping, driven without a socket.
#include <catch2/catch.hpp>

#include "daemon/api_server.hpp"
#include "daemon/service_api.hpp"
#include "daemon/services.hpp"
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

TEST_CASE("api: an endpoint created with ?sync=later is synced after its reply", "[api]") {
  Fixture f;
  REQUIRE(f.call("POST", "/v1/networks", R"({"name":"web","subnet":"10.8.0.0/24"})").status == 201);
  // The control: without it the record is synced before the reply.
  auto plain = f.call("POST", "/v1/networks/web/endpoints", R"({"container_id":"c0","ifname":"eth0"})");
  CHECK(plain.status == 201);
  CHECK_FALSE(plain.sync_after_reply);
  CHECK_FALSE(f.store.journal_unsynced());

  auto later = f.call("POST", "/v1/networks/web/endpoints?x=1&sync=later", R"({"container_id":"c1","ifname":"eth0"})");
  CHECK(later.status == 201);
  CHECK(f.store.journal_unsynced());
  REQUIRE(later.sync_after_reply);
  later.sync_after_reply();  // what the transport runs once the reply is out
  CHECK_FALSE(f.store.journal_unsynced());
}

TEST_CASE("api: query_has finds an item among the query's '&'-separated items", "[api]") {
  CHECK(daemon::query_has("sync=later", "sync=later"));
  CHECK(daemon::query_has("a=1&sync=later&b", "sync=later"));
  CHECK_FALSE(daemon::query_has("", "sync=later"));
  CHECK_FALSE(daemon::query_has("sync=laterx", "sync=later"));
  CHECK_FALSE(daemon::query_has("xsync=later", "sync=later"));
  CHECK_FALSE(daemon::query_has("sync=now", "sync=later"));
}

TEST_CASE("api: percent-encoded path segments", "[api]") {
  Fixture f;
  f.call("POST", "/v1/networks", R"({"name":"a.b-c","subnet":"10.8.0.0/24"})");
  CHECK(f.call("GET", "/v1/networks/a%2Eb-c").status == 200);
}

TEST_CASE("router: placeholders, exact segments, and a clear 404", "[api][router]") {
  daemon::Router router;
  router.add("GET", "/v1/things/NAME", "other", [](const daemon::ApiRequest& r) {
    return daemon::HttpReply{200, boost::json::value(r.params.at(0))};
  });
  router.add("GET", "/v1/things/NAME/parts/PART", "other", [](const daemon::ApiRequest& r) {
    return daemon::HttpReply{200, boost::json::value(r.params.at(0) + "+" + r.params.at(1) + "?" + std::string(r.query()))};
  });
  CHECK(router.answer("GET", "/v1/things/a%2Fb", "").body == "a/b");
  CHECK(router.answer("GET", "/v1/things/x/parts/y?z=1", "").body == "x+y?z=1");
  const auto missing = router.answer("GET", "/v1/things/x/other/y", "");
  CHECK(missing.status == 404);
  CHECK(std::string(missing.body.at("message").as_string()) == "no route for GET /v1/things/x/other/y");
  CHECK(router.answer("DELETE", "/v1/things/x", "").status == 404);
  // Two routes one path could take would make the table's order matter.
  CHECK_THROWS_AS(router.add("GET", "/v1/things/OTHER", "other", [](const daemon::ApiRequest&) { return daemon::HttpReply{}; }),
                  std::logic_error);
  CHECK_NOTHROW(router.add("DELETE", "/v1/things/NAME", "other", [](const daemon::ApiRequest&) { return daemon::HttpReply{}; }));
}

// Records the networks the cluster IPAM asks other nodes for a block of.
struct AskedBlocks : daemon::BlockExchange {
  std::vector<std::string> asked;
  void request_block(const std::string& network_id, const std::optional<Ipv4Prefix>&) override {
    asked.push_back(network_id);
  }
};

TEST_CASE("router: a request that needs an address block asks for one and is retried", "[api][router]") {
  Fixture f;
  AskedBlocks exchange;
  daemon::ClusterIpam ipam(f.store, daemon::BlockWait{std::chrono::milliseconds(2000), std::chrono::milliseconds(20)});
  ipam.set_cluster(nullptr, &exchange);
  const std::vector<std::string>& asked = exchange.asked;
  int calls = 0;
  daemon::Router router(&ipam);
  router.add("POST", "/v1/things", "other", [&calls](const daemon::ApiRequest&) {
    if (++calls < 3) throw daemon::BlockNeeded("net1", "no free address here");
    return daemon::HttpReply{201, boost::json::object{{"ok", true}}};
  });
  const auto reply = router.answer("POST", "/v1/things", "");
  CHECK(reply.status == 201);
  CHECK(calls == 3);
  CHECK(asked == std::vector<std::string>{"net1", "net1"});

  // Without a cluster to ask, the caller gets the refusal at once.
  daemon::Router alone;
  alone.add("POST", "/v1/things", "other", [](const daemon::ApiRequest&) -> daemon::HttpReply {
    throw daemon::BlockNeeded("net1", "no free address here");
  });
  const auto refused = alone.answer("POST", "/v1/things", "");
  CHECK(refused.status == 409);
  CHECK(code(refused) == "exhausted");
}

TEST_CASE("api: the service routes, typed bodies both ways", "[api][services]") {
  Fixture f;
  daemon::Services services(f.store, f.controller);
  daemon::Router router;
  daemon::add_controller_routes(router, f.controller);
  daemon::add_service_routes(router, services, nullptr);
  REQUIRE(router.answer("POST", "/v1/networks", R"({"name":"front","subnet":"10.8.0.0/24"})").status == 201);
  REQUIRE(router.answer("POST", "/v1/networks/front/endpoints",
                        R"({"container_id":"c1","ifname":"eth0"})").status == 201);

  api::ServiceCreate create;
  create.name = "web";
  create.networks = {"front"};
  create.ports = {api::ServicePort{80, "tcp", std::nullopt, ""}, api::ServicePort{53, "udp", 0, "host"}};
  create.health = api::HealthCheck{"http", 80, "/healthz", 2, 4};
  const auto created = router.answer("POST", "/v1/services", boost::json::serialize(boost::json::value_from(create)));
  REQUIRE(created.status == 201);
  const auto web = boost::json::value_to<api::Service>(created.body);
  CHECK(web.name == "web");
  CHECK(web.endpoint_mode == "vip");
  REQUIRE(web.vips.size() == 1);
  CHECK(web.vips[0].network == "front");
  CHECK(Ipv4Prefix::parse("10.8.0.0/24").contains(Ipv4Address::parse(web.vips[0].address)));
  CHECK(web.ports == create.ports);
  CHECK(web.health == create.health);
  CHECK(!web.ingress_vip);
  REQUIRE(web.tasks);
  CHECK(web.tasks->empty());

  api::ServiceAttach attach{"front", "c1", "eth0"};
  const auto attached = router.answer("POST", "/v1/services/web/attach",
                                      boost::json::serialize(boost::json::value_from(attach)));
  REQUIRE(attached.status == 200);
  CHECK(boost::json::value_to<api::ServiceAttached>(attached.body).service == "web");
  const auto inspected = boost::json::value_to<api::Service>(router.answer("GET", "/v1/services/web", "").body);
  CHECK(inspected.task_count == 1);
  REQUIRE(inspected.tasks);
  REQUIRE(inspected.tasks->size() == 1);
  CHECK(inspected.tasks->at(0).container_id == "c1");
  CHECK(inspected.tasks->at(0).network == "front");

  const auto listed = router.answer("GET", "/v1/services", "");
  REQUIRE(listed.body.as_array().size() == 1);
  CHECK(!boost::json::value_to<api::Service>(listed.body.as_array()[0]).tasks);

  api::ServiceUpdate update{{api::ServicePort{8080, "tcp", 9090, "host"}}};
  const auto updated = router.answer("PATCH", "/v1/services/web", boost::json::serialize(boost::json::value_from(update)));
  REQUIRE(updated.status == 200);
  CHECK(boost::json::value_to<api::Service>(updated.body).ports == update.ports);

  // Bad bodies: a clear 400 naming the field, nothing made.
  const struct {
    const char* body;
    const char* says;
  } bad[] = {
      {R"({"name":"x","networks":["front"],"ports":[{"target":0}]})", "ports[0].target"},
      {R"({"name":"x","networks":["front"],"ports":[{"target":80,"protocol":"sctp"}]})", "ports[0].protocol"},
      {R"({"name":"x","networks":["front"],"endpoint_mode":"rr"})", "endpoint_mode"},
      {R"({"name":"x","networks":[]})", "networks"},
      {R"({"name":"x","networks":["front"],"health":{"kind":"http","port":80,"path":"no slash"}})", "health.path"},
      {R"({"name":"x","networks":["front"],"health":{"kind":"udp","port":80}})", "health.kind"},
      {R"({"name":"x","networks":["front"],"ports":{}})", "ports"},
      {R"([1])", "service"},
  };
  for (const auto& b : bad) {
    INFO(b.body);
    const auto r = router.answer("POST", "/v1/services", b.body);
    CHECK(r.status == 400);
    CHECK_THAT(std::string(r.body.at("message").as_string()), Catch::Contains(b.says));
  }
  CHECK(router.answer("PATCH", "/v1/services/web", R"({"name":"y"})").status == 400);
  CHECK(f.store.find_service_by_name("x") == nullptr);

  CHECK(router.answer("DELETE", "/v1/services/web", "").status == 204);
  CHECK(router.answer("GET", "/v1/services/web", "").status == 404);
  // Its VIP is released; the container stays.
  const auto endpoints = router.answer("GET", "/v1/networks/front/endpoints", "");
  CHECK(endpoints.body.as_array().size() == 1);
}
