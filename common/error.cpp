#include "common/error.hpp"

#include <cstring>

namespace swarmnet {

std::string_view to_string(Errc code) {
  switch (code) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::conflict: return "conflict";
    case Errc::exhausted: return "exhausted";
    case Errc::unavailable: return "unavailable";
    case Errc::internal: return "internal";
  }
  return "internal";
}

Errc errc_from_string(std::string_view name) {
  for (Errc c : {Errc::invalid_argument, Errc::not_found, Errc::conflict, Errc::exhausted,
                 Errc::unavailable, Errc::internal}) {
    if (to_string(c) == name) return c;
  }
  return Errc::internal;
}

void throw_errno(Errc code, const std::string& what, int err) {
  throw Error(code, what + ": " + std::strerror(err));
}

}  // namespace swarmnet
