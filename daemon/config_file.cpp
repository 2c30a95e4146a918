#include "daemon/config_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>

#include "common/error.hpp"

namespace swarmnet::config_file {
namespace {

// Far more than every option set, with comments.
constexpr size_t kMaxBytes = 1024 * 1024;

// Options that make no sense in the file: they act at once, or name it.
bool not_settable(const std::string& key) { return key == "help" || key == "version" || key == "config"; }

std::string_view trim(std::string_view s) {
  const char* space = " \t\r";
  const auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

[[noreturn]] void fail(const std::string& file, int line, const std::string& what) {
  throw Error(Errc::invalid_argument, file + ":" + std::to_string(line) + ": " + what);
}

bool valid_key(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-')) {
      return false;
    }
  }
  return key.front() != '-';
}

// The names an operator may use: every long option of the app but those
// not settable, for the message of an unknown key.
std::string known_keys(CLI::App& app) {
  std::string out;
  for (const CLI::Option* o : app.get_options()) {
    for (const std::string& name : o->get_lnames()) {
      if (not_settable(name)) continue;
      out += (out.empty() ? "" : ", ") + name;
    }
  }
  return out;
}

}  // namespace

std::vector<Setting> parse(std::string_view text, const std::string& file) {
  std::vector<Setting> out;
  int number = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    const std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    if (raw.find('\0') != std::string_view::npos) fail(file, number, "a NUL byte: this is not a text file");
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      fail(file, number, "expected `key = value` (a long option without its dashes), got \"" +
                             std::string(line.substr(0, 80)) + "\"");
    }
    std::string_view key = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    if (!valid_key(key)) {
      fail(file, number, "\"" + std::string(key.substr(0, 80)) +
                             "\" is not a setting name (lower-case letters, digits and dashes, as the long "
                             "options without their leading dashes)");
    }
    // Quotes are allowed around a value (one with a leading '#', or spaces
    // at its ends) and taken off.
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    } else if (value.empty()) {
      fail(file, number, "\"" + std::string(key) + "\" has no value (to keep the default, leave the line out)");
    }
    out.push_back(Setting{std::string(key), std::string(value), number});
  }
  return out;
}

void apply(CLI::App& app, const std::vector<Setting>& settings, const std::string& file) {
  // Every value of one key together: an option taking several values gets
  // them in the file's order, one taking a single value refuses a repeat.
  std::map<std::string, std::vector<const Setting*>> by_key;
  std::vector<std::string> order;
  for (const Setting& s : settings) {
    if (not_settable(s.key)) fail(file, s.line, "\"" + s.key + "\" cannot be set in a configuration file");
    CLI::Option* option = app.get_option_no_throw("--" + s.key);
    if (option == nullptr) {
      fail(file, s.line, "unknown setting \"" + s.key + "\"; the settings are: " + known_keys(app));
    }
    auto& list = by_key[s.key];
    if (!list.empty() && option->get_items_expected_max() <= 1) {
      fail(file, s.line, "\"" + s.key + "\" is already set on line " + std::to_string(list.front()->line) +
                             " and takes one value");
    }
    if (list.empty()) order.push_back(s.key);
    list.push_back(&s);
  }
  for (const std::string& key : order) {
    CLI::Option* option = app.get_option("--" + key);
    if (option->count() > 0) continue;  // the command line wins
    const auto& list = by_key[key];
    const int line = list.front()->line;
    try {
      for (const Setting* s : list) {
        if (option->get_expected_min() == 0) {
          // A flag: `true`/`false` (or 1/0, yes/no, on/off) as CLI11 reads
          // them; a negated flag (--no-dns) inverts, as on the command line.
          option->add_result(option->get_flag_value(key, s->value));
        } else {
          option->add_result(s->value);
        }
      }
      option->run_callback();
    } catch (const CLI::Error& e) {
      fail(file, line, key + " = " + list.front()->value + ": " + e.what());
    }
  }
}

void load(CLI::App& app, const std::string& file) {
  const auto refuse = [&file](const std::string& why) {
    throw Error(Errc::invalid_argument, "cannot read the configuration file " + file + ": " + why);
  };
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) refuse(std::strerror(errno));
  std::string text;
  struct stat st {};
  // Not a directory (which reads as empty on some systems, so the daemon
  // would start with no setting applied), not a device like /dev/zero.
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  int err = 0;
  if (regular) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) err = errno;
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > kMaxBytes) break;
    }
  }
  ::close(fd);
  if (!regular) refuse("not a regular file");
  if (err) refuse(std::strerror(err));
  if (text.size() > kMaxBytes) refuse("larger than " + std::to_string(kMaxBytes / 1024) + " KiB");
  apply(app, parse(text, file), file);
}

}  // namespace swarmnet::config_file
