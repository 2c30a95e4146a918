// Network namespaces: open one by path, and run code inside one on the
// calling thread. A netlink socket opened inside a namespace stays bound to
// it after we leave, which is how NetlinkSocket::open_in() avoids keeping a
// thread in a foreign namespace.
#pragma once

#include <string>

namespace swarmnet::kernel {

class Netns {
 public:
  // Opens a namespace file (/var/run/netns/NAME, /proc/PID/ns/net).
  // Throws Error(not_found) if the path does not exist,
  // Error(invalid_argument) if it is not a network namespace.
  static Netns open(const std::string& path);
  // The namespace of the calling thread.
  static Netns current();
  // A new, empty network namespace (only a loopback, down), alive as long as
  // this object (or an interface's peer, a socket, a process) holds it.
  // `description` names it in messages. Made on a short-lived thread, so the
  // caller's namespace never changes.
  static Netns create(const std::string& description);

  Netns(Netns&& other) noexcept;
  Netns& operator=(Netns&& other) noexcept;
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  ~Netns();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  Netns(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

// Enters a namespace for the lifetime of the guard, on this thread only, and
// goes back to the original namespace when destroyed (even on exceptions).
class NetnsGuard {
 public:
  explicit NetnsGuard(const Netns& target);
  ~NetnsGuard();
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;

 private:
  Netns original_;
};

}  // namespace swarmnet::kernel
