// Per-source fairness for the DNS server: how many queries a second one
// client address gets answered, and what happens to the rest.
//
// Each source has `rate` queries a second answered, with bursts of up to one
// second's worth. Past that, up to a quarter as many more are answered
// REFUSED: a stub resolver gives up at once (glibc, Go, c-ares try the next
// server, then fail) instead of waiting out its 5 s timeout as it does for a
// query that was dropped. Past both, the source is flooding, and the rest is
// dropped unanswered: an answer costs the server a send, and a flooder's
// answers must leave it time for everyone else's, also on a busy machine
// (with twice the rate answered, a third container lost queries at a load
// of 5 on 2 cores). The firewall drops what goes past ceiling(rate) in the
// kernel already (daemon/firewall.hpp, chain dns-input), so the server never
// reads more than that of one source.
//
// Not thread-safe: the DNS server's thread is its only user.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace swarmnet::dns {

class SourceLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Verdict { answer, refuse, drop };

  // rate 0: no limit, every query is answered. At most `max_sources` are
  // tracked; when that many are active at once, the others share one bucket
  // (only a flood of forged sources gets there: a host has far fewer
  // containers).
  explicit SourceLimiter(unsigned rate, size_t max_sources = 65536);

  // Queries a second answered REFUSED past `rate`, and what is answered at
  // all (0 for 0: no limit).
  static unsigned refusal_rate(unsigned rate) { return rate == 0 ? 0 : std::max(1u, rate / 4); }
  static unsigned ceiling(unsigned rate) { return rate + refusal_rate(rate); }

  Verdict admit(uint32_t source, Clock::time_point now);

  unsigned rate() const { return rate_; }
  size_t tracked() const { return buckets_.size(); }

 private:
  struct Bucket {
    double answers;  // tokens, at most rate_
    // tokens, at most refusal_rate(rate_)
    double refusals;
    Clock::time_point last;
  };
  Bucket& bucket(uint32_t source, Clock::time_point now);
  // Forgets sources whose buckets have been full again for a while.
  void sweep(Clock::time_point now);

  unsigned rate_;
  size_t max_sources_;
  std::unordered_map<uint32_t, Bucket> buckets_;
  Bucket shared_;  // for sources past max_sources_
  Clock::time_point last_sweep_{};
};

}  // namespace swarmnet::dns
