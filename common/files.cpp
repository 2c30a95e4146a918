#include "common/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace swarmnet {

namespace {

void write_all(int fd, std::string_view data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::internal, "writing " + path, errno);
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace

// The rename is durable only once the directory is: a failure here is the
// caller's to know (the new file may not survive a crash).
static void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno(Errc::internal, "opening " + dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw_errno(Errc::internal, "fsync " + dir, err);
}

void write_file_atomically(const std::string& dir, const std::string& name,
                           const std::string& data) {
  write_file_atomically(dir, name, [&](const AppendPiece& append) { append(data); });
}

void write_file_atomically(const std::string& dir, const std::string& name,
                           const std::function<void(const AppendPiece&)>& produce) {
  const std::string path = dir + "/" + name;
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno(Errc::internal, "creating " + tmp, errno);
  try {
    produce([&](std::string_view piece) { write_all(fd, piece, tmp); });
    if (::fsync(fd) != 0) throw_errno(Errc::internal, "fsync " + tmp, errno);
  } catch (...) {
    // A full disk: the old file stays as it was, and no half-written
    // temporary is left to take the space.
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_errno(Errc::internal, "renaming " + tmp, err);
  }
  fsync_dir(dir);
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}


}  // namespace swarmnet
