#include "daemon/change_feed.hpp"

#include <array>
#include <vector>

#include "common/log.hpp"

namespace swarmnet::daemon {

namespace {
constexpr std::array<std::string_view, 5> kTableNames{"networks", "blocks", "endpoints", "services", "cursors"};
}  // namespace

std::string_view table_name(TableId t) { return kTableNames.at(static_cast<size_t>(t)); }

std::optional<TableId> parse_table(std::string_view name) {
  for (size_t i = 0; i < kTableNames.size(); ++i) {
    if (kTableNames[i] == name) return static_cast<TableId>(i);
  }
  return std::nullopt;
}

ChangeFeed::Subscription& ChangeFeed::Subscription::operator=(Subscription&& o) noexcept {
  if (this != &o) {
    reset();
    feed_ = o.feed_;
    id_ = o.id_;
    o.feed_ = nullptr;
  }
  return *this;
}

void ChangeFeed::Subscription::reset() {
  if (!feed_) return;
  std::erase_if(feed_->handlers_, [this](const auto& h) { return h.first.second == id_; });
  feed_ = nullptr;
}

ChangeFeed::Subscription ChangeFeed::subscribe(Stage stage, Handler handler) {
  const uint64_t id = next_id_++;
  handlers_.emplace(std::make_pair(stage, id), std::move(handler));
  return Subscription(this, id);
}

ChangeFeed::Hold::~Hold() {
  if (--feed_.holds_ == 0) feed_.drain();
}

void ChangeFeed::publish(Change change) {
  queue_.push_back(std::move(change));
  drain();
}

void ChangeFeed::drain() {
  if (delivering_ || holds_ > 0) return;
  delivering_ = true;
  while (!queue_.empty()) {
    const Change change = std::move(queue_.front());
    queue_.pop_front();
    // A handler may subscribe or end a subscription: walk a snapshot of the
    // keys, and skip those gone meanwhile.
    std::vector<std::pair<Stage, uint64_t>> order;
    order.reserve(handlers_.size());
    for (const auto& [k, h] : handlers_) order.push_back(k);
    for (const auto& k : order) {
      auto it = handlers_.find(k);
      if (it == handlers_.end()) continue;
      // A copy: the handler may end its own subscription.
      const Handler handler = it->second;
      try {
        handler(change);
      } catch (const std::exception& e) {
        if (change.kind == Change::Kind::entry) {
          spdlog::error("applying a change of {} {}: {}", table_name(change.table), change.key, e.what());
        } else {
          spdlog::error("applying a membership change: {}", e.what());
        }
      }
    }
  }
  delivering_ = false;
}

}  // namespace swarmnet::daemon
