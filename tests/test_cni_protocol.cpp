// CNI protocol without root: environment, CNI_ARGS, config parsing (every
// error code), results per spec version (golden JSON), errors, VERSION.
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <sstream>

#include "plugin/cni/attachment.hpp"
#include "plugin/cni/config.hpp"
#include "plugin/cni/protocol.hpp"
#include "plugin/cni/result.hpp"
#include "plugin/cni/skel.hpp"

using namespace swarmnet;
using namespace swarmnet::cni;
namespace json = boost::json;

namespace {

using Vars = std::map<std::string, std::string>;

EnvLookup fake_env(Vars vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

Vars add_vars() {
  return {{"CNI_COMMAND", "ADD"},
          {"CNI_CONTAINERID", "c0ffee"},
          {"CNI_NETNS", "/var/run/netns/c0ffee"},
          {"CNI_IFNAME", "eth0"},
          {"CNI_PATH", "/opt/cni/bin"}};
}

Environment env_for(Command c, Vars extra = {}) {
  Vars v = add_vars();
  v["CNI_COMMAND"] = std::string(to_string(c));
  for (auto& [k, val] : extra) v[k] = val;
  return parse_environment(fake_env(v));
}

int env_error_code(const Vars& v) {
  try {
    parse_environment(fake_env(v));
  } catch (const CniError& e) {
    return e.code();
  }
  return 0;
}

struct Failure {
  int code = 0;
  std::string msg;
};

Failure config_error(const std::string& text, Command c = Command::add,
                     PluginKind kind = PluginKind::main, Vars extra = {}) {
  try {
    parse_config(text, env_for(c, extra), kind);
  } catch (const CniError& e) {
    return {e.code(), e.msg()};
  }
  return {};
}

api::Endpoint sample_endpoint() {
  api::Endpoint ep;
  ep.address = Ipv4Prefix::parse("10.1.0.5/24");
  ep.gateway = Ipv4Address::parse("10.1.0.1");
  ep.mac = "02:42:0a:01:00:05";
  ep.mtu = 1450;
  ep.bridge = "sn-br-1";
  ep.host_ifname = "snv1a2b3c";
  return ep;
}

const char* kBase = R"({"cniVersion":"1.1.0","name":"front","type":"swarmnet"})";

}  // namespace

TEST_CASE("environment: commands and required variables") {
  CHECK(parse_environment(fake_env({{"CNI_COMMAND", "VERSION"}})).command == Command::version);
  Environment e = parse_environment(fake_env(add_vars()));
  CHECK(e.command == Command::add);
  CHECK(e.container_id == "c0ffee");
  CHECK(e.ifname == "eth0");
  CHECK(e.netns == "/var/run/netns/c0ffee");

  CHECK(env_error_code({}) == 4);
  CHECK(env_error_code({{"CNI_COMMAND", "FROB"}}) == 4);
  for (const char* var : {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"}) {
    Vars v = add_vars();
    v.erase(var);
    INFO(var);
    CHECK(env_error_code(v) == 4);
  }
  // DEL may come after the namespace is gone.
  Vars del = add_vars();
  del["CNI_COMMAND"] = "DEL";
  del.erase("CNI_NETNS");
  CHECK(parse_environment(fake_env(del)).netns.empty());
  // GC and STATUS need no container.
  CHECK(parse_environment(fake_env({{"CNI_COMMAND", "GC"}})).command == Command::gc);
  CHECK(parse_environment(fake_env({{"CNI_COMMAND", "STATUS"}})).command == Command::status);
}

TEST_CASE("environment: interface names and container ids") {
  for (const char* bad : {"", "eth0/1", ".", "..", "a b", "eth0:1", "sixteen-chars-xx", "tab\t"}) {
    Vars v = add_vars();
    v["CNI_IFNAME"] = bad;
    INFO("ifname '" << bad << "'");
    CHECK(env_error_code(v) == 4);
  }
  CHECK(valid_ifname("fifteen-chars-x"));
  CHECK(valid_ifname("eth0"));
  for (const char* bad : {"-abc", "a/b", "a b", "_x"}) {
    Vars v = add_vars();
    v["CNI_CONTAINERID"] = bad;
    INFO("container id '" << bad << "'");
    CHECK(env_error_code(v) == 4);
  }
  CHECK(valid_container_id("a1_b.c-d"));
}

TEST_CASE("CNI_ARGS: pairs, unknown keys kept, malformed pairs refused") {
  auto a = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web-0;SWARMNET_SERVICE=web;EMPTY=");
  CHECK(a.at("IgnoreUnknown") == "1");
  CHECK(a.at("K8S_POD_NAME") == "web-0");
  CHECK(a.at("SWARMNET_SERVICE") == "web");
  CHECK(a.at("EMPTY").empty());
  CHECK(parse_cni_args("").empty());
  CHECK(parse_cni_args("A=1;;B=x=y;").at("B") == "x=y");
  CHECK_THROWS_AS(parse_cni_args("novalue"), CniError);
  CHECK_THROWS_AS(parse_cni_args("=v"), CniError);
  Vars v = add_vars();
  v["CNI_ARGS"] = "A=1;junk";
  CHECK(env_error_code(v) == 4);
}

TEST_CASE("config: a full swarmnet config") {
  const char* text = R"({
    "cniVersion": "1.0.0", "name": "front", "type": "swarmnet",
    "daemonSocket": "/run/sn.sock", "mtu": 1400, "logLevel": "debug",
    "dns": {"nameservers": ["10.1.0.1"], "search": ["svc"]},
    "args": {"cni": {"labels": [{"key": "swarmnet.service", "value": "web"},
                                {"key": "name", "value": "web-1"},
                                {"key": "tier", "value": "a"}],
                     "ips": ["10.1.0.9/24"]}},
    "runtimeConfig": {"aliases": ["www"], "portMappings": []},
    "capabilities": {"ips": true}
  })";
  NetConf c = parse_config(text, env_for(Command::add), PluginKind::main);
  CHECK(c.version == SpecVersion::v1_0_0);
  CHECK(c.network == "front");
  CHECK(c.daemon_socket == "/run/sn.sock");
  CHECK(c.mtu == 1400u);
  CHECK(c.log_level == "debug");
  CHECK(c.service == "web");
  CHECK(c.container_name == "web-1");
  CHECK(c.labels.at("tier") == "a");
  REQUIRE(c.static_ips.size() == 1);
  CHECK(c.static_ips[0].str() == "10.1.0.9");
  CHECK(c.aliases == std::vector<std::string>{"www"});
  CHECK(c.dns.nameservers == std::vector<std::string>{"10.1.0.1"});
  CHECK_FALSE(c.prev_result);

