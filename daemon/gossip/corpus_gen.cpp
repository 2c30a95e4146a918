// Writes the seed corpus of fuzz/fuzz_gossip_packet.cpp: one file per
// message kind, plaintext (first byte 0), as a datagram (NAME.sealed, first
// byte 1) and as a stream frame (NAME.frame, first byte 3), both from
// 10.0.0.2:7946 to 10.0.0.1:7946 with key 0x42 x 32, sealed at
// 2026-01-01T00:00:00Z as the fuzzer opens them.
//   gossip_corpus_gen fuzz/corpus/gossip_packet
#include <cstdio>
#include <fstream>
#include <string>

#include "daemon/gossip/codec.hpp"
#include "daemon/gossip/envelope.hpp"
#include "daemon/gossip/keyring.hpp"

using namespace swarmnet;
using namespace swarmnet::gossip;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  Address a{Ipv4Address(0x0A000001), 7946}, b{Ipv4Address(0x0A000002), 7946};
  PushPull pp;
  pp.join = true;
  pp.members = {Member{"a", "host-a", a, 3, MemberStatus::alive},
                Member{"b", "host-b", b, 1, MemberStatus::suspect},
                Member{"c", "host-c", b, 2, MemberStatus::left}};
  pp.user_state = {'s', 't', 'a', 't', 'e'};
  std::vector<std::pair<std::string, Message>> samples = {
      {"ping", Ping{1, "self", "a", a}},
      {"indirect_ping", IndirectPing{2, "b", b, "a", a, true}},
      {"ack", Ack{1}},
      {"nack", Nack{2}},
      {"suspect", Suspect{1, "b", "a"}},
      {"alive", Alive{2, "d", "host-d", b}},
      {"dead", Dead{1, "c", "a"}},
      {"leave", Dead{1, "a", "a"}},
      {"user", UserMsg{42, {'h', 'i'}}},
      {"compound", Compound{{encode(Ping{3, "self", "a", a}), encode(Suspect{1, "self", "b"}),
                             encode(UserMsg{7, {1}})}}},
      {"push_pull", pp},
  };
  Keyring::Key key;
  key.fill(0x42);
  Keyring ring({key});
  const Keyring::WallClock::time_point when{std::chrono::seconds(1767225600)};
  for (const auto& [name, msg] : samples) {
    Bytes plain = encode(msg);
    Bytes out = {0};
    out.insert(out.end(), plain.begin(), plain.end());
    std::ofstream(dir + "/" + name)
        .write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
    Bytes sealed = seal_packet(ring, Envelope{b, a}, plain, when);
    out = {1};
    out.insert(out.end(), sealed.begin(), sealed.end());
    std::ofstream(dir + "/" + name + ".sealed")
        .write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
    Bytes frame = seal_frame(ring, Envelope{b, a}, plain, when);
    out = {3};
    out.insert(out.end(), frame.begin(), frame.end());
    std::ofstream(dir + "/" + name + ".frame")
        .write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  }
  return 0;
}
