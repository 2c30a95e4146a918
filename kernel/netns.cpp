#include "kernel/netns.hpp"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "common/error.hpp"

namespace swarmnet::kernel {

Netns Netns::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      throw Error(Errc::not_found, "network namespace " + path + " does not exist");
    }
    throw_errno(Errc::internal, "open network namespace " + path, err);
  }
  Netns ns(fd, path);
  // NS_GET_NSTYPE answers ENOTTY for anything that is not an nsfs file, so a
  // stray regular file or another kind of namespace is caught here rather
  // than later as a confusing setns() failure.
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) {
    int err = errno;
    if (err == ENOTTY || err == EINVAL) {
      throw Error(Errc::invalid_argument, path + " is not a network namespace");
    }
    throw_errno(Errc::internal, "inspect namespace " + path, err);
  }
  if (type != CLONE_NEWNET) {
    throw Error(Errc::invalid_argument, path + " is a namespace, but not a network namespace");
  }
  return ns;
}

Netns Netns::current() {
  // thread-self, not self: setns() moves only the calling thread, so the
  // process's main thread may be elsewhere.
  static const std::string path = "/proc/thread-self/ns/net";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno(Errc::internal, "open " + path, errno);
  return Netns(fd, path);
}

Netns Netns::create(const std::string& description) {
  int fd = -1, err = 0;
  // unshare() moves only the calling thread: a thread of its own does it
  // and ends, leaving the namespace held by the descriptor it opened.
  std::thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) err = errno;
  }).join();
  if (fd < 0) throw_errno(Errc::unavailable, "create network namespace for " + description, err);
  return Netns(fd, description);
}

Netns::Netns(Netns&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

Netns& Netns::operator=(Netns&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

Netns::~Netns() {
  if (fd_ >= 0) ::close(fd_);
}

NetnsGuard::NetnsGuard(const Netns& target) : original_(Netns::current()) {
  if (::setns(target.fd(), CLONE_NEWNET) != 0) {
    int err = errno;
    if (err == EINVAL) {
      throw Error(Errc::invalid_argument, target.path() + " is not a network namespace");
    }
    throw_errno(Errc::internal, "enter network namespace " + target.path(), err);
  }
}

NetnsGuard::~NetnsGuard() {
  if (::setns(original_.fd(), CLONE_NEWNET) != 0) {
    // A thread stranded in a container's namespace would silently do the
    // host's work in the wrong place; stopping is the only safe answer.
    std::fprintf(stderr, "swarmnet: cannot return to network namespace %s: %s\n",
                 original_.path().c_str(), std::strerror(errno));
    std::abort();
  }
}

}  // namespace swarmnet::kernel
