// Which conntrack flows the balancer forgets when backends leave a VIP,
// and the routing mesh's host when a published port's DNAT no longer sends
// to a task straight (lb/conntrack_netlink.hpp); the kernel side is in
// integration/test_lb_nftables.cpp and test_mesh_shortcut.sh.
#include <netinet/in.h>

#include <catch2/catch.hpp>

#include "lb/conntrack_netlink.hpp"

using namespace swarmnet;
using swarmnet::lb::conntrack::Flow;
using swarmnet::lb::conntrack::LeftBackends;
using swarmnet::lb::conntrack::LeftDirectTargets;
using swarmnet::lb::conntrack::PublishedPort;
using swarmnet::lb::conntrack::sent_to_left_backend;
using swarmnet::lb::conntrack::sent_to_left_direct_target;

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

TEST_CASE("only the UDP flows of a VIP NATed to a backend that left it are forgotten",
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
  // TCP connections stay on their task.
  Flow tcp = udp_flow("10.0.0.2", "10.0.0.7");
  tcp.protocol = IPPROTO_TCP;
  CHECK_FALSE(sent_to_left_backend(tcp, left));
  CHECK_FALSE(sent_to_left_backend(udp_flow("10.0.0.2", "10.0.0.7"), LeftBackends{}));
}

TEST_CASE(
    "only the UDP flows of a published port NATed to a task it left are forgotten, at any address",
    "[lb]") {
  // The host's DNAT of udp/5353 no longer sends to 10.0.0.7 straight.
  LeftDirectTargets left{{PublishedPort{IPPROTO_UDP, 5353}, {ip("10.0.0.7")}}};
  auto to_host = [](const char* address, uint16_t port, const char* task) {
    Flow f = udp_flow(address, task);
    f.destination_port = port;
    return f;
  };
  CHECK(sent_to_left_direct_target(to_host("192.168.0.1", 5353, "10.0.0.7"), left));
  // Published on every address of the host: localhost too.
  CHECK(sent_to_left_direct_target(to_host("127.0.0.1", 5353, "10.0.0.7"), left));
  // A task the DNAT still sends to keeps its flows, and so do those sent
  // to the VIP (NATed to it, balanced in the ingress sandbox).
  CHECK_FALSE(sent_to_left_direct_target(to_host("192.168.0.1", 5353, "10.0.0.8"), left));
  CHECK_FALSE(sent_to_left_direct_target(to_host("192.168.0.1", 5353, "10.255.0.5"), left));
  // Another port, or the task's own address (not NATed by the host).
  CHECK_FALSE(sent_to_left_direct_target(to_host("192.168.0.1", 5354, "10.0.0.7"), left));
  CHECK_FALSE(sent_to_left_direct_target(to_host("10.0.0.7", 5353, "10.0.0.7"), left));
  // Another protocol on that port number: its own rule.
  Flow tcp = to_host("192.168.0.1", 5353, "10.0.0.7");
  tcp.protocol = IPPROTO_TCP;
  CHECK_FALSE(sent_to_left_direct_target(tcp, left));
  CHECK_FALSE(
      sent_to_left_direct_target(to_host("192.168.0.1", 5353, "10.0.0.7"), LeftDirectTargets{}));
  // The VIPs' rule does not take it for one of theirs.
  CHECK_FALSE(sent_to_left_backend(to_host("192.168.0.1", 5353, "10.0.0.7"),
                                   LeftBackends{{ip("10.0.0.2"), {ip("10.0.0.7")}}}));
}
