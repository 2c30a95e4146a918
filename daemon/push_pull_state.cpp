#include "daemon/push_pull_state.hpp"

#include <boost/json/serialize.hpp>

#include "common/json_fields.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;

PushPullState::Line PushPullState::make_line(TableId table, std::string_view key, const json::value& line) {
  const std::string serialized = json::serialize(line);
  Line l{table, static_cast<uint32_t>(key.size()), {}};
  l.text.reserve(key.size() + serialized.size());
  l.text += key;
  l.text += serialized;
  return l;
}

void PushPullState::put(TableId table, const std::string& key, const std::optional<json::value>& line) {
  std::optional<Line> fresh;
  if (line) fresh = make_line(table, key, *line);
  std::lock_guard lock(mu_);
  const ByKey::Id id{table, key};
  if (auto it = lines_.find(id); it != lines_.end()) lines_.erase(it);
  if (fresh) lines_.insert(std::move(*fresh));
}

void PushPullState::reset(const std::vector<json::value>& lines) {
  std::set<Line, ByKey> fresh;
  for (const auto& line : lines) {
    const auto& o = line.as_object();
    const auto table = parse_table(json_fields::required_string(o, "table"));
    if (!table) continue;
    Line l = make_line(*table, json_fields::required_string(o, "key"), line);
    // A later line of the same key replaces an earlier one, as the map's
    // assignment did.
    if (auto it = fresh.find(ByKey::id(l)); it != fresh.end()) fresh.erase(it);
    fresh.insert(std::move(l));
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
  for (const Line& l : lines_) size += l.line().size() + 1;
  std::string out;
  out.reserve(size);
  out += "{\"entries\":[";
  bool first = true;
  for (const Line& l : lines_) {
    if (!first) out += ',';
    first = false;
    out += l.line();
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
