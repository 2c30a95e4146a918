// An attacker without the cluster key against a gossip stream port, for
// integration/test_gossip_limits.sh:
//   gossip_flood FROM IP PORT IDLE BIG SECONDS
// from local address FROM, holds IDLE idle TCP connections and BIG connections that announce a
// 16 MiB frame (a big-endian length, as frames were before envelopes, and
// 1 KiB of it) and then stall, for SECONDS. A connection the server closes
// is opened again at most once a second, so the pressure lasts. Prints what
// it did on its last line:
//   opened N closed_by_server M open_at_end K
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Slot {
  int fd = -1;
  bool big = false;
  bool announced = false;
  Clock::time_point opened{};
};

sockaddr_in source, target;
long opened = 0, closed_by_server = 0;

void open_slot(Slot& s) {
  s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd < 0) {
    std::perror("socket");
    std::exit(1);
  }
  s.announced = false;
  s.opened = Clock::now();
  const int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&source), sizeof source) != 0) {
    std::perror("bind");
    std::exit(1);
  }
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0 &&
      errno != EINPROGRESS) {
    ::close(s.fd);
    s.fd = -1;
    return;
  }
  ++opened;
}

void announce(Slot& s) {
  std::vector<unsigned char> frame(4 + 1024, 0xAB);
  const uint32_t len = htonl(16u << 20);
  std::memcpy(frame.data(), &len, 4);
  // Non-blocking: what does not fit now is simply not sent (a stall).
  if (::send(s.fd, frame.data(), frame.size(), MSG_NOSIGNAL) > 0) s.announced = true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s FROM IP PORT IDLE BIG SECONDS\n", argv[0]);
    return 2;
  }
  source.sin_family = target.sin_family = AF_INET;
  if (::inet_pton(AF_INET, argv[1], &source.sin_addr) != 1 ||
      ::inet_pton(AF_INET, argv[2], &target.sin_addr) != 1) {
    std::fprintf(stderr, "bad address %s or %s\n", argv[1], argv[2]);
    return 2;
  }
  target.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[3])));
  const int idle = std::atoi(argv[4]), big = std::atoi(argv[5]);
  const auto duration = std::chrono::seconds(std::atoi(argv[6]));

  // IDLE + BIG descriptors and a few more.
  rlimit l{};
  ::getrlimit(RLIMIT_NOFILE, &l);
  const rlim_t need = static_cast<rlim_t>(idle + big + 64);
  if (l.rlim_cur < need) {
    l.rlim_cur = need;
    if (l.rlim_max < need) l.rlim_max = need;
    if (::setrlimit(RLIMIT_NOFILE, &l) != 0) {
      std::perror("setrlimit");
      return 1;
    }
  }

  std::vector<Slot> slots(static_cast<size_t>(idle + big));
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].big = i >= static_cast<size_t>(idle);
    open_slot(slots[i]);
  }
  const auto end = Clock::now() + duration;
  std::vector<pollfd> fds;
  while (Clock::now() < end) {
    fds.clear();
    for (const auto& s : slots) {
      short events = POLLIN | POLLRDHUP;
      if (s.big && !s.announced) events |= POLLOUT;
      fds.push_back(pollfd{s.fd, events, 0});
    }
    ::poll(fds.data(), fds.size(), 100);
    const auto now = Clock::now();
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.fd < 0) {
        if (now - s.opened >= std::chrono::seconds(1)) open_slot(s);
        continue;
      }
      const short re = fds[i].revents;
      if (re & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
        char buf[256];
        ssize_t n = ::recv(s.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
          ::close(s.fd);
          s.fd = -1;
          ++closed_by_server;
          continue;
        }
      }
      if ((re & POLLOUT) && s.big && !s.announced) announce(s);
    }
  }
  long open_at_end = 0;
  for (auto& s : slots) {
    if (s.fd >= 0) {
      ++open_at_end;
      ::close(s.fd);
    }
  }
  std::printf("opened %ld closed_by_server %ld open_at_end %ld\n", opened, closed_by_server,
              open_at_end);
  return 0;
}