  NetConf d = parse_config(kBase, env_for(Command::add), PluginKind::main);
  CHECK(d.daemon_socket == api::kDefaultSocket);
  CHECK(d.log_level == "warn");
  CHECK_FALSE(d.mtu);
}

TEST_CASE("config: service and name from CNI_ARGS, static ip forms") {
  NetConf c = parse_config(
      R"({"cniVersion":"1.1.0","name":"front","runtimeConfig":{"ips":["10.1.0.7"]}})",
      env_for(Command::add,
              {{"CNI_ARGS", "IgnoreUnknown=1;SWARMNET_SERVICE=api;K8S_POD_NAME=api-0"}}),
      PluginKind::main);
  CHECK(c.service == "api");
  CHECK(c.container_name == "api-0");
  CHECK(c.static_ips.at(0).str() == "10.1.0.7");

  // Same address twice (capability and args) is one request.
  NetConf same = parse_config(
      R"({"cniVersion":"1.1.0","name":"f","runtimeConfig":{"ips":["10.1.0.7/24"]},
          "args":{"cni":{"ips":["10.1.0.7"]}}})",
      env_for(Command::add), PluginKind::main);
  CHECK(same.static_ips.size() == 1);
}

TEST_CASE("config: runtimeConfig.portMappings become host-mode publications") {
  NetConf c = parse_config(
      R"({"cniVersion":"1.1.0","name":"front","runtimeConfig":{"portMappings":[
           {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
           {"hostPort":5353,"containerPort":53,"protocol":"UDP","hostIP":""}]}})",
      env_for(Command::add), PluginKind::main);
  REQUIRE(c.port_mappings.size() == 2);
  CHECK(c.port_mappings[0] == api::PortMapping{8080, 80, "tcp"});
  CHECK(c.port_mappings[1] == api::PortMapping{5353, 53, "udp"});
  CHECK(endpoint_request(env_for(Command::add), c, true).port_mappings == c.port_mappings);
  // swarmnet-ipam only hands out an address: publishing is the portmap plugin's.
  CHECK(endpoint_request(env_for(Command::add), c, false).port_mappings.empty());

  auto refused = [](const char* mapping) {
    return parse_config(std::string(R"({"cniVersion":"1.1.0","name":"front","runtimeConfig":{"portMappings":[)") +
                            mapping + "]}}",
                        env_for(Command::add), PluginKind::main);
  };
  CHECK_THROWS_WITH(refused(R"({"hostPort":0,"containerPort":80})"),
                    Catch::Contains("runtimeConfig.portMappings[0]: hostPort and containerPort"));
  CHECK_THROWS_WITH(refused(R"({"hostPort":80,"containerPort":80,"protocol":"sctp"})"),
                    Catch::Contains(".protocol: \"tcp\" or \"udp\""));
  CHECK_THROWS_WITH(refused(R"({"hostPort":80,"containerPort":80,"hostIP":"192.0.2.1"})"),
                    Catch::Contains("all of the host's addresses"));
}

