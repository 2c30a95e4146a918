#include "dns/rate_limit.hpp"

#include <algorithm>

namespace swarmnet::dns {

namespace {

// A bucket refills completely in one second; one idle for longer than this
// is full and can be forgotten (a new one starts full too).
constexpr std::chrono::seconds kIdle{2};

double seconds(SourceLimiter::Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

SourceLimiter::SourceLimiter(unsigned rate, size_t max_sources)
    : rate_(rate),
      max_sources_(std::max<size_t>(max_sources, 1)),
      shared_{double(rate), double(refusal_rate(rate)), {}} {}

SourceLimiter::Bucket& SourceLimiter::bucket(uint32_t source, Clock::time_point now) {
  if (auto it = buckets_.find(source); it != buckets_.end()) return it->second;
  if (buckets_.size() >= max_sources_) sweep(now);
  if (buckets_.size() >= max_sources_) return shared_;
  return buckets_.emplace(source, Bucket{double(rate_), double(refusal_rate(rate_)), now}).first->second;
}

void SourceLimiter::sweep(Clock::time_point now) {
  last_sweep_ = now;
  std::erase_if(buckets_, [&](const auto& entry) { return now - entry.second.last > kIdle; });
}

SourceLimiter::Verdict SourceLimiter::admit(uint32_t source, Clock::time_point now) {
  if (rate_ == 0) return Verdict::answer;
  // Idle sources go now and then, so the table follows the active ones.
  if (now - last_sweep_ > 2 * kIdle) sweep(now);
  Bucket& b = bucket(source, now);
  const double elapsed = std::max(0.0, seconds(now - b.last));
  const double refusals = refusal_rate(rate_);
  b.last = std::max(b.last, now);
  b.answers = std::min<double>(rate_, b.answers + elapsed * rate_);
  b.refusals = std::min(refusals, b.refusals + elapsed * refusals);
  if (b.answers >= 1) {
    b.answers -= 1;
    return Verdict::answer;
  }
  if (b.refusals >= 1) {
    b.refusals -= 1;
    return Verdict::refuse;
  }
  return Verdict::drop;
}

}  // namespace swarmnet::dns
