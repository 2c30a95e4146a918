#include "common/free_memory.hpp"

#include <unistd.h>

#include <fstream>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace swarmnet {

bool return_free_memory() {
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
  return malloc_trim(0) != 0;
#else
  return false;
#endif
}

size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace swarmnet
