#include "daemon/gossip/types.hpp"

namespace swarmnet::gossip {

std::string_view to_string(MemberStatus s) {
  switch (s) {
    case MemberStatus::alive:
      return "alive";
    case MemberStatus::suspect:
      return "suspect";
    case MemberStatus::dead:
      return "dead";
    case MemberStatus::left:
      return "left";
  }
  return "unknown";
}

std::string to_string(const Address& a) {
  return a.ip.str() + ":" + std::to_string(a.port);
}

}  // namespace swarmnet::gossip
