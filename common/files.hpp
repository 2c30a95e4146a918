#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace swarmnet {

// Writes dir/name so that after a crash it holds either the old or the new
// content, never a mix: temp file (mode 0600), fsync, rename, fsync of dir.
void write_file_atomically(const std::string& dir, const std::string& name, const std::string& data);

// Appends one piece to the file being written.
using AppendPiece = std::function<void(std::string_view)>;
// The same for content made piece by piece (the store's snapshot), so that
// it is never held whole in memory: `produce` appends the pieces in order.
// A throw from it leaves the old file as it was.
void write_file_atomically(const std::string& dir, const std::string& name,
                           const std::function<void(const AppendPiece&)>& produce);

// The whole file, or nullopt if it cannot be opened.
std::optional<std::string> read_file(const std::string& path);

}  // namespace swarmnet
