// Handing the allocator's free memory back to the system.
//
// glibc keeps what a program frees for its next allocations: only free
// memory at the very top of a heap goes back by itself, so a large
// short-lived structure (the JSON of a listing of 20,000 endpoints, about
// 75 MB) leaves the process's RSS that much higher for good once a single
// longer-lived allocation lands above it. malloc_trim(0) also releases the
// free pages in the middle of every heap (madvise), at the cost of a walk
// over the free chunks, so it is called only after such a structure.
#pragma once

#include <cstddef>

namespace swarmnet {

// Bodies of this size and more are large: the daemon returns the free
// memory after sending one (daemon/api_server.cpp).
inline constexpr size_t kReturnFreeMemoryAfterBytes = size_t{1} << 20;

// Returns the free pages of every heap to the system (malloc_trim(0));
// true if any went back. A no-op (false) where the allocator has no such
// call (sanitizers, other C libraries).
bool return_free_memory();

// The process's resident memory in bytes (/proc/self/statm; 0 if unreadable).
size_t resident_bytes();

}  // namespace swarmnet