TEST_CASE("config: every error code path") {
  struct Case {
    const char* what;
    std::string text;
    int code;
    const char* names;  // the message must name this
    Command command = Command::add;
    Vars extra = {};
  };
  const std::vector<Case> cases = {
      {"not JSON", "{\"cniVersion\":", 6, "decode"},
      {"empty stdin", "  ", 6, "no network configuration"},
      {"not an object", "[1,2]", 6, "not a JSON object"},
      {"missing cniVersion", R"({"name":"n"})", 1, "cniVersion"},
      {"unsupported cniVersion", R"({"cniVersion":"0.2.0","name":"n"})", 1, "0.2.0"},
      {"future cniVersion", R"({"cniVersion":"9.9.9","name":"n"})", 1, "9.9.9"},
      {"cniVersion not a string", R"({"cniVersion":1,"name":"n"})", 7, "cniVersion"},
      {"CHECK in 0.3.1", R"({"cniVersion":"0.3.1","name":"n"})", 1, "CHECK", Command::check},
      {"GC in 1.0.0", R"({"cniVersion":"1.0.0","name":"n"})", 1, "GC", Command::gc},
      {"STATUS in 0.4.0", R"({"cniVersion":"0.4.0","name":"n"})", 1, "STATUS", Command::status},
      {"ipam given to swarmnet", R"({"cniVersion":"1.0.0","name":"n","ipam":{"type":"x"}})", 2,
       "\"ipam\" = {\"type\":\"x\"}"},
      {"missing name", R"({"cniVersion":"1.0.0"})", 7, "name"},
      {"bad name", R"({"cniVersion":"1.0.0","name":"-bad"})", 7, "name"},
      {"name not a string", R"({"cniVersion":"1.0.0","name":5})", 7, "name"},
      {"mtu a string", R"({"cniVersion":"1.0.0","name":"n","mtu":"1400"})", 7, "mtu"},
      {"mtu negative", R"({"cniVersion":"1.0.0","name":"n","mtu":-1})", 7, "mtu"},
      {"mtu too small", R"({"cniVersion":"1.0.0","name":"n","mtu":40})", 7, "mtu"},
      {"mtu too big", R"({"cniVersion":"1.0.0","name":"n","mtu":70000})", 7, "mtu"},
      {"daemonSocket relative", R"({"cniVersion":"1.0.0","name":"n","daemonSocket":"x.sock"})", 7,
       "daemonSocket"},
      {"daemonSocket a number", R"({"cniVersion":"1.0.0","name":"n","daemonSocket":1})", 7,
       "daemonSocket"},
      {"logLevel unknown", R"({"cniVersion":"1.0.0","name":"n","logLevel":"loud"})", 7, "logLevel"},
      {"labels not an array", R"({"cniVersion":"1.0.0","name":"n","args":{"cni":{"labels":{}}}})",
       7, "args.cni.labels"},
      {"label value a number",
       R"({"cniVersion":"1.0.0","name":"n","args":{"cni":{"labels":[{"key":"a","value":1}]}}})", 7,
       "args.cni.labels[0].value"},
      {"label without key",
       R"({"cniVersion":"1.0.0","name":"n","args":{"cni":{"labels":[{"value":"v"}]}}})", 7,
       "args.cni.labels[0].key"},
      {"ips not strings", R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":[1]}})", 7,
       "runtimeConfig.ips[0]"},
      {"ip garbage", R"({"cniVersion":"1.0.0","name":"n","args":{"cni":{"ips":["10.1.0"]}}})", 7,
       "args.cni.ips[0]"},
      {"ip IPv6", R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["fd00::5/64"]}})", 7,
       "IPv6"},
      {"two static ips",
       R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["10.1.0.5","10.1.0.6"]}})", 7,
       "at most one"},
      {"aliases not strings",
       R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":{"aliases":[true]}})", 7,
       "runtimeConfig.aliases[0]"},
      {"runtimeConfig not an object", R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":[]})", 7,
       "runtimeConfig"},
      {"dns not an object", R"({"cniVersion":"1.0.0","name":"n","dns":"8.8.8.8"})", 7, "dns"},
      {"conflicting service",
       R"({"cniVersion":"1.0.0","name":"n","args":{"cni":{"labels":[{"key":"swarmnet.service","value":"a"}]}}})",
       7, "service", Command::add, Vars{{"CNI_ARGS", "SWARMNET_SERVICE=b"}}},
      {"CNI_ARGS IP garbage", R"({"cniVersion":"1.0.0","name":"n"})", 7, "CNI_ARGS IP",
       Command::add, Vars{{"CNI_ARGS", "IP=300.1.1.1"}}},
      {"prevResult ips wrong",
       R"({"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":5}]}})", 7,
       "prevResult.ips[0].address"},
      {"prevResult interface index out of range",
       R"({"cniVersion":"1.0.0","name":"n","prevResult":{"interfaces":[{"name":"a"}],"ips":[{"address":"10.0.0.2/24","interface":3}]}})",
       7, "prevResult.ips[0].interface"},
      {"GC without list", R"({"cniVersion":"1.1.0","name":"n"})", 7, "cni.dev/valid-attachments",
       Command::gc},
      {"GC list entry wrong",
       R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a"}]})", 7,
       "ifname", Command::gc},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    Failure f = config_error(c.text, c.command, PluginKind::main, c.extra);
    CHECK(f.code == c.code);
    CHECK_THAT(f.msg, Catch::Contains(c.names));
  }
}

