// The metrics registry's text exposition format (metrics/registry.hpp).
#include <catch2/catch.hpp>

#include <thread>

#include "metrics/registry.hpp"

using namespace swarmnet::metrics;

namespace {
bool contains(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}
}  // namespace

TEST_CASE("counters and gauges render with HELP, TYPE and their label sets") {
  Registry r;
  auto& requests = r.counter("swarmnet_test_requests_total", "Requests served.", {"op", "code"});
  requests.with({"add", "201"}).inc();
  requests.with({"add", "201"}).inc(2);
  requests.with({"del", "204"}).inc();
  r.gauge("swarmnet_test_depth", "Queue depth.").with({}).set(2.5);
  const std::string text = r.render();
  CHECK(contains(text, "# HELP swarmnet_test_requests_total Requests served.\n"
                       "# TYPE swarmnet_test_requests_total counter\n"
                       "swarmnet_test_requests_total{op=\"add\",code=\"201\"} 3\n"
                       "swarmnet_test_requests_total{op=\"del\",code=\"204\"} 1\n"));
  CHECK(contains(text, "# TYPE swarmnet_test_depth gauge\nswarmnet_test_depth 2.5\n"));
  // Families in the order they were made.
  CHECK(text.find("swarmnet_test_requests_total") < text.find("swarmnet_test_depth"));
}

TEST_CASE("label values are escaped: backslash, double quote, newline") {
  Registry r;
  r.counter("swarmnet_test_total", "Help with a \\ and a\nnewline.", {"name"})
      .with({"a\\b\"c\nd"})
      .inc();
  const std::string text = r.render();
  CHECK(contains(text, "swarmnet_test_total{name=\"a\\\\b\\\"c\\nd\"} 1\n"));
  CHECK(contains(text, "# HELP swarmnet_test_total Help with a \\\\ and a\\nnewline.\n"));
  // Nothing else of the value is touched (UTF-8 passes as it is).
  CHECK(escape_label_value("réseau {x}=1,") == "réseau {x}=1,");
}

TEST_CASE("a histogram renders cumulative _bucket lines up to le=\"+Inf\", _sum and _count") {
  Registry r;
  auto& h = r.histogram("swarmnet_test_seconds", "Latency.", {0.001, 0.01, 0.1}, {"op"});
  Histogram& add = h.with({"add"});
  add.observe(0.0005);  // first bucket
  add.observe(0.001);   // a bound is inclusive (le)
  add.observe(0.05);
  add.observe(3);  // past every bound: +Inf only
  const std::string text = r.render();
  CHECK(contains(text, "# TYPE swarmnet_test_seconds histogram\n"
                       "swarmnet_test_seconds_bucket{op=\"add\",le=\"0.001\"} 2\n"
                       "swarmnet_test_seconds_bucket{op=\"add\",le=\"0.01\"} 2\n"
                       "swarmnet_test_seconds_bucket{op=\"add\",le=\"0.1\"} 3\n"
                       "swarmnet_test_seconds_bucket{op=\"add\",le=\"+Inf\"} 4\n"
                       "swarmnet_test_seconds_sum{op=\"add\"} 3.0515\n"
                       "swarmnet_test_seconds_count{op=\"add\"} 4\n"));
}

TEST_CASE("a histogram without labels has le as its only label") {
  Registry r;
  r.histogram("swarmnet_test_seconds", "Latency.", latency_buckets()).with({}).observe(0.0002);
  const std::string text = r.render();
  CHECK(contains(text, "swarmnet_test_seconds_bucket{le=\"0.0001\"} 0\n"
                       "swarmnet_test_seconds_bucket{le=\"0.00025\"} 1\n"));
  CHECK(contains(text, "swarmnet_test_seconds_bucket{le=\"+Inf\"} 1\n"));
  CHECK(contains(text, "swarmnet_test_seconds_count 1\n"));
}

TEST_CASE("collected families are read at render time; a failing one costs only its samples") {
  Registry r;
  double members = 3;
  r.collected("swarmnet_test_members", "Members.", Type::gauge, {"state"}, [&](std::vector<Sample>& out) {
    out.push_back({{"alive"}, members});
    out.push_back({{"dead"}, 0});
  });
  r.collected("swarmnet_test_broken", "Broken.", Type::gauge, {},
              [](std::vector<Sample>&) { throw std::runtime_error("no"); });
  r.counter("swarmnet_test_after_total", "After.").with({}).inc();
  members = 5;
  const std::string text = r.render();
  CHECK(contains(text, "swarmnet_test_members{state=\"alive\"} 5\nswarmnet_test_members{state=\"dead\"} 0\n"));
  CHECK(contains(text, "# TYPE swarmnet_test_broken gauge\n# HELP swarmnet_test_after_total"));
  CHECK(contains(text, "swarmnet_test_after_total 1\n"));
}

TEST_CASE("values: integers as integers, fractions exactly, infinities and NaN by name") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(1234567) == "1234567");
  CHECK(format_value(0.0001) == "0.0001");
  CHECK(format_value(2.5) == "2.5");
  CHECK(format_value(-3) == "-3");
  CHECK(format_value(1e-9) == "1e-09");
  CHECK(format_value(1.0 / 0.0) == "+Inf");
  CHECK(format_value(-1.0 / 0.0) == "-Inf");
  CHECK(format_value(0.0 / 0.0) == "NaN");
  CHECK(std::stod(format_value(0.1 + 0.2)) == 0.1 + 0.2);
}

TEST_CASE("bad names, label names and bounds are refused when the family is made") {
  Registry r;
  CHECK_THROWS_AS(r.counter("swarmnet-bad_total", "x"), std::invalid_argument);
  CHECK_THROWS_AS(r.counter("swarmnet_no_suffix", "x"), std::invalid_argument);
  CHECK_THROWS_AS(r.gauge("swarmnet_gauge_total", "x"), std::invalid_argument);
  CHECK_THROWS_AS(r.gauge("swarmnet_g", "x", {"__reserved"}), std::invalid_argument);
  CHECK_THROWS_AS(r.histogram("swarmnet_h", "x", {0.1}, {"le"}), std::invalid_argument);
  CHECK_THROWS_AS(r.histogram("swarmnet_h", "x", {0.2, 0.1}), std::invalid_argument);
  r.gauge("swarmnet_g", "x", {"a"});
  CHECK_THROWS_AS(r.gauge("swarmnet_g", "x"), std::invalid_argument);
  auto& f = r.counter("swarmnet_c_total", "x", {"a", "b"});
  CHECK_THROWS_AS(f.with({"only one"}), std::invalid_argument);
}

TEST_CASE("concurrent updates are all counted, and _count equals the +Inf bucket") {
  Registry r;
  auto& c = r.counter("swarmnet_test_total", "x").with({});
  auto& h = r.histogram("swarmnet_test_seconds", "x", {0.5}).with({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(i % 2 ? 0.1 : 1.0);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(c.value() == 40000);
  const auto s = h.snapshot();
  CHECK(s.cumulative == std::vector<uint64_t>{20000, 40000});
  CHECK(s.sum == Approx(4 * (5000 * 0.1 + 5000 * 1.0)));
}
