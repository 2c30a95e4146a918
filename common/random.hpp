#pragma once

#include <cstddef>
#include <string>

namespace swarmnet {

// `bytes` random bytes from the kernel (getrandom), as lowercase hex.
std::string random_hex(size_t bytes);

}  // namespace swarmnet
