// swarmnetd's configuration file: `key = value` lines, one setting a line,
// each key a long option of the command line without its dashes
// (`state-dir = /var/lib/swarmnet`, `no-dns = true`, `dns-upstream = ...`
// once per value for the options that take several). Blank lines and lines
// starting with '#' are ignored. An option given on the command line wins
// over the file. The reader knows no option by name: it looks each key up in
// the program's CLI11 option table, so a new flag is settable in the file as
// soon as it exists.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace swarmnet::config_file {

struct Setting {
  std::string key;
  std::string value;
  int line = 0;  // 1-based, for the error messages
};

// Splits the text into settings. Throws Error(invalid_argument) naming
// "FILE:LINE" for a line that is not `key = value`.
std::vector<Setting> parse(std::string_view text, const std::string& file);

// Gives each setting to the app's option of that name, unless the command
// line gave that option already; validates and converts as the command line
// would. Call after app.parse(). Throws Error(invalid_argument) naming
// "FILE:LINE" for an unknown key, a value the option refuses, or a key
// repeated for an option that takes one value.
void apply(CLI::App& app, const std::vector<Setting>& settings, const std::string& file);

// Reads FILE (an error if it cannot be read), then parse() and apply().
void load(CLI::App& app, const std::string& file);

}  // namespace swarmnet::config_file