TEST_CASE("config: unknown fields and foreign args are ignored") {
  NetConf c = parse_config(
      R"({"cniVersion":"0.4.0","name":"n","type":"swarmnet","someVendorKey":{"x":1},
          "args":{"labels":{"appVersion":"1.0"},"cni":{"other":1}}})",
      env_for(Command::add), PluginKind::main);
  CHECK(c.labels.empty());
  // args of a shape we do not own is not ours to judge.
  CHECK_NOTHROW(parse_config(R"({"cniVersion":"1.0.0","name":"n","args":"x"})",
                             env_for(Command::add), PluginKind::main));
  // DEL does not read the attachment details: a DEL must not fail on them.
  CHECK_NOTHROW(
      parse_config(R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["junk"]}})",
                   env_for(Command::del), PluginKind::main));
}

TEST_CASE("config: GC attachments, both keys") {
  NetConf c = parse_config(
      R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]})",
      env_for(Command::gc), PluginKind::main);
  REQUIRE(c.valid_attachments.size() == 1);
  CHECK(c.valid_attachments[0].container_id == "a");
  CHECK(c.valid_attachments[0].ifname == "eth0");
  NetConf old = parse_config(R"({"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[]})",
                             env_for(Command::gc), PluginKind::main);
  CHECK(old.valid_attachments.empty());
  CHECK(gc_request(c).valid.size() == 1);
}

