#include "daemon/push_pull_state.hpp"

#include <boost/json/serialize.hpp>

#include "common/json_fields.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;

void PushPullState::put(TableId table, const std::string& key, const std::optional<json::value>& line) {
  std::optional<std::string> text;
  if (line) text = json::serialize(*line);
  std::lock_guard lock(mu_);
  if (text) {
    lines_[{table, key}] = std::move(*text);
  } else {
    lines_.erase({table, key});
  }
}

void PushPullState::reset(const std::vector<json::value>& lines) {
  std::map<std::pair<TableId, std::string>, std::string> fresh;
  for (const auto& line : lines) {
    const auto& o = line.as_object();
    const auto table = parse_table(json_fields::required_string(o, "table"));
    if (!table) continue;
    fresh[{*table, json_fields::required_string(o, "key")}] = json::serialize(line);
  }
  std::lock_guard lock(mu_);
  lines_ = std::move(fresh);
}

void PushPullState::set_records(const json::object& records) {
  std::string text = json::serialize(records);
  // "{...}" -> "..." so it follows the entries inside one object.
  text = text.size() >= 2 ? text.substr(1, text.size() - 2) : std::string();
  std::lock_guard lock(mu_);
  records_ = std::move(text);
}

std::vector<uint8_t> PushPullState::bytes() const {
  std::lock_guard lock(mu_);
  size_t size = 32 + records_.size();
  for (const auto& [k, line] : lines_) size += line.size() + 1;
  std::string out;
  out.reserve(size);
  out += "{\"entries\":[";
  bool first = true;
  for (const auto& [k, line] : lines_) {
    if (!first) out += ',';
    first = false;
    out += line;
  }
  out += ']';
  if (!records_.empty()) {
    out += ',';
    out += records_;
  }
  out += '}';
  return std::vector<uint8_t>(out.begin(), out.end());
}

size_t PushPullState::entries() const {
  std::lock_guard lock(mu_);
  return lines_.size();
}

}  // namespace swarmnet::daemon
