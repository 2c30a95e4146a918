// Runs a rollback when the scope is left early, unless dismissed: ADD's undo
// of the daemon allocation and the host link does not depend on an error
// variable that a later edit could shadow.
#pragma once

#include <utility>

namespace swarmnet::cni {

template <typename F>
class ScopeGuard {
 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  ~ScopeGuard() {
    if (active_) f_();
  }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  void dismiss() { active_ = false; }

 private:
  F f_;
  bool active_ = true;
};

}  // namespace swarmnet::cni
