// Puts hand-made frames on a link with an AF_PACKET socket, below the
// sender's IP stack, so neither its firewall nor its XFRM policies touch
// them: what an attacker on the underlay (or a member host's compromised
// kernel) can send. Used by the encrypted-network scenario in the VM.
//
//   frame_send vxlan IFACE DST_MAC SRC_MAC SRC_IP DST_IP VNI
//                    INNER_DST_MAC INNER_SRC_MAC INNER_SRC_IP INNER_DST_IP UDP_PORT PAYLOAD
//       a plain VXLAN frame (UDP to 4789) carrying an inner Ethernet/IPv4/UDP
//       packet to UDP_PORT with PAYLOAD
//   frame_send replay IFACE PCAP [flip]
//       sends the first ESP frame of a pcap file (Ethernet link type) again,
//       with "flip": altered (a sequence number ahead, one byte of its
//       ciphertext changed)
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

bool parse_mac(const char* text, uint8_t out[6]) {
  unsigned v[6];
  if (std::sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(v[i]);
  return true;
}

uint16_t checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

// Ethernet + IPv4 + UDP (checksum 0: allowed over IPv4) around `payload`.
Bytes udp_frame(const uint8_t dst_mac[6], const uint8_t src_mac[6], in_addr src, in_addr dst, uint16_t sport,
                uint16_t dport, const Bytes& payload) {
  Bytes f(dst_mac, dst_mac + 6);
  f.insert(f.end(), src_mac, src_mac + 6);
  put16(f, ETHERTYPE_IP);
  const size_t ip_at = f.size();
  const uint16_t total = static_cast<uint16_t>(20 + 8 + payload.size());
  f.push_back(0x45);
  f.push_back(0);
  put16(f, total);
  put16(f, 0x1234);
  put16(f, 0x4000);  // DF
  f.push_back(64);
  f.push_back(IPPROTO_UDP);
  put16(f, 0);
  const auto* s = reinterpret_cast<const uint8_t*>(&src.s_addr);
  const auto* d = reinterpret_cast<const uint8_t*>(&dst.s_addr);
  f.insert(f.end(), s, s + 4);
  f.insert(f.end(), d, d + 4);
  const uint16_t sum = checksum(f.data() + ip_at, 20);
  f[ip_at + 10] = static_cast<uint8_t>(sum >> 8);
  f[ip_at + 11] = static_cast<uint8_t>(sum);
  put16(f, sport);
  put16(f, dport);
  put16(f, static_cast<uint16_t>(8 + payload.size()));
  put16(f, 0);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

int send_frame(const char* ifname, const Bytes& frame) {
  const int fd = ::socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (fd < 0) {
    std::perror("socket(AF_PACKET)");
    return 1;
  }
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex(ifname));
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, frame.data(), 6);
  if (to.sll_ifindex == 0) {
    std::fprintf(stderr, "no interface %s\n", ifname);
    return 1;
  }
  if (::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    std::perror("sendto");
    return 1;
  }
  ::close(fd);
  return 0;
}

int vxlan(char** a) {
  uint8_t dst_mac[6], src_mac[6], inner_dst_mac[6], inner_src_mac[6];
  in_addr src{}, dst{}, inner_src{}, inner_dst{};
  if (!parse_mac(a[1], dst_mac) || !parse_mac(a[2], src_mac) || inet_pton(AF_INET, a[3], &src) != 1 ||
      inet_pton(AF_INET, a[4], &dst) != 1 || !parse_mac(a[6], inner_dst_mac) || !parse_mac(a[7], inner_src_mac) ||
      inet_pton(AF_INET, a[8], &inner_src) != 1 || inet_pton(AF_INET, a[9], &inner_dst) != 1) {
    std::fprintf(stderr, "frame_send vxlan: bad address\n");
    return 2;
  }
  const unsigned long vni = std::stoul(a[5]);
  const auto port = static_cast<uint16_t>(std::stoul(a[10]));
  const std::string text = a[11];
  const Bytes inner = udp_frame(inner_dst_mac, inner_src_mac, inner_src, inner_dst, 40000, port,
                                Bytes(text.begin(), text.end()));
  Bytes vx = {0x08, 0, 0, 0, static_cast<uint8_t>(vni >> 16), static_cast<uint8_t>(vni >> 8),
              static_cast<uint8_t>(vni), 0};
  vx.insert(vx.end(), inner.begin(), inner.end());
  return send_frame(a[0], udp_frame(dst_mac, src_mac, src, dst, 50000, 4789, vx));
}

int replay(const char* ifname, const char* path, bool flip) {
  std::ifstream in(path, std::ios::binary);
  const Bytes file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t at = 24; at + 16 <= file.size();) {
    uint32_t caplen = 0;
    std::memcpy(&caplen, file.data() + at + 8, 4);  // the file's byte order is ours (written here)
    at += 16;
    if (at + caplen > file.size()) break;
    Bytes frame(file.begin() + static_cast<long>(at), file.begin() + static_cast<long>(at + caplen));
    at += caplen;
    if (frame.size() < 14 + 20 + 8 + 16 || frame[12] != 0x08 || frame[13] != 0x00 || frame[14 + 9] != IPPROTO_ESP) {
      continue;
    }
    if (flip) {
      // The receiver checks the sequence number against its replay window
      // before it authenticates: an altered copy of a packet it has seen
      // would count as a replay. So the copy gets a sequence number ahead of
      // the window (it is authenticated data too) and one byte of its
      // ciphertext changed: it can only fail authentication.
      const size_t esp = 14 + static_cast<size_t>(frame[14] & 0x0f) * 4;
      if (esp + 8 + 20 > frame.size()) continue;
      uint32_t seq = static_cast<uint32_t>(frame[esp + 4]) << 24 | static_cast<uint32_t>(frame[esp + 5]) << 16 |
                     static_cast<uint32_t>(frame[esp + 6]) << 8 | frame[esp + 7];
      seq += 100000;
      for (int i = 0; i < 4; ++i) frame[esp + 4 + i] = static_cast<uint8_t>(seq >> (24 - 8 * i));
      frame[frame.size() - 20] ^= 0x01;
    }
    return send_frame(ifname, frame);
  }
  std::fprintf(stderr, "frame_send replay: no ESP frame in %s\n", path);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "vxlan" && argc == 14) return vxlan(argv + 2);
  if (mode == "replay" && (argc == 4 || argc == 5)) return replay(argv[2], argv[3], argc == 5);
  std::fprintf(stderr,
               "usage: frame_send vxlan IFACE DST_MAC SRC_MAC SRC_IP DST_IP VNI INNER_DST_MAC INNER_SRC_MAC "
               "INNER_SRC_IP INNER_DST_IP UDP_PORT PAYLOAD\n"
               "       frame_send replay IFACE PCAP [flip]\n");
  return 2;
}
