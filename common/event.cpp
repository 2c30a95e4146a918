#include "common/event.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "common/api_client.hpp"
#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet {

namespace json = boost::json;

namespace {

constexpr int64_t kNanosPerSecond = 1'000'000'000;

// Docker calls the action "event" in its filters; both work here.
std::string canonical_key(std::string_view key) { return key == "event" ? "action" : std::string(key); }

bool known_key(const std::string& key) {
  static const char* keys[] = {"type", "action", "id", "name", "node", "network", "service", "container"};
  return std::any_of(std::begin(keys), std::end(keys), [&](const char* k) { return key == k; });
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || hex_digit(s[i + 1]) < 0 || hex_digit(s[i + 2]) < 0) {
        throw Error(Errc::invalid_argument, "malformed percent-encoding in the query");
      }
      out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

}  // namespace

json::value to_json(const Event& e) {
  json::object attributes;
  for (const auto& [k, v] : e.attributes) attributes[k] = v;
  return json::object{{"time", e.time_nano / kNanosPerSecond},
                      {"time_nano", e.time_nano},
                      {"type", e.type},
                      {"action", e.action},
                      {"id", e.id},
                      {"attributes", std::move(attributes)}};
}

Event event_from_json(const json::value& v) {
  const auto& o = json_fields::as_object(v, "event");
  Event e;
  const json::value* t = json_fields::find(o, "time_nano");
  if (!t || !t->is_int64()) throw Error(Errc::invalid_argument, "event: field \"time_nano\": expected an integer");
  e.time_nano = t->as_int64();
  e.type = json_fields::required_string(o, "type");
  e.action = json_fields::required_string(o, "action");
  e.id = json_fields::string_or(o, "id", "");
  if (const json::value* a = json_fields::find(o, "attributes")) {
    for (const auto& [k, val] : json_fields::as_object(*a, "event attributes")) {
      if (!val.is_string()) {
        throw Error(Errc::invalid_argument, "event: attribute \"" + std::string(k) + "\": expected a string");
      }
      e.attributes[std::string(k)] = std::string(val.as_string());
    }
  }
  return e;
}

std::string format_time(int64_t time_nano) {
  int64_t seconds = time_nano / kNanosPerSecond;
  int64_t nanos = time_nano % kNanosPerSecond;
  if (nanos < 0) {
    nanos += kNanosPerSecond;
    --seconds;
  }
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(nanos));
  return buf;
}

std::string format_text(const Event& e) {
  std::string line = format_time(e.time_nano) + " " + e.type + " " + e.action + " " + e.id;
  if (!e.attributes.empty()) {
    line += " (";
    bool first = true;
    for (const auto& [k, v] : e.attributes) {
      line += (first ? "" : ", ") + k + "=" + v;
      first = false;
    }
    line += ")";
  }
  return line;
}

void EventFilter::add(std::string_view spec) {
  const auto eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size()) {
    throw Error(Errc::invalid_argument, "filter \"" + std::string(spec) + "\": expected KEY=VALUE");
  }
  const std::string key = canonical_key(spec.substr(0, eq));
  const std::string value(spec.substr(eq + 1));
  if (!known_key(key)) {
    throw Error(Errc::invalid_argument, "filter \"" + std::string(spec) +
                                            "\": unknown key (type, action, event, id, name, node, network, "
                                            "service or container)");
  }
  if (key == "type" && std::find(std::begin(kEventTypes), std::end(kEventTypes), value) == std::end(kEventTypes)) {
    throw Error(Errc::invalid_argument,
                "filter \"" + std::string(spec) + "\": unknown type (node, network, endpoint, service or cluster)");
  }
  wanted_[key].push_back(value);
}

bool EventFilter::matches(const Event& e) const {
  for (const auto& entry : wanted_) {
    const std::string& key = entry.first;  // a structured binding: clang 14 cannot capture it
    const std::vector<std::string>& values = entry.second;
    auto one = [&](const std::string& v) {
      if (key == "type") return e.type == v;
      if (key == "action") return e.action == v;
      if (key == "id") return e.id.starts_with(v);
      auto it = e.attributes.find(key);
      return it != e.attributes.end() && it->second == v;
    };
    if (std::none_of(values.begin(), values.end(), one)) return false;
  }
  return true;
}

std::string EventFilter::query() const {
  std::string q;
  for (const auto& [key, values] : wanted_) {
    for (const auto& v : values) q += (q.empty() ? "" : "&") + std::string("filter=") + url_segment(key + "=" + v);
  }
  return q;
}

EventFilter EventFilter::from_query(std::string_view query) {
  EventFilter f;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    const auto eq = param.find('=');
    const std::string name = percent_decode(param.substr(0, eq));
    if (name != "filter" || eq == std::string_view::npos) {
      throw Error(Errc::invalid_argument, "unknown query parameter \"" + name + "\" (only filter=KEY%3DVALUE)");
    }
    f.add(percent_decode(param.substr(eq + 1)));
  }
  return f;
}

}  // namespace swarmnet