TEST_CASE("config: swarmnet-ipam section") {
  NetConf c = parse_config(
      R"({"cniVersion":"1.0.0","name":"mybridge","type":"bridge",
          "ipam":{"type":"swarmnet-ipam","network":"back","daemonSocket":"/tmp/s.sock",
                  "routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.0/16","gw":"10.1.0.254"}],
                  "dns":{"nameservers":["10.1.0.1"]}}})",
      env_for(Command::add), PluginKind::ipam);
  CHECK(c.network == "back");
  CHECK(c.daemon_socket == "/tmp/s.sock");
  REQUIRE(c.routes.size() == 2);
  CHECK(c.routes[1].gw == "10.1.0.254");
  CHECK(c.dns.nameservers.size() == 1);

  NetConf d =
      parse_config(R"({"cniVersion":"1.0.0","name":"front","ipam":{"type":"swarmnet-ipam"}})",
                   env_for(Command::add), PluginKind::ipam);
  CHECK(d.network == "front");

  CHECK(config_error(R"({"cniVersion":"1.0.0","name":"n"})", Command::add, PluginKind::ipam).code ==
        7);
  auto bad_route =
      config_error(R"({"cniVersion":"1.0.0","name":"n","ipam":{"routes":[{"dst":"nowhere"}]}})",
                   Command::add, PluginKind::ipam);
  CHECK(bad_route.code == 7);
  CHECK_THAT(bad_route.msg, Catch::Contains("ipam.routes[0]"));
  CHECK(config_error(R"({"cniVersion":"1.0.0","name":"n","ipam":{"network":"/x"}})", Command::add,
                     PluginKind::ipam)
            .code == 7);
}

