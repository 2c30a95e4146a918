// Fuzzes the reader of the state directory's files (daemon/state_records):
// what a full disk, a power cut or a bad sector leaves in the journal or the
// snapshot. It must never throw or crash, never hand out a line it did not
// check, and say exactly where appends may continue. Input: the file's bytes,
// read once as a journal and once as a snapshot.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/state_records.hpp"

using namespace swarmnet::daemon;

namespace {

void check(const state_records::FileContents& c, std::string_view text) {
  // Appends continue after a newline (or at 0), never past the end.
  if (c.intact_size > text.size()) std::abort();
  if (c.intact_size > 0 && text[c.intact_size - 1] != '\n') std::abort();
  if (c.torn_tail && text.find('\n', c.intact_size) != std::string_view::npos) std::abort();
  size_t last = 0;
  for (const auto& r : c.records) {
    if (r.line <= last) std::abort();  // in file order, each line once
    last = r.line;
    // What a record says survives writing and reading it back.
    const std::string line = state_records::encode(r.value);
    auto again = state_records::read(line, "");
    if (again.records.size() != 1 || again.records[0].value != r.value) std::abort();
  }
  for (const auto& d : c.dropped) {
    if (d.line == 0 || d.reason.empty()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check(state_records::read(text, state_records::kJournalHeader), text);
  check(state_records::read(text, state_records::kSnapshotHeader), text);
  return 0;
}
