// Which conntrack flows the balancer forgets when backends leave a VIP
// (lb/conntrack_netlink.hpp); the kernel side is in
// integration/test_lb_nftables.cpp.
#include <netinet/in.h>

#include <catch2/catch.hpp>

#include "lb/conntrack_netlink.hpp"

using namespace swarmnet;
using swarmnet::lb::conntrack::Flow;
using swarmnet::lb::conntrack::LeftBackends;
using swarmnet::lb::conntrack::sent_to_left_backend;

namespace {

Ipv4Address ip(const char* text) { return Ipv4Address::parse(text); }

Flow udp_flow(const char* vip, const char* backend) {
  Flow f;
  f.protocol = IPPROTO_UDP;
  f.source = ip("10.0.0.50");
  f.source_port = 40000;
  f.destination = ip(vip);
  f.destination_port = 53;
  f.reply_source = ip(backend);
  return f;
}

}  // namespace

TEST_CASE("only the UDP and SCTP flows of a VIP NATed to a backend that left it are forgotten",
          "[lb]") {
  LeftBackends left{{ip("10.0.0.2"), {ip("10.0.0.7"), ip("10.0.0.9")}}};
  CHECK(sent_to_left_backend(udp_flow("10.0.0.2", "10.0.0.7"), left));
  CHECK(sent_to_left_backend(udp_flow("10.0.0.2", "10.0.0.9"), left));
  // A backend that stays keeps its flows.
  CHECK_FALSE(sent_to_left_backend(udp_flow("10.0.0.2", "10.0.0.8"), left));
  // The same backend behind another VIP is still there.
  CHECK_FALSE(sent_to_left_backend(udp_flow("10.0.0.3", "10.0.0.7"), left));
  // Not NATed (the VIP itself answered, e.g. a refusal): nothing to forget.
  CHECK_FALSE(sent_to_left_backend(udp_flow("10.0.0.2", "10.0.0.2"), left));
  Flow sctp = udp_flow("10.0.0.2", "10.0.0.7");
  sctp.protocol = IPPROTO_SCTP;
  CHECK(sent_to_left_backend(sctp, left));
  // TCP connections stay on their task.
  Flow tcp = udp_flow("10.0.0.2", "10.0.0.7");
  tcp.protocol = IPPROTO_TCP;
  CHECK_FALSE(sent_to_left_backend(tcp, left));
  CHECK_FALSE(sent_to_left_backend(udp_flow("10.0.0.2", "10.0.0.7"), LeftBackends{}));
}
