// Publishing a service's ports, against a fake kernel: ingress ports are
// the cluster's (numbers chosen from 30000-32767, one service per port, not
// for host mode, not for dnsrr), the ingress VIP comes and goes with them,
// and nothing is left half-done when a request is refused.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "daemon/controller.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "support/fake_dataplane.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::FakeDataplane;
using swarmnet::testing::TempDir;
namespace json = boost::json;

namespace {

struct Daemon {
  explicit Daemon(const std::string& dir) : store(dir), controller(store, dataplane, "test"), services(store, controller) {
    api::NetworkCreate front;
    front.name = "front";
    front.subnet = Ipv4Prefix::parse("10.1.0.0/24");
    controller.create_network(front);
  }
  void make_ingress() {
    api::NetworkCreate ingress;
    ingress.name = "ingress";
    ingress.subnet = Ipv4Prefix::parse("10.255.0.0/16");
    ingress.ingress = true;
    controller.create_network(ingress);
  }
  json::value create(const std::string& name, const std::string& ports, const std::string& mode = "vip") {
    return json::value_from(services.create(json::value_to<api::ServiceCreate>(json::parse(
        R"({"name":")" + name + R"(","networks":["front"],"endpoint_mode":")" + mode + R"(","ports":)" + ports + "}"))));
  }
  // As the API's PATCH decodes its body.
  void update(const std::string& name, const std::string& body) {
    services.update(name, json::value_to<api::ServiceUpdate>(json::parse(body)));
  }
  size_t ingress_endpoints() {
    return controller.list_endpoints("ingress").size();
  }
  FakeDataplane dataplane;
  daemon::Store store;
  daemon::Controller controller;
  daemon::Services services;
};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("publish: ingress ports need the cluster's ingress network", "[services]") {
  TempDir dir;
  Daemon d(dir.path());
  CHECK_THAT(message_of([&] { d.create("web", R"([{"target":80,"published":8080}])"); }),
             Catch::Contains("ingress publishing needs the cluster's ingress network"));
  CHECK(d.store.find_service_by_name("web") == nullptr);
  CHECK(d.controller.list_endpoints("front").empty());  // its VIP went back
  // Host mode works without a cluster.
  auto v = d.create("web", R"([{"target":80,"published":8080,"publish_mode":"host"}])");
  CHECK(v.at("ingress_vip").is_null());
}

TEST_CASE("publish: ingress numbers, conflicts and the ingress VIP", "[services]") {
  TempDir dir;
  Daemon d(dir.path());
  d.make_ingress();
  auto web = d.create("web", R"([{"target":80,"published":8080},{"target":53,"protocol":"udp","published":0}])");
  CHECK(web.at("ports").at(0).at("publish_mode") == "ingress");
  CHECK(web.at("ports").at(1).at("published") == 30000);
  CHECK(web.at("ingress_vip").is_string());
  CHECK(d.ingress_endpoints() == 1);
  auto api = d.create("api", R"([{"target":80,"published":0}])");
  CHECK(api.at("ports").at(0).at("published") == 30000);  // tcp/30000 is free: web took udp/30000

  CHECK_THAT(message_of([&] { d.create("dup", R"([{"target":81,"published":8080}])"); }),
             Catch::Contains("tcp/8080 is already published by service web (ingress mode)"));
  CHECK_THAT(message_of([&] { d.create("dup", R"([{"target":81,"published":8080,"publish_mode":"host"}])"); }),
             Catch::Contains("tcp/8080 is already published by service web (ingress mode)"));
  CHECK_THAT(message_of([&] { d.create("dup", R"([{"target":81,"published":9000}])", "dnsrr"); }),
             Catch::Contains("a dnsrr service cannot publish in ingress mode"));
  CHECK(d.store.find_service_by_name("dup") == nullptr);
  CHECK(d.ingress_endpoints() == 2);  // web's and api's VIPs, none of the refused

  // Update: a port given again without a number keeps its number; the last
  // ingress port removed gives the ingress VIP back.
  d.update("web", R"({"ports":[{"target":53,"protocol":"udp","published":0}]})");
  CHECK(d.store.find_service_by_name("web")->ports.at(0).published == 30000);
  d.update("web", R"({"ports":[{"target":53,"protocol":"udp","published":5353,"publish_mode":"host"}]})");
  CHECK_FALSE(d.store.find_service_by_name("web")->ingress_vip);
  CHECK(d.ingress_endpoints() == 1);
  CHECK_THAT(message_of([&] { d.update("web", R"({"name":"x"})"); }), Catch::Contains("only ports"));
  d.services.remove("api");
  CHECK(d.ingress_endpoints() == 0);
}
