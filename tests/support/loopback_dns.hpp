// DNS exchanges with a server on 127.0.0.1, for tests: one query over UDP
// or over TCP (2-byte length framing), with a time limit.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace swarmnet::test {

using Bytes = std::vector<uint8_t>;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

inline sockaddr_in loopback_addr(uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

// The answer, or nullopt when none came within `timeout`.
inline std::optional<Bytes> udp_exchange(uint16_t port, const Bytes& query,
                                         std::chrono::milliseconds timeout) {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in to = loopback_addr(port);
  if (::sendto(fd.get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
    return std::nullopt;
  pollfd p{fd.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
  Bytes answer(65535);
  const ssize_t n = ::recv(fd.get(), answer.data(), answer.size(), 0);
  if (n < 0) return std::nullopt;
  answer.resize(static_cast<size_t>(n));
  return answer;
}

inline std::optional<Bytes> tcp_exchange(uint16_t port, const Bytes& query,
                                         std::chrono::milliseconds timeout) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in to = loopback_addr(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return std::nullopt;
  Bytes framed = {static_cast<uint8_t>(query.size() >> 8), static_cast<uint8_t>(query.size())};
  framed.insert(framed.end(), query.begin(), query.end());
  if (::send(fd.get(), framed.data(), framed.size(), 0) != static_cast<ssize_t>(framed.size())) return std::nullopt;
  uint8_t len[2];
  if (::recv(fd.get(), len, 2, MSG_WAITALL) != 2) return std::nullopt;
  Bytes answer(static_cast<size_t>(len[0] << 8 | len[1]));
  if (::recv(fd.get(), answer.data(), answer.size(), MSG_WAITALL) != static_cast<ssize_t>(answer.size()))
    return std::nullopt;
  return answer;
}

}  // namespace swarmnet::test
