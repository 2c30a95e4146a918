// Prometheus metrics: a registry of metric families (counters, gauges,
// histograms with fixed buckets, each with a fixed list of label names) and
// its rendering in the text exposition format 0.0.4, what GET /metrics
// answers.
//
// Cheap on the paths that count (a DNS answer, an API request): a child
// (one label set) is found once under its family's mutex and kept by the
// caller; updating it is an atomic add. Values that already live elsewhere
// (gossip counters, table sizes) are not copied on every change: a collected
// family reads them through a callback when the registry is rendered, on the
// thread that renders it.
//
// Names and label names are checked when a family is made (a bad one is a
// programming error: std::invalid_argument); label values are escaped when
// rendered, so any text is a safe value.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace swarmnet::metrics {

enum class Type { counter, gauge, histogram };

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, strictly increasing, finite; the
  // +Inf bucket is implicit.
  explicit Histogram(const std::vector<double>& bounds);
  void observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (= count)
    double sum = 0;
  };
  // Each bucket is read once, so `count` always equals the +Inf bucket even
  // while other threads observe (the sum may lag by their observations).
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // not cumulative; last is +Inf
  std::atomic<double> sum_{0};
};

// Bucket bounds for durations in seconds, 100 µs to 10 s.
const std::vector<double>& latency_buckets();

// The children of one family, by label values (in the order of the
// family's label names). Children are never removed: references stay valid
// as long as the registry.
template <class M>
class Family {
 public:
  Family(size_t label_count, std::function<std::unique_ptr<M>()> make)
      : label_count_(label_count), make_(std::move(make)) {}
  // std::invalid_argument if the number of values is not the number of labels.
  M& with(const std::vector<std::string>& values);
  // Calls f(values, child) for each child, under the family's lock.
  template <class F>
  void each(F&& f) const {
    std::lock_guard lock(mu_);
    for (const auto& [values, child] : children_) f(values, *child);
  }

 private:
  size_t label_count_;
  std::function<std::unique_ptr<M>()> make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

// A family whose samples are read at render time.
struct Sample {
  std::vector<std::string> label_values;
  double value = 0;
};
using Collect = std::function<void(std::vector<Sample>& out)>;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each name once (std::invalid_argument otherwise). Counters' names end
  // in _total, as Prometheus expects.
  Family<Counter>& counter(const std::string& name, const std::string& help,
                           std::vector<std::string> labels = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help,
                       std::vector<std::string> labels = {});
  Family<Histogram>& histogram(const std::string& name, const std::string& help,
                               std::vector<double> bounds, std::vector<std::string> labels = {});
  // `type`: counter or gauge. `collect` runs on the rendering thread; an
  // exception from it costs that family's samples, not the scrape.
  void collected(const std::string& name, const std::string& help, Type type,
                 std::vector<std::string> labels, Collect collect);

  // The text exposition format, families in the order they were made.
  std::string render() const;

 private:
  struct Entry;
  Entry& add(const std::string& name, const std::string& help, Type type, std::vector<std::string> labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// The pieces of the format, exposed for tests.
std::string escape_label_value(const std::string& v);  // \ " and newline
std::string format_value(double v);                    // shortest exact; +Inf, -Inf, NaN

}  // namespace swarmnet::metrics
