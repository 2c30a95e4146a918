#include "daemon/endpoint_reaper.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace swarmnet::daemon {

using namespace std::chrono_literals;

// Only "no such file" means gone: a path we may not read, or any other
// error, must never release an address that may be in use.
bool EndpointReaper::path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 || (errno != ENOENT && errno != ENOTDIR);
}

EndpointReaper::EndpointReaper(boost::asio::io_context& io, Store& store, Controller& controller,
                               std::chrono::seconds after, PathExists exists)
    : store_(store), controller_(controller), after_(after), exists_(std::move(exists)), timer_(io) {}

void EndpointReaper::start() {
  if (after_.count() <= 0) {
    spdlog::info("reaper: off (--reap-after-s 0): endpoints whose namespace is gone wait for DEL or GC");
    return;
  }
  schedule();
}

void EndpointReaper::schedule() {
  // A few sweeps per period, so an endpoint goes soon after `after_`.
  timer_.expires_after(std::clamp<Clock::duration>(after_ / 4, 1s, 30s));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    try {
      sweep(Clock::now());
    } catch (const std::exception& e) {
      spdlog::error("reaper: {}", e.what());
    }
    schedule();
  });
}

size_t EndpointReaper::sweep(Clock::time_point now) {
  std::map<std::string, Clock::time_point> missing;
  std::vector<std::pair<std::string, EndpointRecord>> due;
  for (const auto& [key, e] : store_.endpoints()) {
    const EndpointRecord& ep = e.value;
    if (e.deleted || ep.node != store_.node_id() || ep.owner != api::kOwnerCni) continue;
    if (ep.netns.empty() || ep.netns.front() != '/' || exists_(ep.netns)) continue;
    auto seen = missing_since_.find(key);
    const auto since = seen != missing_since_.end() ? seen->second : now;
    missing.emplace(key, since);
    if (now - since >= after_) due.emplace_back(key, ep);
  }
  missing_since_ = std::move(missing);  // a namespace back, or a record gone: forgotten
  for (const auto& [key, ep] : due) {
    controller_.release_endpoint(key);
    missing_since_.erase(key);
    spdlog::warn("reaper: released {} of container {} {} ({}): its namespace {} has been gone for {} s "
                 "and no DEL came",
                 ep.ip.str(), ep.container_id, ep.ifname, ep.cni_config, ep.netns, after_.count());
  }
  return due.size();
}

}  // namespace swarmnet::daemon
