// The framing of the state directory's files (snapshot and journal), apart
// from what the records mean (daemon/store.hpp), so that the reader of bytes
// that a full disk, a power cut or a bad sector may have damaged stays small
// and can be fuzzed (fuzz/fuzz_state_records.cpp).
//
// Format 2, both files: a header line, then one record per line:
//   #swarmnet-journal 2            (or #swarmnet-snapshot 2)
//   1f2e3d4c {"table":"networks",...}
// The 8 hex digits are the CRC32C of the JSON text after the space. A
// record whose checksum fails is never used. Format 1 (swarmnet before the
// checksums: state.json and a journal of bare JSON lines, no header) is still
// read: its lines start with '{' and are accepted only in a file without a
// format 2 header.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace swarmnet::daemon::state_records {

namespace json = boost::json;

inline constexpr std::string_view kJournalHeader = "#swarmnet-journal 2";
inline constexpr std::string_view kSnapshotHeader = "#swarmnet-snapshot 2";

uint32_t crc32c(std::string_view data);

// One record as a line: "crc32c json\n".
std::string encode(const json::value& record);

struct Record {
  size_t line = 0;  // 1-based, for the log
  json::value value;
};

struct Dropped {
  size_t line = 0;
  std::string reason;
};

struct FileContents {
  bool has_header = false;     // the expected format 2 header is line 1
  std::vector<Record> records;  // in file order
  std::vector<Dropped> dropped;  // damaged lines, never in records
  // A last line without its newline: an append cut short (power loss, full
  // disk), never acknowledged. Not in records or dropped.
  std::optional<Dropped> torn_tail;
  // Bytes up to the end of the last complete line: where appends continue.
  size_t intact_size = 0;
};

// Splits a file's text into records. Never throws for any input.
FileContents read(std::string_view text, std::string_view header);

}  // namespace swarmnet::daemon::state_records
