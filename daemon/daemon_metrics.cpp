#include "daemon/daemon_metrics.hpp"

#include <memory>
#include <vector>

#include "common/version.hpp"

namespace swarmnet::daemon {

using metrics::Sample;
using metrics::Type;

namespace {

double d(uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::map<std::string, AddressUsage> address_usage(const Store& store) {
  std::map<std::string, uint64_t> used, recorded, mine;  // by network id
  for (const auto& [key, e] : store.endpoints())
    if (!e.deleted) ++used[e.value.network_id];
  for (const auto& [key, b] : store.blocks()) {
    if (b.deleted) continue;
    ++recorded[b.value.network_id];
    if (b.value.owner == store.node_id()) ++mine[b.value.network_id];
  }
  std::map<std::string, AddressUsage> out;
  for (const auto& [id, n] : store.networks()) {
    if (n.deleted) continue;
    const NetworkRecord& net = n.value;
    AddressUsage u;
    u.used = used[id];
    // Network, broadcast and gateway are never handed out (ipam::AddressSpace).
    const uint64_t capacity = net.subnet.size() - 3;
    u.free = capacity > u.used ? capacity - u.used : 0;
    const unsigned block_length = std::max(net.block_length, net.subnet.length());
    u.blocks = uint64_t{1} << (block_length - net.subnet.length());
    // A block nobody was given belongs to the node that created the network
    // (the rule daemon/controller.cpp's owner_of follows).
    u.blocks_owned = mine[id];
    if (net.created_by == store.node_id() && u.blocks > recorded[id]) u.blocks_owned += u.blocks - recorded[id];
    out[net.name] = u;
  }
  return out;
}

std::string_view api_client(std::string_view user_agent) {
  if (user_agent == "swarmnet") return "cni";
  if (user_agent == "swarmnet-ipam") return "cni-ipam";
  if (user_agent == "swarmnet-docker") return "docker";
  if (user_agent == "swarmnetctl") return "ctl";
  return "other";
}

std::string_view rcode_name(unsigned rcode) {
  static constexpr std::string_view names[16] = {
      "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
      "NXRRSET", "NOTAUTH", "NOTZONE",  "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14", "RCODE15"};
  return rcode < 16 ? names[rcode] : "other";
}

DaemonMetrics::DaemonMetrics() {
  registry_.gauge("swarmnet_build_info", "Always 1; the version of this swarmnetd.", {"version"})
      .with({kVersion})
      .set(1);
}

void DaemonMetrics::watch_cluster(const Cluster& cluster) {
  // Each family reads one field of the node's counters; a node that is not
  // in a cluster has no gossip samples at all.
  auto stat = [this, &cluster](const char* name, const char* help, uint64_t gossip::Stats::*field) {
    registry_.collected(name, help, Type::counter, {}, [&cluster, field](std::vector<Sample>& out) {
      if (const gossip::Node* node = cluster.gossip_node()) out.push_back({{}, d(node->stats().*field)});
    });
  };
  auto directional = [this, &cluster](const char* name, const char* help, uint64_t gossip::Stats::*in,
                                      uint64_t gossip::Stats::*out_field) {
    registry_.collected(name, help, Type::counter, {"direction"}, [&cluster, in, out_field](std::vector<Sample>& out) {
      const gossip::Node* node = cluster.gossip_node();
      if (!node) return;
      const gossip::Stats s = node->stats();
      out.push_back({{"in"}, d(s.*in)});
      out.push_back({{"out"}, d(s.*out_field)});
    });
  };
  registry_.collected("swarmnet_gossip_members", "Cluster members by state, this node included.", Type::gauge,
                      {"state"}, [&cluster](std::vector<Sample>& out) {
                        const gossip::Node* node = cluster.gossip_node();
                        if (!node) return;
                        std::map<gossip::MemberStatus, uint64_t> by_state;
                        for (const auto& m : node->members()) ++by_state[m.status];
                        for (auto s : {gossip::MemberStatus::alive, gossip::MemberStatus::suspect,
                                       gossip::MemberStatus::dead, gossip::MemberStatus::left}) {
                          out.push_back({{std::string(gossip::to_string(s))}, d(by_state[s])});
                        }
                      });
  directional("swarmnet_gossip_packets_total", "Gossip datagrams (UDP) received and sent.",
              &gossip::Stats::packets_in, &gossip::Stats::packets_out);
  directional("swarmnet_gossip_streams_total", "Gossip streams (TCP: push/pulls, batches of broadcasts) accepted and opened.",
              &gossip::Stats::streams_in, &gossip::Stats::streams_out);
  directional("swarmnet_gossip_bytes_total", "Gossip bytes received and sent, datagrams and streams.",
              &gossip::Stats::bytes_in, &gossip::Stats::bytes_out);
  directional("swarmnet_gossip_push_pulls_total",
              "Full state exchanges: started by a peer (in), started here (out: periodic, join, reconnect, resync).",
              &gossip::Stats::push_pulls_in, &gossip::Stats::push_pulls_out);
  stat("swarmnet_gossip_auth_failures_total",
       "Gossip datagrams and streams no cluster key opens, or replayed, or stale.", &gossip::Stats::auth_failures);
  stat("swarmnet_gossip_decode_failures_total", "Gossip messages that opened but were malformed.",
       &gossip::Stats::decode_failures);
  stat("swarmnet_gossip_stream_failures_total", "Gossip streams that failed (connect, read, write, timeout).",
       &gossip::Stats::stream_failures);
  stat("swarmnet_gossip_broadcasts_dropped_total",
       "Broadcasts dropped by the queue's bound (each made up for by a full state exchange).",
       &gossip::Stats::broadcasts_dropped);
  registry_.collected("swarmnet_gossip_broadcast_queue_messages", "Broadcasts waiting to reach every peer.",
                      Type::gauge, {}, [&cluster](std::vector<Sample>& out) {
                        if (const gossip::Node* node = cluster.gossip_node())
                          out.push_back({{}, d(node->queued_broadcasts())});
                      });
  registry_.collected("swarmnet_cluster_lease_valid",
                      "1 while this node may hand out addresses (it sees a majority, or did within its lease).",
                      Type::gauge, {}, [&cluster](std::vector<Sample>& out) {
                        if (cluster.active()) out.push_back({{}, cluster.may_allocate() ? 1.0 : 0.0});
                      });
}

void DaemonMetrics::watch_addresses(const Store& store) {
  // One pass over the tables per family: small next to a scrape's interval.
  auto family = [this, &store](const char* name, const char* help, uint64_t AddressUsage::*field) {
    registry_.collected(name, help, Type::gauge, {"network"}, [&store, field](std::vector<Sample>& out) {
      for (const auto& [network, u] : address_usage(store)) out.push_back({{network}, d(u.*field)});
    });
  };
  family("swarmnet_ipam_addresses_used", "Addresses in use in a network, cluster-wide (containers, VIPs, sandboxes).",
         &AddressUsage::used);
  family("swarmnet_ipam_addresses_free", "Assignable addresses of a network's subnet not in use.", &AddressUsage::free);
  family("swarmnet_ipam_blocks", "Address blocks a network's subnet is cut into.", &AddressUsage::blocks);
  family("swarmnet_ipam_blocks_owned", "Address blocks of a network this node owns (hands addresses out of).",
         &AddressUsage::blocks_owned);
}

void DaemonMetrics::watch_dns(const dns::Server& server) {
  registry_.collected("swarmnet_dns_queries_total", "DNS queries received from containers.", Type::counter,
                      {"transport"}, [&server](std::vector<Sample>& out) {
                        const auto s = server.stats();
                        out.push_back({{"udp"}, d(s.udp_queries)});
                        out.push_back({{"tcp"}, d(s.tcp_queries)});
                      });
  registry_.collected("swarmnet_dns_answers_total",
                      "DNS answers sent, by RCODE (forwarded answers included, rate-limit refusals too).",
                      Type::counter, {"rcode"}, [&server](std::vector<Sample>& out) {
                        const auto s = server.stats();
                        for (unsigned r = 0; r < s.answers_by_rcode.size(); ++r) {
                          // The usual ones always, so a rate() has a series from the start.
                          if (s.answers_by_rcode[r] || r <= 5)
                            out.push_back({{std::string(rcode_name(r))}, d(s.answers_by_rcode[r])});
                        }
                      });
  registry_.collected("swarmnet_dns_rate_limited_total",
                      "DNS queries over a container's per-second limit: answered REFUSED, or dropped.",
                      Type::counter, {"action"}, [&server](std::vector<Sample>& out) {
                        const auto s = server.stats();
                        out.push_back({{"refused"}, d(s.over_limit_refused)});
                        out.push_back({{"dropped"}, d(s.over_limit_dropped)});
                      });
  registry_.collected("swarmnet_dns_malformed_total", "DNS queries that were not valid queries.", Type::counter,
                      {}, [&server](std::vector<Sample>& out) { out.push_back({{}, d(server.stats().malformed)}); });
  registry_.collected("swarmnet_dns_truncated_total", "UDP DNS answers sent truncated (TC set).", Type::counter, {},
                      [&server](std::vector<Sample>& out) { out.push_back({{}, d(server.stats().truncated)}); });
}

dns::Forwarder DaemonMetrics::time_upstream(dns::Forwarder forward) {
  auto& queries = registry_.counter("swarmnet_dns_upstream_queries_total",
                                    "Queries for outside names forwarded upstream, by outcome (failed: timeout, "
                                    "refused, too many outstanding; the container got SERVFAIL).",
                                    {"result"});
  auto& answered = queries.with({"answered"});
  auto& failed = queries.with({"failed"});
  auto& latency = registry_
                      .histogram("swarmnet_dns_upstream_duration_seconds",
                                 "Time from forwarding a query upstream to its answer or failure.",
                                 metrics::latency_buckets())
                      .with({});
  // Runs on the DNS server's thread: the counters are atomics.
  return [forward = std::move(forward), &answered, &failed, &latency](std::span<const uint8_t> query, bool over_tcp,
                                                                       dns::ForwardDone done) {
    const auto start = std::chrono::steady_clock::now();
    forward(query, over_tcp, [start, &answered, &failed, &latency, done = std::move(done)](std::span<const uint8_t> answer) {
      latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      (answer.empty() ? failed : answered).inc();
      done(answer);
    });
  };
}

void DaemonMetrics::watch_load_balancing(LoadBalancing& lb, const Store& store) {
  registry_.collected("swarmnet_services", "Services of the cluster, by endpoint mode.", Type::gauge, {"mode"},
                      [&store](std::vector<Sample>& out) {
                        uint64_t vip = 0, dnsrr = 0;
                        for (const auto& [id, s] : store.services())
                          if (!s.deleted) ++(s.value.mode == ServiceMode::vip ? vip : dnsrr);
                        out.push_back({{"vip"}, d(vip)});
                        out.push_back({{"dnsrr"}, d(dnsrr)});
                      });
  registry_.collected("swarmnet_lb_vips", "Service VIPs this host's balancer holds (one per service and network).",
                      Type::gauge, {}, [&lb](std::vector<Sample>& out) { out.push_back({{}, d(lb.programmed().size())}); });
  registry_.collected("swarmnet_lb_vips_without_backends",
                      "Service VIPs with no healthy task anywhere (connections to them are refused).", Type::gauge, {},
                      [&lb](std::vector<Sample>& out) {
                        uint64_t n = 0;
                        for (const auto& [key, v] : lb.programmed()) n += v.backends.empty();
                        out.push_back({{}, d(n)});
                      });
  registry_.collected("swarmnet_lb_backends", "Backends (healthy tasks) over all of this host's service VIPs.",
                      Type::gauge, {}, [&lb](std::vector<Sample>& out) {
                        uint64_t n = 0;
                        for (const auto& [key, v] : lb.programmed()) n += v.backends.size();
                        out.push_back({{}, d(n)});
                      });
  // The last check, and when it ran: shared with the collector.
  struct Check {
    std::chrono::steady_clock::time_point at{};
    bool done = false;
    double differences = 0;
  };
  auto last = std::make_shared<Check>();
  registry_.collected("swarmnet_lb_check_differences",
                      "Differences between the VIPs this host should hold and the kernel's balancer "
                      "(swarmnetctl lb check); checked at most every 30 s.",
                      Type::gauge, {}, [&lb, last](std::vector<Sample>& out) {
                        const auto now = std::chrono::steady_clock::now();
                        if (!last->done || now - last->at >= kLbCheckSpacing) {
                          const std::string diff = lb.check();
                          last->differences = 0;
                          for (char c : diff) last->differences += c == '\n';
                          if (!diff.empty() && diff.back() != '\n') ++last->differences;
                          last->at = now;
                          last->done = true;
                        }
                        out.push_back({{}, last->differences});
                      });
  auto& seconds = registry_.histogram("swarmnet_lb_program_duration_seconds",
                                      "Time the balancer took to apply one VIP's change to the kernel.",
                                      metrics::latency_buckets(), {"operation"});
  auto& errors = registry_.counter("swarmnet_lb_program_errors_total", "Changes of a VIP the balancer failed to apply.",
                                   {"operation"});
  lb.set_program_observer([&seconds, &errors](const char* operation, double took, bool failed) {
    seconds.with({operation}).observe(took);
    if (failed) errors.with({operation}).inc();
  });
}

void DaemonMetrics::watch_routing_mesh(const RoutingMesh& mesh) {
  registry_.collected("swarmnet_mesh_joined", "1 once this node's ingress sandbox has joined the routing mesh.",
                      Type::gauge, {}, [&mesh](std::vector<Sample>& out) { out.push_back({{}, mesh.joined() ? 1.0 : 0.0}); });
  registry_.collected("swarmnet_mesh_services", "Services published through the routing mesh, balanced on this node.",
                      Type::gauge, {}, [&mesh](std::vector<Sample>& out) { out.push_back({{}, d(mesh.balanced().size())}); });
  registry_.collected("swarmnet_mesh_backends", "Tasks the routing mesh balances over from this node, all services.",
                      Type::gauge, {}, [&mesh](std::vector<Sample>& out) { out.push_back({{}, d(mesh.balanced_tasks())}); });
  registry_.collected("swarmnet_mesh_published_ports", "Ports published through the routing mesh, open on this node.",
                      Type::gauge, {"protocol"}, [&mesh](std::vector<Sample>& out) {
                        std::map<std::string, uint64_t> by_protocol{{"tcp", 0}, {"udp", 0}};
                        for (const auto& p : mesh.published_ports()) ++by_protocol[p.protocol];
                        for (const auto& [protocol, n] : by_protocol) out.push_back({{protocol}, d(n)});
                      });
}

void DaemonMetrics::watch_host_ports(const Store& store) {
  registry_.collected("swarmnet_host_published_ports",
                      "Ports published in host mode on this node (services' and runtimes' port mappings).",
                      Type::gauge, {"protocol"}, [&store](std::vector<Sample>& out) {
                        std::map<std::string, uint64_t> by_protocol{{"tcp", 0}, {"udp", 0}};
                        for (const auto& [key, e] : store.endpoints()) {
                          if (e.deleted || e.value.node != store.node_id()) continue;
                          for (const auto& p : e.value.host_ports) ++by_protocol[p.protocol];
                        }
                        for (const auto& [protocol, n] : by_protocol) out.push_back({{protocol}, d(n)});
                      });
}

void DaemonMetrics::watch_api(ApiServer& server) {
  auto& requests = registry_.counter("swarmnet_api_requests_total",
                                     "API requests answered, by calling program, operation and HTTP status.",
                                     {"client", "operation", "status"});
  auto& errors = registry_.counter("swarmnet_api_request_errors_total",
                                   "API requests answered with an error, by the error's code.",
                                   {"client", "operation", "code"});
  auto& seconds = registry_.histogram("swarmnet_api_request_duration_seconds",
                                      "Time from reading an API request to its answer being ready.",
                                      metrics::latency_buckets(), {"client", "operation"});
  server.set_request_observer([&requests, &errors, &seconds](const RequestRecord& r) {
    const std::string client(api_client(r.user_agent));
    const std::string operation(r.operation);
    requests.with({client, operation, std::to_string(r.status)}).inc();
    if (!r.error.empty()) errors.with({client, operation, std::string(r.error)}).inc();
    seconds.with({client, operation}).observe(r.seconds);
  });
}

}  // namespace swarmnet::daemon
