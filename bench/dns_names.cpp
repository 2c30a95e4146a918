// dns_names: the memory and lookup cost of swarmnet's DNS name table at
// scale, in-process (no daemon, no sockets): N endpoints with a name each on
// one network, fed as the daemon feeds them (keys and container ids of the
// daemon's length), then queries for random names answered through the same
// parse/respond/finish path the server takes.
//
// Prints the RSS growth for the N names (per name too), the heap the table
// holds for them (every operator new of the process is counted, so the
// figure is the table's own, without the allocator's page rounding), the
// time to fill, and lookups per second on one thread. bench/dns_bench.sh
// runs it for the "memory for 100,000 names" goal with dnsmasq's RSS growth
// for the same names in a hosts file (--dnsmasq-bytes-per-name), and this
// prints both with the ratio (goal: at most 3).
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "common/free_memory.hpp"
#include "dns/message.hpp"
#include "dns/name_table.hpp"
#include "tests/support/dns_packets.hpp"

using namespace swarmnet;
using Clock = std::chrono::steady_clock;

// Live heap bytes: every allocation's usable size, added on new and taken
// off on delete.
static std::atomic<long long> g_heap_bytes{0};

void* operator new(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (!p) throw std::bad_alloc();
  g_heap_bytes += static_cast<long long>(malloc_usable_size(p));
  return p;
}
void* operator new[](size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept {
  if (!p) return;
  g_heap_bytes -= static_cast<long long>(malloc_usable_size(p));
  std::free(p);
}
void operator delete[](void* p) noexcept { ::operator delete(p); }
void operator delete(void* p, size_t) noexcept { ::operator delete(p); }
void operator delete[](void* p, size_t) noexcept { ::operator delete(p); }

namespace {

// Resident set size in KiB.
long rss_kib() { return static_cast<long>(swarmnet::resident_bytes() / 1024); }

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
  double dnsmasq_bytes = 0;
  app.add_option("--dnsmasq-bytes-per-name", dnsmasq_bytes,
                 "dnsmasq's RSS growth per name for as many names (bench/dns_bench.sh measures it): "
                 "printed next to ours with the ratio");
  CLI11_PARSE(app, argc, argv);
  if (count > (1u << 24) - 10) {
    std::fprintf(stderr, "at most %u names (one /8)\n", (1u << 24) - 10);
    return 2;
  }

  std::mt19937_64 rng(42);
  const std::string network_id = hex_id(rng);
  // The daemon's endpoint key: network, node (32 hex digits), container,
  // interface, joined by 0x1f (daemon/records.cpp, endpoint_key).
  const std::string node_id = hex_id(rng).substr(0, 32);
  auto endpoint_key = [&](const std::string& container) {
    return network_id + "\x1f" + node_id + "\x1f" + container + "\x1f" + "eth0";
  };
  const Ipv4Address gateway(0x0a000001);  // 10.0.0.1, a /8 network
  dns::NameTable table;
  table.upsert_network({network_id, "bench", gateway});
  // The querying container: local, so queries from its address have a scope.
  const Ipv4Address client_ip(0x0a000002);
  dns::EndpointInfo client;
  client.network_id = network_id;
  client.container_id = hex_id(rng);
  client.key = endpoint_key(client.container_id);
  client.name = "client";
  client.ip = client_ip;
  client.local = true;
  table.upsert_endpoint(client);

  const long rss_before = rss_kib();
  const long long heap_before = g_heap_bytes;
  const auto fill_start = Clock::now();
  for (size_t i = 0; i < count; ++i) {
    dns::EndpointInfo e;
    e.container_id = hex_id(rng);
    e.key = endpoint_key(e.container_id);
    e.network_id = network_id;
    e.name = "c" + std::to_string(i);
    e.ip = Ipv4Address(0x0a000003 + uint32_t(i));
    table.upsert_endpoint(e);
  }
  const double fill_ms = ms_since(fill_start);
  const long rss_after = rss_kib();
  const long long heap_after = g_heap_bytes;

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
  const double per_name = double(rss_after - rss_before) * 1024.0 / double(count);
  std::printf("name table: %zu names (%zu in the table), RSS +%.1f MiB (%.0f bytes/name), heap +%.1f MiB "
              "(%.0f bytes/name), filled in %.0f ms\n",
              count, table.name_count(), grown_mib, per_name, double(heap_after - heap_before) / 1048576.0,
              double(heap_after - heap_before) / double(count), fill_ms);
  std::printf("lookups: %.0f/s on one thread (parse, respond, finish; %zu random names)\n",
              double(lookups) / (lookup_ms / 1000.0), lookups);
  if (dnsmasq_bytes > 0) {
    const double ratio = per_name / dnsmasq_bytes;
    std::printf("memory per name for %zu names: swarmnet %.0f bytes, dnsmasq %.0f bytes; ratio %.2f (goal <= 3: %s)\n",
                count, per_name, dnsmasq_bytes, ratio, ratio <= 3 ? "met" : "NOT met");
  }
  return 0;
}
