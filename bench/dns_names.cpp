// dns_names: the memory and lookup cost of swarmnet's DNS name table at
// scale, in-process (no daemon, no sockets): N endpoints with a name each on
// one network, fed as the daemon feeds them (keys and container ids of the
// daemon's length), then queries for random names answered through the same
// parse/respond/finish path the server takes.
//
// Prints the RSS growth for the N names (per name too), the time to fill,
// and lookups per second on one thread. bench/dns_bench.sh runs it for the
// "memory for 100,000 names" figure, next to dnsmasq's RSS with the same
// names in a hosts file.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dns/message.hpp"
#include "dns/name_table.hpp"
#include "tests/support/dns_packets.hpp"

using namespace swarmnet;
using Clock = std::chrono::steady_clock;

namespace {

// Resident set size in KiB (VmRSS of /proc/self/status).
long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

std::string hex_id(std::mt19937_64& rng) {
  static const char digits[] = "0123456789abcdef";
  std::string id(64, '0');
  for (char& c : id) c = digits[rng() % 16];
  return id;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"swarmnet DNS name table: memory and lookups for N names"};
  size_t count = 100'000;
  size_t lookups = 1'000'000;
  app.add_option("-n,--names", count, "endpoints (one name each)")->capture_default_str();
  app.add_option("--lookups", lookups, "queries answered for the lookup rate")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (count > (1u << 24) - 10) {
    std::fprintf(stderr, "at most %u names (one /8)\n", (1u << 24) - 10);
    return 2;
  }

  std::mt19937_64 rng(42);
  const std::string network_id = hex_id(rng);
  const Ipv4Address gateway(0x0a000001);  // 10.0.0.1, a /8 network
  dns::NameTable table;
  table.upsert_network({network_id, "bench", gateway});
  // The querying container: local, so queries from its address have a scope.
  const Ipv4Address client_ip(0x0a000002);
  dns::EndpointInfo client;
  client.key = network_id + "/" + hex_id(rng) + "/eth0";
  client.network_id = network_id;
  client.container_id = hex_id(rng);
  client.name = "client";
  client.ip = client_ip;
  client.local = true;
  table.upsert_endpoint(client);

  const long rss_before = rss_kib();
  const auto fill_start = Clock::now();
  for (size_t i = 0; i < count; ++i) {
    dns::EndpointInfo e;
    e.container_id = hex_id(rng);
    e.key = network_id + "/" + e.container_id + "/eth0";
    e.network_id = network_id;
    e.name = "c" + std::to_string(i);
    e.ip = Ipv4Address(0x0a000003 + uint32_t(i));
    table.upsert_endpoint(e);
  }
  const double fill_ms = ms_since(fill_start);
  const long rss_after = rss_kib();

  std::vector<std::vector<uint8_t>> queries;
  for (size_t i = 0; i < 4096; ++i) {
    queries.push_back(test::make_query("c" + std::to_string(rng() % count), 1, {.id = uint16_t(i)}));
  }
  size_t answered = 0;
  uint8_t buffer[dns::kEdnsUdpSize];
  const auto lookup_start = Clock::now();
  for (size_t i = 0; i < lookups; ++i) {
    dns::Query query;
    if (dns::parse_query(queries[i % queries.size()], query).status != dns::ParseStatus::ok) return 1;
    dns::ResponseWriter writer(buffer, query, query.max_udp_answer());
    if (table.respond(query, client_ip, gateway, writer) == dns::Outcome::answered && writer.answer_count() == 1) ++answered;
    writer.finish();
  }
  const double lookup_ms = ms_since(lookup_start);
  if (answered != lookups) {
    std::fprintf(stderr, "only %zu of %zu lookups answered\n", answered, lookups);
    return 1;
  }

  const double grown_mib = double(rss_after - rss_before) / 1024.0;
  std::printf("name table: %zu names (%zu in the table), RSS +%.1f MiB (%.0f bytes/name), filled in %.0f ms\n",
              count, table.name_count(), grown_mib, double(rss_after - rss_before) * 1024.0 / double(count),
              fill_ms);
  std::printf("lookups: %.0f/s on one thread (parse, respond, finish; %zu random names)\n",
              double(lookups) / (lookup_ms / 1000.0), lookups);
  return 0;
}
