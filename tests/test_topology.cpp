// swarmnetctl topology (ctl/topology.hpp): the API's answers for a 30-node
// cluster, made here, drawn as DOT and rendered by Graphviz's real `dot`:
// the SVG is well-formed and names every node, network and service.
#include <catch2/catch.hpp>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "ctl/topology.hpp"

namespace json = boost::json;
namespace topology = swarmnet::topology;

namespace {

std::string two(int i) { return (i < 10 ? "0" : "") + std::to_string(i); }

// The answers of GET /v1/nodes, /v1/networks, every network's endpoints and
// every /v1/services/NAME for N nodes: networks front, back, data and the
// routing mesh's ingress; services web (every node, published on the mesh),
// api (two nodes in three, on front and back), db (dnsrr, host-mode port,
// three nodes); a plain container on some nodes; a dead and a suspect node.
struct Answers {
  json::array nodes, networks, endpoints, services;
};

Answers cluster_of(int n) {
  Answers a;
  auto id = [](int i) { return "id" + two(i) + "abcdef0123456789"; };
  for (int i = 1; i <= n; ++i) {
    const char* status = i == 7 ? "dead" : i == 8 ? "suspect" : "alive";
    a.nodes.push_back(json::object{{"id", id(i)}, {"name", "node" + two(i)},
                                   {"address", "192.0.2." + std::to_string(10 + i)}, {"status", status},
                                   {"self", i == 1}});
  }
  const std::vector<std::pair<std::string, std::string>> nets{
      {"front", "10.1.0.0/16"}, {"back", "10.2.0.0/16"}, {"data", "10.3.0.0/16"}, {"ingress", "10.255.0.0/16"}};
  uint32_t vni = 4096;
  for (const auto& [name, subnet] : nets) {
    a.networks.push_back(json::object{{"id", "net-" + name}, {"name", name}, {"subnet", subnet}, {"vni", ++vni},
                                      {"internal", name == "data"}});
  }
  int host = 2;
  auto endpoint = [&](int node, const std::string& net, const std::string& container, const std::string& service,
                      const char* owner = "cni") {
    json::object e{{"network", net}, {"node", id(node)}, {"container_id", container}, {"ifname", "eth0"},
                   {"address", "10.0.0." + std::to_string(host++ % 250) + "/16"}, {"service", service},
                   {"owner", owner}, {"name", container}};
    a.endpoints.push_back(e);
  };
  json::array web_tasks, api_tasks, db_tasks;
  auto task = [&](json::array& tasks, int node, const std::string& container, const std::string& net,
                  json::array host_ports = {}) {
    tasks.push_back(json::object{{"container_id", container}, {"network", net}, {"node", id(node)},
                                 {"healthy", container != "web-05"}, {"host_ports", std::move(host_ports)}});
  };
  for (int i = 1; i <= n; ++i) {
    endpoint(i, "ingress", "ingress-sbox-" + two(i), "", "sandbox");
    endpoint(i, "front", "web-" + two(i), "web");
    task(web_tasks, i, "web-" + two(i), "front");
    if (i % 3 != 0) {
      endpoint(i, "front", "api-" + two(i), "api");
      endpoint(i, "back", "api-" + two(i), "api");
      task(api_tasks, i, "api-" + two(i), "front");
      task(api_tasks, i, "api-" + two(i), "back");
    }
    if (i <= 3) {
      endpoint(i, "back", "db-" + two(i), "db");
      endpoint(i, "data", "db-" + two(i), "db");
      task(db_tasks, i, "db-" + two(i), "back",
           json::array{json::object{{"published", 5432}, {"target", 5432}, {"protocol", "tcp"}}});
    }
    if (i % 5 == 0) endpoint(i, "data", "batch-" + two(i), "");
  }
  endpoint(1, "front", "svc-vip-web", "", "service-vip");
  a.services.push_back(json::object{
      {"name", "web"}, {"endpoint_mode", "vip"}, {"vips", json::object{{"front", "10.1.0.2"}}},
      {"ports", json::array{json::object{{"target", 80}, {"protocol", "tcp"}, {"published", 8080},
                                         {"publish_mode", "ingress"}}}},
      {"tasks", web_tasks}});
  a.services.push_back(json::object{{"name", "api"},
                                    {"endpoint_mode", "vip"},
                                    {"vips", json::object{{"front", "10.1.0.3"}, {"back", "10.2.0.2"}}},
                                    {"ports", json::array{json::object{{"target", 9000}, {"protocol", "tcp"}}}},
                                    {"tasks", api_tasks}});
  a.services.push_back(json::object{
      {"name", "db"}, {"endpoint_mode", "dnsrr"}, {"vips", json::object{}},
      {"ports", json::array{json::object{{"target", 5432}, {"protocol", "tcp"}, {"published", 5432},
                                         {"publish_mode", "host"}}}},
      {"tasks", db_tasks}});
  return a;
}

topology::Cluster decode(const Answers& a) {
  return topology::from_api(a.nodes, a.networks, a.endpoints, a.services);
}

// Every <text> of the SVG, whitespace-trimmed.
void collect_texts(const boost::property_tree::ptree& t, std::multiset<std::string>& out) {
  for (const auto& [name, child] : t) {
    if (name == "text") out.insert(child.get_value<std::string>());
    collect_texts(child, out);
  }
}

bool contains_text(const std::multiset<std::string>& texts, const std::string& what) {
  for (const auto& t : texts) {
    if (t.find(what) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("topology: a 30-node cluster renders through dot to SVG naming every node, network and service") {
  const Answers a = cluster_of(30);
  const std::string dot = topology::to_dot(decode(a));
  const std::string svg = topology::render(dot, "svg");

  boost::property_tree::ptree tree;
  std::istringstream in(svg);
  REQUIRE_NOTHROW(boost::property_tree::read_xml(in, tree));  // well-formed XML
  const auto& root = tree.get_child("svg");                  // whose root is <svg>
  std::multiset<std::string> texts;
  collect_texts(root, texts);
  for (int i = 1; i <= 30; ++i) CHECK(contains_text(texts, "node" + two(i)));
  for (const char* net : {"front", "back", "data", "ingress"}) CHECK(texts.count(net) == 1);
  for (const char* svc : {"web", "api", "db"}) CHECK(texts.count(svc) >= 1);
  CHECK(contains_text(texts, "*:8080→80/tcp (every node)"));
  CHECK(contains_text(texts, "host:5432→5432/tcp"));
  CHECK(contains_text(texts, "web (unhealthy)"));
  CHECK(contains_text(texts, "batch-30"));

  // Readable: nodes are stacked, so the picture grows in height and stays
  // narrow enough to read at its natural size (points).
  const auto width = std::stod(root.get<std::string>("<xmlattr>.width"));
  const auto height = std::stod(root.get<std::string>("<xmlattr>.height"));
  INFO("SVG " << width << " x " << height);
  CHECK(width < 1400);
  CHECK(height > width);
}

TEST_CASE("topology: tasks are drawn on their node, networks on the nodes they span") {
  const std::string dot = topology::to_dot(decode(cluster_of(3)));
  // Sorted by name: node01..03 are h0..h2; networks back, data, front,
  // ingress are n0..n3; services api, db, web are s0..s2.
  CHECK_THAT(dot, Catch::Contains("h0 -> n3"));          // ingress spans node01 (its sandbox)
  CHECK_THAT(dot, Catch::Contains("h2 -> n0"));          // back spans node03 (db-03)
  CHECK_THAT(dot, Catch::Contains("s1 -> h2:c"));        // db has a task on node03
  CHECK_THAT(dot, !Catch::Contains("svc-vip-web"));      // a VIP is no container
  CHECK_THAT(dot, !Catch::Contains("ingress-sbox"));     // nor the mesh's sandbox
  CHECK_THAT(dot, Catch::Contains("(this node)"));
  // node03 runs no api task (3 % 3 == 0): no edge from api to it.
  CHECK_THAT(dot, !Catch::Contains("s0 -> h2"));
  CHECK_THAT(dot, Catch::Contains("s0 -> h1"));
}

TEST_CASE("topology: names are escaped, and an unknown node still shows its containers") {
  topology::Cluster c;
  c.nodes.push_back({"n1", "a<b>&\"c", "192.0.2.1", "alive", true});
  c.networks.push_back({"net", "10.0.0.0/24", 4097, false});
  c.endpoints.push_back({"net", "n1", "c1", "x<y", "10.0.0.2", "", "cni"});
  c.endpoints.push_back({"net", "f00dfeedbeef0042", "c2", "lost", "10.0.0.3", "", "cni"});
  const std::string dot = topology::to_dot(c);
  CHECK_THAT(dot, Catch::Contains("a&lt;b&gt;&amp;&quot;c"));
  CHECK_THAT(dot, Catch::Contains("x&lt;y"));
  CHECK_THAT(dot, Catch::Contains("f00dfeedbeef"));
  CHECK_THAT(dot, Catch::Contains("unknown"));
  CHECK_NOTHROW(topology::render(dot, "svg"));
}

TEST_CASE("topology: answers of the wrong shape are refused naming what is wrong") {
  const Answers a = cluster_of(2);
  json::array bad_nodes{json::object{{"name", "no id"}}};
  CHECK_THROWS_WITH(topology::from_api(bad_nodes, a.networks, a.endpoints, a.services), Catch::Contains("id"));
  CHECK_THROWS_WITH(topology::from_api(a.nodes, json::object{}, a.endpoints, a.services),
                    Catch::Contains("networks: expected an array"));
}

TEST_CASE("topology: dot's own error is reported") {
  CHECK_THROWS_WITH(topology::render("digraph { this is not dot", "svg"), Catch::StartsWith("dot -Tsvg failed: "));
}
