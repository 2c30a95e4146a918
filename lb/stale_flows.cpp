#include "lb/stale_flows.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <iterator>

#include "common/error.hpp"

namespace swarmnet::lb {
namespace {
constexpr std::chrono::milliseconds kGather{50};
}  // namespace

StaleFlows::StaleFlows() : thread_([this] { run(); }) {}

StaleFlows::~StaleFlows() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void StaleFlows::forget(Ipv4Address vip, const std::vector<Ipv4Address>& backends) {
  if (backends.empty()) return;
  {
    std::lock_guard lock(mutex_);
    std::vector<Ipv4Address>& queued = pending_[vip];
    std::vector<Ipv4Address> merged;
    std::set_union(queued.begin(), queued.end(), backends.begin(), backends.end(),
                   std::back_inserter(merged));
    queued = std::move(merged);
  }
  wake_.notify_one();
}

void StaleFlows::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping, nothing left to do
    // Gather what a burst of changes queues: each dump costs ~10 ms of
    // CPU, so under steady churn at most one per kGather.
    wake_.wait_for(lock, kGather, [this] { return stopping_; });
    conntrack::LeftBackends left = std::move(pending_);
    pending_.clear();
    lock.unlock();
    try {
      size_t n = socket_.forget(left);
      if (n) {
        std::string vips;
        for (const auto& [vip, backends] : left) vips += (vips.empty() ? "" : ", ") + vip.str();
        spdlog::info(
            "balancer: {} UDP flow(s) to backends that left VIP {} forgotten; they choose again", n,
            vips);
      }
    } catch (const Error& e) {
      // The VIPs are right in the kernel; such a flow stays on its old
      // backend until it goes idle (30 s).
      spdlog::warn("balancer: forgetting the UDP flows of backends that left a VIP: {}", e.what());
    }
    lock.lock();
  }
}

}  // namespace swarmnet::lb
