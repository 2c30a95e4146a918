#include "metrics/registry.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace swarmnet::metrics {

namespace {

bool valid_name(const std::string& name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string escape_help(const std::string& h) {
  std::string out;
  for (char c : h) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::counter: return "counter";
    case Type::gauge: return "gauge";
    case Type::histogram: return "histogram";
  }
  return "untyped";
}

// name{a="x",b="y"} value
void sample_line(std::string& out, const std::string& name, const std::vector<std::string>& labels,
                 const std::vector<std::string>& values, const char* extra_label, const std::string& extra_value,
                 double value) {
  out += name;
  if (!labels.empty() || extra_label) {
    out += '{';
    bool first = true;
    for (size_t i = 0; i < labels.size() && i < values.size(); ++i) {
      if (!first) out += ',';
      first = false;
      out += labels[i] + "=\"" + escape_label_value(values[i]) + '"';
    }
    if (extra_label) {
      if (!first) out += ',';
      out += std::string(extra_label) + "=\"" + escape_label_value(extra_value) + '"';
    }
    out += '}';
  }
  out += ' ';
  out += format_value(value);
  out += '\n';
}

}  // namespace

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers (counters) as integers; the rest in the shortest form
  // that reads back exactly, fixed-point where that stays short, so bucket
  // bounds read as written (le="0.0001", not "1e-04": le is matched as text).
  char buf[400];
  const double magnitude = std::fabs(v);
  std::to_chars_result r;
  if (magnitude < 9007199254740992.0 && v == std::trunc(v)) {
    r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
  } else if (magnitude >= 1e-4 && magnitude < 1e15) {
    r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  } else {
    r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  }
  return std::string(buf, r.ptr);
}

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1]))
      throw std::invalid_argument("histogram bounds must be finite and strictly increasing");
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

const std::vector<double>& latency_buckets() {
  static const std::vector<double> b = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 5, 10};
  return b;
}

template <class M>
M& Family<M>::with(const std::vector<std::string>& values) {
  if (values.size() != label_count_) throw std::invalid_argument("wrong number of label values");
  std::lock_guard lock(mu_);
  auto& child = children_[values];
  if (!child) child = make_();
  return *child;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  std::string name, help;
  Type type;
  std::vector<std::string> labels;
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Gauge>> gauges;
  std::unique_ptr<Family<Histogram>> histograms;
  Collect collect;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Entry& Registry::add(const std::string& name, const std::string& help, Type type,
                               std::vector<std::string> labels) {
  if (!valid_name(name, true)) throw std::invalid_argument("invalid metric name: " + name);
  if ((type == Type::counter) != ends_with(name, "_total"))
    throw std::invalid_argument("counters, and only they, end in _total: " + name);
  for (const auto& l : labels) {
    if (!valid_name(l, false) || l.rfind("__", 0) == 0 || (type == Type::histogram && l == "le"))
      throw std::invalid_argument("invalid label name: " + l);
  }
  std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    if (e->name == name) throw std::invalid_argument("metric registered twice: " + name);
  }
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->type = type;
  e->labels = std::move(labels);
  entries_.push_back(std::move(e));
  return *entries_.back();
}

Family<Counter>& Registry::counter(const std::string& name, const std::string& help,
                                   std::vector<std::string> labels) {
  Entry& e = add(name, help, Type::counter, std::move(labels));
  e.counters = std::make_unique<Family<Counter>>(e.labels.size(), [] { return std::make_unique<Counter>(); });
  return *e.counters;
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  Entry& e = add(name, help, Type::gauge, std::move(labels));
  e.gauges = std::make_unique<Family<Gauge>>(e.labels.size(), [] { return std::make_unique<Gauge>(); });
  return *e.gauges;
}

Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help,
                                       std::vector<double> bounds, std::vector<std::string> labels) {
  Histogram check(bounds);  // bad bounds throw here, not at the first observation
  Entry& e = add(name, help, Type::histogram, std::move(labels));
  e.histograms = std::make_unique<Family<Histogram>>(
      e.labels.size(), [bounds = std::move(bounds)] { return std::make_unique<Histogram>(bounds); });
  return *e.histograms;
}

void Registry::collected(const std::string& name, const std::string& help, Type type,
                         std::vector<std::string> labels, Collect collect) {
  if (type == Type::histogram) throw std::invalid_argument("collected histograms are not supported: " + name);
  Entry& e = add(name, help, type, std::move(labels));
  e.collect = std::move(collect);
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& e : entries_) {
    out += "# HELP " + e->name + " " + escape_help(e->help) + "\n";
    out += "# TYPE " + e->name + " " + type_name(e->type) + "\n";
    if (e->collect) {
      std::vector<Sample> samples;
      try {
        e->collect(samples);
      } catch (const std::exception&) {
        samples.clear();
      }
      for (const auto& s : samples) sample_line(out, e->name, e->labels, s.label_values, nullptr, {}, s.value);
    } else if (e->counters) {
      e->counters->each([&](const std::vector<std::string>& values, const Counter& c) {
        sample_line(out, e->name, e->labels, values, nullptr, {}, static_cast<double>(c.value()));
      });
    } else if (e->gauges) {
      e->gauges->each([&](const std::vector<std::string>& values, const Gauge& g) {
        sample_line(out, e->name, e->labels, values, nullptr, {}, g.value());
      });
    } else if (e->histograms) {
      e->histograms->each([&](const std::vector<std::string>& values, const Histogram& h) {
        const Histogram::Snapshot s = h.snapshot();
        const auto& bounds = h.bounds();
        for (size_t i = 0; i < bounds.size(); ++i) {
          sample_line(out, e->name + "_bucket", e->labels, values, "le", format_value(bounds[i]),
                      static_cast<double>(s.cumulative[i]));
        }
        const double count = static_cast<double>(s.cumulative.back());
        sample_line(out, e->name + "_bucket", e->labels, values, "le", "+Inf", count);
        sample_line(out, e->name + "_sum", e->labels, values, nullptr, {}, s.sum);
        sample_line(out, e->name + "_count", e->labels, values, nullptr, {}, count);
      });
    }
  }
  return out;
}

}  // namespace swarmnet::metrics
