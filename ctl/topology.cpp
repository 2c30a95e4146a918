#include "ctl/topology.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::topology {

namespace json = boost::json;
using namespace json_fields;

namespace {

const json::array& as_array(const json::value& v, const char* what) {
  if (!v.is_array()) throw Error(Errc::invalid_argument, std::string(what) + ": expected an array");
  return v.get_array();
}

unsigned uint_or_zero(const json::object& o, std::string_view key) {
  return static_cast<unsigned>(optional_uint(o, key, 0xffffffffu).value_or(0));
}

std::string port_text(unsigned published, unsigned target, const std::string& protocol) {
  return std::to_string(published) + "->" + std::to_string(target) + "/" + protocol;
}

// What HTML-like labels need escaped (names come from users).
std::string esc(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\n': out += ' '; break;
      default: out += c;
    }
  }
  return out;
}

// "->" drawn as an arrow.
std::string arrows(std::string_view s) {
  std::string out = esc(s);
  for (size_t i; (i = out.find("-&gt;")) != std::string::npos;) out.replace(i, 5, "&#8594;");
  return out;
}

// Distinct colours for up to 12 networks, then they repeat (names tell apart).
const char* network_colour(size_t i) {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
                                  "#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939", "#7f7f7f"};
  return palette[i % std::size(palette)];
}

const char* status_colour(const std::string& status) {
  if (status == "alive") return "#d9ead3";
  if (status == "suspect") return "#fff2cc";
  if (status == "dead") return "#f4cccc";
  return "#e0e0e0";  // left, gone, unknown
}

constexpr const char* kServiceColour = "#4a6fa5";
// A node with more containers shows this many rows and a count of the rest:
// a picture is for seeing where things are, `endpoint ls` lists them all.
constexpr size_t kMaxRowsPerNode = 40;

std::string service_ports_text(const Service& s) {
  std::string out;
  for (const Port& p : s.ports) {
    std::string line;
    if (p.publish_mode == "ingress") {
      line = "*:" + port_text(p.published, p.target, p.protocol) + " (every node)";
    } else if (p.publish_mode == "host") {
      line = "host:" + (p.published ? port_text(p.published, p.target, p.protocol)
                                    : "(per task)->" + std::to_string(p.target) + "/" + p.protocol);
    } else {
      line = std::to_string(p.target) + "/" + p.protocol;
    }
    out += "<BR/>" + arrows(line);
  }
  return out;
}

// One container of one node: its endpoints on every network.
struct Row {
  std::string label;
  std::string service;
  bool unhealthy = false;
  std::vector<std::string> host_ports;
  std::vector<const Endpoint*> endpoints;
};

}  // namespace

Cluster from_api(const json::value& nodes, const json::value& networks, const json::value& endpoints,
                 const json::value& services) {
  Cluster c;
  for (const auto& v : as_array(nodes, "nodes")) {
    const auto& o = as_object(v, "node");
    c.nodes.push_back(Node{required_string(o, "id"), string_or(o, "name", ""), string_or(o, "address", ""),
                           string_or(o, "status", ""), bool_or(o, "self", false)});
  }
  for (const auto& v : as_array(networks, "networks")) {
    const auto& o = as_object(v, "network");
    c.networks.push_back(Network{required_string(o, "name"), string_or(o, "subnet", ""),
                                 static_cast<uint32_t>(uint_or_zero(o, "vni")), bool_or(o, "internal", false)});
  }
  for (const auto& v : as_array(endpoints, "endpoints")) {
    const auto& o = as_object(v, "endpoint");
    std::string ip = string_or(o, "address", "");
    ip = ip.substr(0, ip.find('/'));
    Endpoint e{required_string(o, "network"), required_string(o, "node"), string_or(o, "container_id", ""),
               string_or(o, "name", ""), ip, string_or(o, "service", ""), string_or(o, "owner", "")};
    // Service VIPs are address-only endpoints labelled so; older ones may
    // lack the owner.
    if (const auto* labels = find(o, "labels"); labels && labels->is_object() && labels->get_object().contains("swarmnet.vip")) {
      e.owner = "service-vip";
    }
    c.endpoints.push_back(std::move(e));
  }
  for (const auto& v : as_array(services, "services")) {
    const auto& o = as_object(v, "service");
    Service s{required_string(o, "name"), string_or(o, "endpoint_mode", "vip"), {}, {}, {}};
    if (const auto* vips = find(o, "vips"); vips && vips->is_object()) {
      for (const auto& [net, vip] : vips->get_object()) {
        if (vip.is_string()) s.vips[std::string(net)] = std::string(vip.get_string());
      }
    }
    if (const auto* ports = find(o, "ports"); ports && ports->is_array()) {
      for (const auto& pv : ports->get_array()) {
        const auto& po = as_object(pv, "port");
        s.ports.push_back(Port{uint_or_zero(po, "target"), string_or(po, "protocol", "tcp"),
                               uint_or_zero(po, "published"), string_or(po, "publish_mode", "")});
      }
    }
    if (const auto* tasks = find(o, "tasks"); tasks && tasks->is_array()) {
      for (const auto& tv : tasks->get_array()) {
        const auto& to = as_object(tv, "task");
        Task t{string_or(to, "container_id", ""), string_or(to, "network", ""), string_or(to, "node", ""),
               bool_or(to, "healthy", true), {}};
        if (const auto* hp = find(to, "host_ports"); hp && hp->is_array()) {
          for (const auto& pv : hp->get_array()) {
            const auto& po = as_object(pv, "host port");
            t.host_ports.push_back(port_text(uint_or_zero(po, "published"), uint_or_zero(po, "target"),
                                             string_or(po, "protocol", "tcp")));
          }
        }
        s.tasks.push_back(std::move(t));
      }
    }
    c.services.push_back(std::move(s));
  }
  return c;
}

