// A container that floods a DNS server, for integration/test_dns_limit.sh:
//   dns_flood SERVER PORT NAME SECONDS
// sends A queries for NAME from one UDP socket as fast as the socket takes
// them (batches of sendmmsg, never waiting for an answer: open loop, as a
// broken or hostile client does), for SECONDS, then listens one more second
// for late answers. Prints what it saw on its last line:
//   sent N answers A noerror E refused R other O
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// One A query for `name`, recursion desired, id 0 (set per send).
std::vector<uint8_t> make_query(const std::string& name) {
  std::vector<uint8_t> q = {0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    if (dot > start) {
      q.push_back(static_cast<uint8_t>(dot - start));
      q.insert(q.end(), name.begin() + static_cast<long>(start),
               name.begin() + static_cast<long>(dot));
    }
    start = dot + 1;
  }
  q.insert(q.end(), {0, 0, 1, 0, 1});  // root, type A, class IN
  return q;
}

struct Counts {
  long answers = 0, noerror = 0, refused = 0, other = 0;
};

void drain(int fd, Counts& c) {
  constexpr unsigned kBatch = 64;
  static uint8_t buf[kBatch][512];
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  while (true) {
    for (unsigned i = 0; i < kBatch; ++i) {
      iov[i] = {buf[i], sizeof buf[i]};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = ::recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      if (msgs[i].msg_len < 12 || !(buf[i][2] & 0x80)) continue;
      ++c.answers;
      switch (buf[i][3] & 0x0F) {
        case 0:
          ++c.noerror;
          break;
        case 5:
          ++c.refused;
          break;
        default:
          ++c.other;
          break;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: dns_flood SERVER PORT NAME SECONDS\n");
    return 2;
  }
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (::inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
    std::fprintf(stderr, "dns_flood: bad address %s\n", argv[1]);
    return 2;
  }
  const auto seconds = std::chrono::seconds(std::atoi(argv[4]));
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
    std::perror("dns_flood: socket");
    return 1;
  }
  const int big = 8 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);

  constexpr unsigned kBatch = 64;
  const std::vector<uint8_t> query = make_query(argv[3]);
  std::vector<std::vector<uint8_t>> out(kBatch, query);
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  long sent = 0;
  uint16_t id = 0;
  Counts counts;
  const auto end = Clock::now() + seconds;
  while (Clock::now() < end) {
    for (unsigned i = 0; i < kBatch; ++i) {
      ++id;
      out[i][0] = static_cast<uint8_t>(id >> 8);
      out[i][1] = static_cast<uint8_t>(id);
      iov[i] = {out[i].data(), out[i].size()};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // Blocking send: the socket's own buffer paces us at what the path takes.
    int n = ::sendmmsg(fd, msgs, kBatch, 0);
    if (n > 0) sent += n;
    drain(fd, counts);
  }
  const auto late = Clock::now() + std::chrono::seconds(1);
  while (Clock::now() < late) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 100);
    drain(fd, counts);
  }
  ::close(fd);
  std::printf("sent %ld answers %ld noerror %ld refused %ld other %ld\n", sent, counts.answers,
              counts.noerror, counts.refused, counts.other);
  return 0;
}