TEST_CASE("results: golden JSON per spec version") {
  Environment env = env_for(Command::add);
  NetConf conf =
      parse_config(R"({"cniVersion":"1.1.0","name":"front","dns":{"nameservers":["10.1.0.1"]}})",
                   env, PluginKind::main);
  Result r = attach_result(sample_endpoint(), "ee:ee:ee:00:00:01", env, conf);

  auto golden = [](const char* text) { return json::parse(text); };
  CHECK(json::value(encode_result(r, SpecVersion::v1_1_0)) == golden(R"({
    "cniVersion":"1.1.0",
    "interfaces":[{"name":"snv1a2b3c","mac":"ee:ee:ee:00:00:01"},
                  {"name":"eth0","mac":"02:42:0a:01:00:05","mtu":1450,"sandbox":"/var/run/netns/c0ffee"}],
    "ips":[{"interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],
    "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],
    "dns":{"nameservers":["10.1.0.1"]}})"));
  CHECK(json::value(encode_result(r, SpecVersion::v1_0_0)) == golden(R"({
    "cniVersion":"1.0.0",
    "interfaces":[{"name":"snv1a2b3c","mac":"ee:ee:ee:00:00:01"},
                  {"name":"eth0","mac":"02:42:0a:01:00:05","sandbox":"/var/run/netns/c0ffee"}],
    "ips":[{"interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],
    "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],
    "dns":{"nameservers":["10.1.0.1"]}})"));
  for (SpecVersion v : {SpecVersion::v0_3_0, SpecVersion::v0_3_1, SpecVersion::v0_4_0}) {
    INFO(to_string(v));
    json::value want = golden(R"({
      "interfaces":[{"name":"snv1a2b3c","mac":"ee:ee:ee:00:00:01"},
                    {"name":"eth0","mac":"02:42:0a:01:00:05","sandbox":"/var/run/netns/c0ffee"}],
      "ips":[{"version":"4","interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],
      "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],
      "dns":{"nameservers":["10.1.0.1"]}})");
    want.as_object()["cniVersion"] = to_string(v);
    CHECK(json::value(encode_result(r, v)) == want);
  }
  // Byte-exact once, so key order (which humans read) is pinned too.
  CHECK(encode_result_text(r, SpecVersion::v0_4_0) ==
        R"({"cniVersion":"0.4.0","interfaces":[{"name":"snv1a2b3c","mac":"ee:ee:ee:00:00:01"},)"
        R"({"name":"eth0","mac":"02:42:0a:01:00:05","sandbox":"/var/run/netns/c0ffee"}],)"
        R"("ips":[{"version":"4","interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],)"
        R"("routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],"dns":{"nameservers":["10.1.0.1"]}})");
}

TEST_CASE("results: 1.1 route fields dropped for older versions, round trip") {
  Result r;
  Route rt;
  rt.dst = "10.9.0.0/16";
  rt.gw = "10.1.0.254";
  rt.mtu = 1300;
  rt.priority = 10;
  rt.scope = 0;
  r.routes.push_back(rt);
  IpConfig ip6;
  ip6.address = "fd00::5/64";
  r.ips.push_back(ip6);
  auto v11 = encode_result(r, SpecVersion::v1_1_0);
  CHECK(v11.at("routes").at(0).at("mtu") == 1300);
  CHECK(v11.at("routes").at(0).at("scope") == 0);
  auto v10 = encode_result(r, SpecVersion::v1_0_0);
  CHECK_FALSE(v10.at("routes").at(0).as_object().contains("mtu"));
  CHECK(encode_result(r, SpecVersion::v0_3_1).at("ips").at(0).at("version") == "6");
  CHECK(decode_result(v11, "prevResult") == r);
}

TEST_CASE("results: chaining appends after prevResult with shifted indexes") {
  const char* text = R"({"cniVersion":"0.4.0","name":"front","prevResult":{
      "cniVersion":"0.4.0",
      "interfaces":[{"name":"lo0"},{"name":"dummy","sandbox":"/var/run/netns/c0ffee"}],
      "ips":[{"version":"4","interface":1,"address":"192.168.9.2/24"}],
      "routes":[{"dst":"192.168.0.0/16"}],
      "dns":{"nameservers":["192.168.9.1"]}}})";
  Environment env = env_for(Command::add);
  NetConf conf = parse_config(text, env, PluginKind::main);
  REQUIRE(conf.prev_result);
  Result r = attach_result(sample_endpoint(), "ee:ee:ee:00:00:01", env, conf);
  REQUIRE(r.interfaces.size() == 4);
  CHECK(r.interfaces[2].name == "snv1a2b3c");
  CHECK(r.interfaces[3].name == "eth0");
  REQUIRE(r.ips.size() == 2);
  CHECK(r.ips[0].interface == 1u);
  CHECK(r.ips[1].interface == 3u);
  CHECK(r.routes.size() == 2);
  CHECK(r.dns.nameservers == std::vector<std::string>{"192.168.9.1"});
  CHECK(encode_result(r, SpecVersion::v0_4_0).at("ips").at(1).at("version") == "4");
}