std::string to_dot(const Cluster& cluster) {
  // Everything sorted by name, so the same cluster draws the same way.
  std::vector<Node> nodes = cluster.nodes;
  std::sort(nodes.begin(), nodes.end(), [](const Node& a, const Node& b) {
    return std::tie(a.name, a.id) < std::tie(b.name, b.id);
  });
  std::vector<Network> networks = cluster.networks;
  std::sort(networks.begin(), networks.end(), [](const Network& a, const Network& b) { return a.name < b.name; });
  std::vector<Service> services = cluster.services;
  std::sort(services.begin(), services.end(), [](const Service& a, const Service& b) { return a.name < b.name; });

  std::map<std::string, size_t> node_index;  // id -> index in nodes
  for (size_t i = 0; i < nodes.size(); ++i) node_index[nodes[i].id] = i;
  // Endpoints on a node the list does not have (forgotten, or listed
  // between two answers): drawn on a node of their own, named by its id.
  for (const Endpoint& e : cluster.endpoints) {
    if (node_index.count(e.node)) continue;
    node_index[e.node] = nodes.size();
    nodes.push_back(Node{e.node, e.node.substr(0, 12), "", "unknown", false});
  }
  std::map<std::string, size_t> network_index;
  for (size_t i = 0; i < networks.size(); ++i) network_index[networks[i].name] = i;
  std::map<std::string, size_t> service_index;
  for (size_t i = 0; i < services.size(); ++i) service_index[services[i].name] = i;

  // Task facts the endpoints lack: health and host-mode ports.
  std::map<std::tuple<std::string, std::string, std::string>, const Task*> tasks;  // node, container, network
  for (const Service& s : services) {
    for (const Task& t : s.tasks) tasks[{t.node, t.container_id, t.network}] = &t;
  }

  // Rows per node (one per container), and the networks each node carries.
  std::vector<std::map<std::string, Row>> rows(nodes.size());  // container id -> row
  std::vector<std::set<size_t>> spans(nodes.size());
  size_t containers = 0;
  for (const Endpoint& e : cluster.endpoints) {
    const size_t n = node_index.at(e.node);
    if (e.owner == "service-vip") continue;  // drawn on its service
    if (auto it = network_index.find(e.network); it != network_index.end()) spans[n].insert(it->second);
    if (e.owner == "sandbox") continue;  // the routing mesh's, one per node: the span says it
    auto [it, added] = rows[n].try_emplace(e.container_id);
    Row& r = it->second;
    if (added) ++containers;
    if (r.label.empty() && !e.name.empty()) r.label = e.name;
    if (r.service.empty()) r.service = e.service;
    r.endpoints.push_back(&e);
    if (auto t = tasks.find({e.node, e.container_id, e.network}); t != tasks.end()) {
      r.unhealthy = r.unhealthy || !t->second->healthy;
      for (const auto& p : t->second->host_ports) r.host_ports.push_back("host:" + p);
    }
  }

  // Rows in name order (the container's name, else its id).
  std::vector<std::vector<std::pair<std::string, const Row*>>> sorted_rows(nodes.size());
  for (size_t n = 0; n < nodes.size(); ++n) {
    auto& sorted = sorted_rows[n];
    for (const auto& [id, r] : rows[n]) sorted.emplace_back(r.label.empty() ? id.substr(0, 12) : r.label, &r);
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  }

  std::ostringstream out;
  out << "digraph swarmnet {\n"
      << "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=14, nodesep=0.3, ranksep=1.6, labelloc=t,\n"
      << "         label=<<B>swarmnet cluster</B>: " << nodes.size() << " node(s), " << networks.size()
      << " network(s), " << services.size() << " service(s), " << containers << " container(s)>];\n"
      << "  node [fontname=\"Helvetica\", fontsize=10];\n"
      << "  edge [arrowhead=none];\n";

  out << "  // services: VIPs and published ports\n";
  for (size_t i = 0; i < services.size(); ++i) {
    const Service& s = services[i];
    std::string label = "<B>" + esc(s.name) + "</B>";
    if (s.endpoint_mode == "dnsrr") label += "<BR/>dnsrr";
    for (const auto& [net, vip] : s.vips) {
      const auto it = network_index.find(net);
      const char* colour = it == network_index.end() ? "#000000" : network_colour(it->second);
      label += "<BR/>VIP <FONT COLOR=\"" + std::string(colour) + "\">" + esc(vip) + "</FONT> (" + esc(net) + ")";
    }
    label += service_ports_text(s);
    out << "  s" << i << " [shape=box, style=\"rounded,filled\", fillcolor=\"#eef3fb\", color=\"" << kServiceColour
        << "\", label=<" << label << ">];\n";
  }

  out << "  // nodes, a row per container\n";
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Node& node = nodes[n];
    std::ostringstream t;
    t << "<TABLE BORDER=\"1\" CELLBORDER=\"0\" CELLSPACING=\"0\" CELLPADDING=\"3\" COLOR=\"#888888\">"
      << "<TR><TD COLSPAN=\"3\" ALIGN=\"LEFT\" BGCOLOR=\"" << status_colour(node.status) << "\"><B>"
      << esc(node.name.empty() ? node.id.substr(0, 12) : node.name) << "</B>" << (node.self ? " (this node)" : "")
      << "<BR/><FONT POINT-SIZE=\"9\">" << esc(node.address) << (node.address.empty() ? "" : " &#183; ")
      << esc(node.status) << "</FONT></TD></TR>";
    const auto& sorted = sorted_rows[n];
    if (sorted.empty()) t << "<TR><TD COLSPAN=\"3\"><I>no containers</I></TD></TR>";
    for (size_t k = 0; k < sorted.size() && k < kMaxRowsPerNode; ++k) {
      const Row& r = *sorted[k].second;
      t << "<TR><TD PORT=\"c" << k << "\" ALIGN=\"LEFT\">" << esc(sorted[k].first) << "</TD><TD ALIGN=\"LEFT\">";
      if (!r.service.empty()) {
        t << "<FONT COLOR=\"" << (r.unhealthy ? "#cc0000" : kServiceColour) << "\">" << esc(r.service)
          << (r.unhealthy ? " (unhealthy)" : "") << "</FONT>";
      }
      for (const auto& p : r.host_ports) t << "<BR ALIGN=\"LEFT\"/>" << arrows(p);
      t << "</TD><TD ALIGN=\"LEFT\">";
      for (size_t j = 0; j < r.endpoints.size(); ++j) {
        const Endpoint& e = *r.endpoints[j];
        const auto it = network_index.find(e.network);
        t << (j ? "<BR ALIGN=\"LEFT\"/>" : "") << "<FONT COLOR=\""
          << (it == network_index.end() ? "#000000" : network_colour(it->second)) << "\">" << esc(e.ip) << " "
          << esc(e.network) << "</FONT>";
      }
      t << "</TD></TR>";
    }
    if (sorted.size() > kMaxRowsPerNode) {
      t << "<TR><TD COLSPAN=\"3\"><I>and " << sorted.size() - kMaxRowsPerNode << " more</I></TD></TR>";
    }
    t << "</TABLE>";
    out << "  h" << n << " [shape=plain, label=<" << t.str() << ">];\n";
  }

  out << "  // networks\n";
  for (size_t i = 0; i < networks.size(); ++i) {
    const Network& net = networks[i];
    out << "  n" << i << " [shape=ellipse, style=filled, color=\"" << network_colour(i) << "\", fillcolor=\""
        << network_colour(i) << "33\", penwidth=2, label=<<B>" << esc(net.name) << "</B><BR/>" << esc(net.subnet)
        << (net.vni ? " &#183; VNI " + std::to_string(net.vni) : "") << (net.internal ? "<BR/>internal" : "")
        << ">];\n";
  }

  // Columns: services left, networks right, nodes between.
  if (!services.empty()) {
    out << "  { rank=min;";
    for (size_t i = 0; i < services.size(); ++i) out << " s" << i << ";";
    out << " }\n";
  }
  if (!networks.empty()) {
    out << "  { rank=max;";
    for (size_t i = 0; i < networks.size(); ++i) out << " n" << i << ";";
    out << " }\n";
  }

  // Nodes top to bottom in name order (dot would reorder them to save
  // crossings; an operator looks a node up by its name).
  if (nodes.size() > 1) {
    out << "  { rank=same; edge [style=invis];";
    for (size_t n = 0; n < nodes.size(); ++n) out << (n ? " -> h" : " h") << n;
    out << "; }\n";
  }

  out << "  // a service's tasks\n";
  for (size_t n = 0; n < nodes.size(); ++n) {
    const auto& sorted = sorted_rows[n];
    for (size_t k = 0; k < sorted.size(); ++k) {
      const auto it = service_index.find(sorted[k].second->service);
      if (it == service_index.end()) continue;
      // Rows past the limit are counted, not drawn: their edges go to the node.
      out << "  s" << it->second << " -> h" << n;
      if (k < kMaxRowsPerNode) out << ":c" << k << ":w";
      out << " [color=\"" << kServiceColour << "\"];\n";
    }
  }
  out << "  // the networks a node carries\n";
  for (size_t n = 0; n < nodes.size(); ++n) {
    for (size_t i : spans[n]) {
      out << "  h" << n << " -> n" << i << " [color=\"" << network_colour(i) << "\", penwidth=1.5];\n";
    }
  }
  out << "}\n";
  return out.str();
}

