// What changes in the cluster, as `swarmnetctl events` shows it (GET
// /v1/events, docs/api.md). Modelled on `docker events`: a time, a type, an
// action, the id of what changed and flat string attributes. The daemon
// makes them (daemon/events.hpp); this part is shared with the client,
// which prints them.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace swarmnet {

struct Event {
  int64_t time_nano = 0;  // wall clock, nanoseconds since the epoch
  std::string type;       // node, network, endpoint, service, cluster (or events: about the stream)
  std::string action;     // join, die, create, remove, health_status, key_rotate, ...
  std::string id;
  std::map<std::string, std::string> attributes;
  bool operator==(const Event&) const = default;
};

// The types a filter may name.
inline constexpr std::string_view kEventTypes[] = {"node", "network", "endpoint", "service", "cluster"};

// {"time": seconds, "time_nano": nanoseconds, "type", "action", "id", "attributes": {...}}
boost::json::value to_json(const Event& e);
// Error(invalid_argument) naming the field when it is not such an object.
Event event_from_json(const boost::json::value& v);
// One line as `docker events` prints it, without the newline:
// "2026-12-03T07:30:00.123456789Z network create 3f2a... (name=front, subnet=10.0.0.0/24)"
std::string format_text(const Event& e);
// RFC 3339 in UTC with nanoseconds.
std::string format_time(int64_t time_nano);

// `--filter KEY=VALUE`, as docker events: values of one key are alternatives
// (type=network or type=node), different keys must all match. Keys: type,
// action (or event, Docker's name), id (an id or a prefix of one), and the
// attributes name, node, network, service, container.
class EventFilter {
 public:
  // Adds "KEY=VALUE"; Error(invalid_argument) saying what is wrong with it.
  void add(std::string_view spec);
  bool matches(const Event& e) const;
  bool empty() const { return wanted_.empty(); }
  // As a URL query: "filter=type%3Dnetwork&filter=..." ("" when empty).
  std::string query() const;
  // Reads the query of GET /v1/events (after the '?'); Error(invalid_argument)
  // for a parameter other than filter or a bad filter.
  static EventFilter from_query(std::string_view query);

 private:
  std::map<std::string, std::vector<std::string>> wanted_;
};

}  // namespace swarmnet