TEST_CASE("swarmnet-ipam result and endpoint requests") {
  Environment env = env_for(Command::add, {{"CNI_ARGS", "SWARMNET_SERVICE=web"}});
  NetConf conf = parse_config(
      R"({"cniVersion":"0.3.1","name":"b","ipam":{"type":"swarmnet-ipam","network":"back","routes":[{"dst":"0.0.0.0/0"}]}})",
      env, PluginKind::ipam);
  Result r = ipam_result(sample_endpoint(), conf);
  CHECK(json::value(encode_result(r, SpecVersion::v0_3_1)) == json::parse(R"({
    "cniVersion":"0.3.1",
    "ips":[{"version":"4","address":"10.1.0.5/24","gateway":"10.1.0.1"}],
    "routes":[{"dst":"0.0.0.0/0"}], "dns":{}})"));

  api::EndpointCreate req = endpoint_request(env, conf, false);
  CHECK_FALSE(req.attach);
  CHECK(req.container_id == "c0ffee");
  CHECK(req.ifname == "eth0");
  CHECK(req.netns == "/var/run/netns/c0ffee");
  CHECK(req.service == "web");
  CHECK(endpoints_target(conf) == "/v1/networks/back/endpoints");
  CHECK(endpoint_target(conf, env) == "/v1/networks/back/endpoints/c0ffee/eth0");
  CHECK(gc_target(conf) == "/v1/networks/back/gc");

  NetConf mtu = parse_config(R"({"cniVersion":"1.0.0","name":"f","mtu":1300})",
                             env_for(Command::add), PluginKind::main);
  CHECK(effective_mtu(sample_endpoint(), mtu) == 1300);
  CHECK(effective_mtu(sample_endpoint(), conf) == 1450);
}

TEST_CASE("CHECK compares prevResult with the kernel and the daemon") {
  Environment env = env_for(Command::check);
  NetConf add_conf = parse_config(kBase, env_for(Command::add), PluginKind::main);
  Result added = attach_result(sample_endpoint(), "ee:ee:ee:00:00:01", env, add_conf);
  json::object conf_json = json::parse(kBase).as_object();
  conf_json["prevResult"] = encode_result(added, SpecVersion::v1_1_0);
  NetConf conf = parse_config(json::serialize(conf_json), env, PluginKind::main);

  ObservedInterface good;
  good.mac = "02:42:0A:01:00:05";  // case does not matter
  good.addresses = {"10.1.0.5/24"};
  good.routes = {{"10.1.0.0/24", ""}, {"0.0.0.0/0", "10.1.0.1"}};
  CHECK_NOTHROW(check_attachment(env, conf, good, sample_endpoint()));

  auto failure = [&](ObservedInterface seen, api::Endpoint ep = sample_endpoint()) {
    try {
      check_attachment(env, conf, seen, ep);
    } catch (const CniError& e) {
      CHECK(e.code() == code::kCheckFailed);
      return e.msg();
    }
    return std::string("no error");
  };
  ObservedInterface s = good;
  s.mac = "02:42:0a:01:00:99";
  CHECK_THAT(failure(s), Catch::Contains("MAC"));
  s = good;
  s.addresses.clear();
  CHECK_THAT(failure(s), Catch::Contains("address 10.1.0.5/24"));
  s = good;
  s.routes.pop_back();
  CHECK_THAT(failure(s), Catch::Contains("route to 0.0.0.0/0"));
  api::Endpoint moved = sample_endpoint();
  moved.address = Ipv4Prefix::parse("10.1.0.6/24");
  CHECK_THAT(failure(good, moved), Catch::Contains("swarmnetd holds address 10.1.0.6/24"));

  NetConf no_prev = parse_config(kBase, env, PluginKind::main);
  CHECK_THROWS_AS(check_attachment(env, no_prev, good, sample_endpoint()), CniError);
}

