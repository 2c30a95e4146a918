#include "daemon/push_pull_state.hpp"

#include <boost/json/serialize.hpp>

#include "daemon/store.hpp"

namespace swarmnet::daemon {

void PushPullState::set_records(const boost::json::object& records) {
  std::string text = boost::json::serialize(records);
  // "{...}" -> "..." so it follows the entries inside one object.
  text = text.size() >= 2 ? text.substr(1, text.size() - 2) : std::string();
  std::lock_guard lock(mu_);
  records_ = std::move(text);
}

std::vector<uint8_t> PushPullState::bytes() const {
  std::vector<uint8_t> out;
  // The size of the last one and a little more: growing a buffer of many
  // megabytes by doubling copies it again and again.
  out.reserve(last_size_.load() + last_size_.load() / 8 + 4096);
  auto append = [&out](std::string_view s) { out.insert(out.end(), s.begin(), s.end()); };
  append("{\"entries\":[");
  store_.append_replicated_lines(append);
  append("]");
  {
    std::lock_guard lock(mu_);
    if (!records_.empty()) {
      append(",");
      append(records_);
    }
  }
  append("}");
  last_size_ = out.size();
  return out;
}

}  // namespace swarmnet::daemon
