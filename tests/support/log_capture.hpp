// Collects what the code under test logs (through spdlog's default logger)
// while it is alive, so a test can assert on the log an operator would read.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace swarmnet::testing {

class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
    sink_->set_pattern("%l %v");
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> lines() const { return sink_->last_formatted(); }
  // The lines that contain every one of the given parts.
  std::vector<std::string> matching(const std::vector<std::string>& parts) const {
    std::vector<std::string> out;
    for (const auto& l : lines()) {
      if (std::all_of(parts.begin(), parts.end(), [&](const auto& p) { return l.find(p) != std::string::npos; })) {
        out.push_back(l);
      }
    }
    return out;
  }
  std::string all() const {
    std::string s;
    for (const auto& l : lines()) s += l + "\n";
    return s;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

}  // namespace swarmnet::testing
