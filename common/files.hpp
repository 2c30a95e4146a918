#pragma once

#include <optional>
#include <string>

namespace swarmnet {

// Writes dir/name so that after a crash it holds either the old or the new
// content, never a mix: temp file (mode 0600), fsync, rename, fsync of dir.
void write_file_atomically(const std::string& dir, const std::string& name, const std::string& data);

// The whole file, or nullopt if it cannot be opened.
std::optional<std::string> read_file(const std::string& path);

}  // namespace swarmnet