TEST_CASE("errors: JSON shape and the Errc mapping") {
  auto e = json::parse(encode_error(CniError(7, "bad", "worse"), SpecVersion::v0_4_0));
  CHECK(e == json::parse(R"({"cniVersion":"0.4.0","code":7,"msg":"bad","details":"worse"})"));
  CHECK_FALSE(json::parse(encode_error(CniError(4, "x"), SpecVersion::v1_1_0))
                  .as_object()
                  .contains("details"));
  CHECK(cni_code_for(Errc::unavailable) == 11);
  CHECK(cni_code_for(Errc::exhausted) == 100);
  CHECK(cni_code_for(Errc::conflict) == 101);
  CHECK(cni_code_for(Errc::not_found) == 7);
  CHECK(cni_code_for(Errc::invalid_argument) == 7);
  CHECK(cni_code_for(Errc::internal) == 102);
  CniError mapped = from_error(Error(Errc::not_found, "network \"x\" not found"));
  CHECK(mapped.code() == 7);
  CHECK(mapped.msg() == "network \"x\" not found");
}

TEST_CASE("VERSION and version negotiation") {
  CHECK(
      json::parse(encode_version_reply()) ==
      json::parse(
          R"({"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})"));
  CHECK(parse_spec_version("1.0.0") == SpecVersion::v1_0_0);
  CHECK_FALSE(parse_spec_version("0.2.0"));
  CHECK_FALSE(parse_spec_version("1.0"));
  CHECK(peek_version(R"({"cniVersion":"0.3.1"})") == SpecVersion::v0_3_1);
  CHECK_FALSE(peek_version("nope"));
}

TEST_CASE("skel: dispatch, stdout carries only CNI JSON") {
  struct Run {
    int rc;
    std::string out, err;
  };
  int adds = 0;
  Handlers h;
  h.add = [&](const Environment&, const NetConf&) {
    ++adds;
    Result r;
    IpConfig ip;
    ip.address = "10.1.0.5/24";
    r.ips.push_back(ip);
    return r;
  };
  h.del = [](const Environment&, const NetConf&) {
    throw Error(Errc::unavailable, "cannot reach swarmnetd");
  };
  h.check = h.gc = h.status = [](const Environment&, const NetConf&) {};
  PluginInfo info{"swarmnet", "test", PluginKind::main};
  auto run = [&](Vars vars, std::string in, std::vector<const char*> argv = {"swarmnet"}) {
    std::ostringstream out, err;
    Io io{fake_env(vars), [in] { return in; }, out, err};
    int rc = run_plugin(info, h, io, static_cast<int>(argv.size()), argv.data());
    return Run{rc, out.str(), err.str()};
  };

  Run ok = run(add_vars(), R"({"cniVersion":"0.3.1","name":"n","logLevel":"off"})");
  CHECK(ok.rc == 0);
  CHECK(adds == 1);
  CHECK(json::parse(ok.out).at("ips").at(0).at("version") == "4");

  Vars del = add_vars();
  del["CNI_COMMAND"] = "DEL";
  Run down = run(del, R"({"cniVersion":"1.0.0","name":"n","logLevel":"off"})");
  CHECK(down.rc == 1);
  CHECK(json::parse(down.out).at("code") == 11);
  CHECK(json::parse(down.out).at("cniVersion") == "1.0.0");

  Run bad = run(add_vars(), "{oops");
  CHECK(bad.rc == 1);
  CHECK(json::parse(bad.out).at("code") == 6);
  CHECK(adds == 1);  // nothing ran

  Run version = run({{"CNI_COMMAND", "VERSION"}}, "");
  CHECK(version.rc == 0);
  CHECK(json::parse(version.out).at("supportedVersions").as_array().size() == 5);

  Run help = run({}, "", {"swarmnet", "--help"});
  CHECK(help.rc == 0);
  CHECK_THAT(help.out, Catch::Contains("CNI_COMMAND"));
  Run nothing = run({}, "");
  CHECK(nothing.rc == 1);
  CHECK(json::parse(nothing.out).at("code") == 4);
}
