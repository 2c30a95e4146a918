// One error style for swarmnet: functions that can fail throw swarmnet::Error,
// and each program catches it at its edge (the CNI main turns it into the
// spec's error JSON, the API server into an HTTP status, the CLI into a
// message and exit code). Invariants that should never break use assert().
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace swarmnet {

enum class Errc {
  invalid_argument,  // the caller sent something malformed or out of range
  not_found,         // the named network / endpoint does not exist
  conflict,          // the request contradicts current state (name taken, in use)
  exhausted,         // no address (or block, VNI, ...) left
  unavailable,       // the daemon or kernel cannot be reached now; retry later
  internal,          // a bug or an unexpected kernel / I/O failure
};

std::string_view to_string(Errc code);
Errc errc_from_string(std::string_view name);  // unknown names map to internal

class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Errc code() const noexcept { return code_; }

 private:
  Errc code_;
};

// errno-flavoured helper: "what: strerror(errno)".
[[noreturn]] void throw_errno(Errc code, const std::string& what, int err);

}  // namespace swarmnet
