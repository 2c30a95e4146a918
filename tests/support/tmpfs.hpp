// A small tmpfs mounted on a temporary directory, to fill a disk for real.
// Needs root (CI runs the unit tests as root); unmounted and removed when the
// test ends, pass or fail.
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

#include "temp_dir.hpp"

namespace swarmnet::testing {

class Tmpfs {
 public:
  static bool can_mount() { return ::geteuid() == 0; }

  explicit Tmpfs(size_t bytes) {
    const std::string options = "size=" + std::to_string(bytes) + ",mode=0700";
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      throw std::runtime_error("mount tmpfs on " + dir_.path() + ": " + std::strerror(errno));
    }
  }
  ~Tmpfs() {
    // Lazy: a descriptor still open on it does not keep the mount around.
    ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  const std::string& path() const { return dir_.path(); }
  std::string operator/(const std::string& name) const { return dir_ / name; }

  // Fills what is left with the file `name`; returns the bytes it took.
  size_t fill(const std::string& name) const {
    std::FILE* f = std::fopen((dir_ / name).c_str(), "w");
    if (!f) throw std::runtime_error("cannot create " + name);
    std::setvbuf(f, nullptr, _IONBF, 0);
    const std::string chunk(4096, 'x');
    size_t total = 0;
    for (;;) {
      size_t n = std::fwrite(chunk.data(), 1, chunk.size(), f);
      total += n;
      if (n < chunk.size()) break;
    }
    // Whatever is left is smaller than a page: byte by byte.
    while (std::fwrite("x", 1, 1, f) == 1) ++total;
    std::fclose(f);
    return total;
  }

 private:
  TempDir dir_;  // unmounted (destructor above) before it is removed
};

}  // namespace swarmnet::testing
