// Accept loops that survive running out of descriptors, and log lines that
// cannot flood the log.
//
// When the process has no descriptor left (EMFILE), the system none
// (ENFILE) or the kernel no memory for a socket (ENOBUFS, ENOMEM), accept
// fails at once and the connection stays in the backlog, so a loop that just
// tries again spins: a review saw 597,000 log lines and a whole CPU in 7 s.
// AcceptBackoff makes the loop wait instead, 10 ms at first, doubling up to
// 250 ms while the failures go on (so it takes connections again soon after
// descriptors are freed), and logs one line per 10 s at most.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <string>

namespace swarmnet {

// At most one line per period; the ones in between are counted.
class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogThrottle(Clock::duration period) : period_(period) {}
  // true: log now, and mention skipped() (lines not logged since the last).
  bool due(Clock::time_point now = Clock::now()) {
    if (logged_once_ && now - last_ < period_) {
      ++pending_;
      return false;
    }
    skipped_ = pending_;
    pending_ = 0;
    last_ = now;
    logged_once_ = true;
    return true;
  }
  uint64_t skipped() const { return skipped_; }

 private:
  Clock::duration period_;
  Clock::time_point last_{};
  bool logged_once_ = false;
  uint64_t pending_ = 0, skipped_ = 0;
};

class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirstDelay{10};
  static constexpr std::chrono::milliseconds kMaxDelay{250};

  // what: the log lines' prefix ("api accept").
  explicit AcceptBackoff(std::string what) : what_(std::move(what)) {}

  // After a failed accept: logs (throttled) and waits before the next one.
  // Any error waits, not only a shortage: a failure that repeats at once
  // must never turn into a busy loop.
  boost::asio::awaitable<void> failed(const boost::system::error_code& ec) {
    ++failures_;
    if (log_.due()) {
      if (log_.skipped() > 0) {
        spdlog::warn("{}: {}; retrying in {} ms ({} more failure(s) since the last line)", what_,
                     ec.message(), delay_.count(), log_.skipped());
      } else {
        spdlog::warn("{}: {}; retrying in {} ms", what_, ec.message(), delay_.count());
      }
    }
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    timer.expires_after(delay_);
    co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    delay_ = std::min(delay_ * 2, kMaxDelay);
  }
  void succeeded() { delay_ = kFirstDelay; }
  uint64_t failures() const { return failures_; }

 private:
  std::string what_;
  std::chrono::milliseconds delay_ = kFirstDelay;
  LogThrottle log_{std::chrono::seconds(10)};
  uint64_t failures_ = 0;
};

}  // namespace swarmnet
