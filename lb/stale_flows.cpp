#include "lb/stale_flows.hpp"

#include <spdlog/spdlog.h>

#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <string>

#include "common/error.hpp"

namespace swarmnet::lb {
namespace {

constexpr std::chrono::milliseconds kGather{200};

// Adds `more` to `queued` (both sorted).
void merge(std::vector<Ipv4Address>& queued, const std::vector<Ipv4Address>& more) {
  std::vector<Ipv4Address> merged;
  std::set_union(queued.begin(), queued.end(), more.begin(), more.end(),
                 std::back_inserter(merged));
  queued = std::move(merged);
}

// "VIP 10.0.0.2, published port udp/5353", for the log.
std::string describe(const conntrack::Left& left) {
  std::string out;
  auto add = [&out](const std::string& what) { out += (out.empty() ? "" : ", ") + what; };
  for (const auto& [vip, backends] : left.vips) add("VIP " + vip.str());
  for (const auto& [port, tasks] : left.published) {
    std::string protocol = port.protocol == IPPROTO_UDP    ? "udp"
                           : port.protocol == IPPROTO_SCTP ? "sctp"
                                                           : std::to_string(port.protocol);
    add("published port " + protocol + "/" + std::to_string(port.port));
  }
  return out;
}

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
    merge(pending_.vips[vip], backends);
  }
  wake_.notify_one();
}

void StaleFlows::forget(conntrack::PublishedPort port, const std::vector<Ipv4Address>& tasks) {
  if (tasks.empty()) return;
  {
    std::lock_guard lock(mutex_);
    merge(pending_.published[port], tasks);
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
    conntrack::Left left = std::move(pending_);
    pending_ = {};
    lock.unlock();
    try {
      size_t n = socket_.forget(left);
      if (n) {
        spdlog::info("conntrack: {} UDP flow(s) to tasks that left {} forgotten; they choose again",
                     n, describe(left));
      }
    } catch (const Error& e) {
      // The VIPs and the DNATs are right in the kernel; such a flow stays
      // on its old task until it goes idle (30 s).
      spdlog::warn("conntrack: forgetting the UDP flows of tasks that left {}: {}", describe(left),
                   e.what());
    }
    lock.lock();
  }
}

}  // namespace swarmnet::lb