std::string render(const std::string& dot_text, const std::string& format) {
  // The DOT text goes in through a file, not a pipe, so that `dot` writing
  // a large picture while we still write its input cannot deadlock us.
  std::FILE* input = std::tmpfile();
  std::FILE* errors = std::tmpfile();
  if (!input || !errors) {
    if (input) std::fclose(input);
    if (errors) std::fclose(errors);
    throw_errno(Errc::internal, "temporary file for dot", errno);
  }
  std::fwrite(dot_text.data(), 1, dot_text.size(), input);
  std::fflush(input);
  std::rewind(input);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    std::fclose(input);
    std::fclose(errors);
    throw_errno(Errc::internal, "pipe for dot", errno);
  }
  const std::string type = "-T" + format;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(::fileno(input), 0);
    ::dup2(out[1], 1);
    ::dup2(::fileno(errors), 2);
    ::execlp("dot", "dot", type.c_str(), static_cast<char*>(nullptr));
    ::_exit(errno == ENOENT ? 127 : 126);
  }
  ::close(out[1]);
  std::string result;
  if (pid > 0) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(out[0], buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      result.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(out[0]);
  std::fclose(input);
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) < 0) {
    std::fclose(errors);
    throw_errno(Errc::internal, "running dot", errno);
  }
  std::string message;
  std::rewind(errors);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), errors)) > 0;) message.append(buf, n);
  std::fclose(errors);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    throw Error(Errc::not_found,
                "Graphviz's `dot` was not found: apt-get install graphviz (or print the DOT text with --format dot)");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!message.empty() && message.back() == '\n') message.pop_back();
    throw Error(Errc::internal, "dot -" + type.substr(1) + " failed: " + (message.empty() ? "no message" : message));
  }
  return result;
}

}  // namespace swarmnet::topology
