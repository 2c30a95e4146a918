#include "plugin/cni/protocol.hpp"

#include <array>
#include <boost/json.hpp>
#include <cstdlib>

namespace swarmnet::cni {

namespace json = boost::json;

namespace {
constexpr std::array kVersions{SpecVersion::v0_3_0, SpecVersion::v0_3_1, SpecVersion::v0_4_0,
                               SpecVersion::v1_0_0, SpecVersion::v1_1_0};

bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string required_env(const EnvLookup& env, const char* name) {
  auto v = env(name);
  if (!v || v->empty()) {
    throw CniError(code::kInvalidEnvironment, std::string(name) + " is not set");
  }
  return *v;
}
}  // namespace

std::string_view to_string(SpecVersion v) {
  switch (v) {
    case SpecVersion::v0_3_0:
      return "0.3.0";
    case SpecVersion::v0_3_1:
      return "0.3.1";
    case SpecVersion::v0_4_0:
      return "0.4.0";
    case SpecVersion::v1_0_0:
      return "1.0.0";
    case SpecVersion::v1_1_0:
      return "1.1.0";
  }
  return "1.1.0";
}

std::optional<SpecVersion> parse_spec_version(std::string_view text) {
  for (SpecVersion v : kVersions) {
    if (to_string(v) == text) return v;
  }
  return std::nullopt;
}

std::span<const SpecVersion> supported_versions() {
  return kVersions;
}

std::string supported_versions_text() {
  std::string out;
  for (SpecVersion v : kVersions) {
    if (!out.empty()) out += ", ";
    out += to_string(v);
  }
  return out;
}

int cni_code_for(Errc errc) {
  switch (errc) {
    // The daemon answers invalid_argument / not_found for requests built
    // from the config (unknown network, static address outside the subnet).
    case Errc::invalid_argument:
      return code::kInvalidConfig;
    case Errc::not_found:
      return code::kInvalidConfig;
    case Errc::conflict:
      return code::kAlreadyExists;
    case Errc::exhausted:
      return code::kAddressExhausted;
    // The runtime retries code 11 later: right for a daemon being restarted.
    case Errc::unavailable:
      return code::kTryAgainLater;
    case Errc::internal:
      return code::kDaemonOrKernel;
  }
  return code::kDaemonOrKernel;
}

CniError from_error(const Error& e) {
  std::string hint;
  switch (e.code()) {
    case Errc::invalid_argument:
      hint = "swarmnetd rejected the request built from the config";
      break;
    case Errc::not_found:
      hint = "unknown to swarmnetd (create the network with swarmnetctl)";
      break;
    case Errc::conflict:
      hint = "already exists or in use";
      break;
    case Errc::exhausted:
      hint = "no address left in the network's subnet";
      break;
    case Errc::unavailable:
      hint = "swarmnetd cannot do it now (not reachable, it cannot save to its state directory, or the "
             "cluster cannot serve it yet); try again later";
      break;
    case Errc::internal:
      hint = "swarmnetd or kernel failure; see the logs";
      break;
  }
  return CniError(cni_code_for(e.code()), e.what(), hint);
}

std::string encode_error(const CniError& e, SpecVersion version) {
  json::object o;
  o["cniVersion"] = to_string(version);
  o["code"] = e.code();
  o["msg"] = e.msg();
  if (!e.details().empty()) o["details"] = e.details();
  return json::serialize(o);
}

std::string encode_version_reply() {
  json::object o;
  o["cniVersion"] = to_string(kLatestVersion);
  json::array a;
  for (SpecVersion v : kVersions) a.emplace_back(to_string(v));
  o["supportedVersions"] = std::move(a);
  return json::serialize(o);
}

std::string_view to_string(Command c) {
  switch (c) {
    case Command::add:
      return "ADD";
    case Command::del:
      return "DEL";
    case Command::check:
      return "CHECK";
    case Command::gc:
      return "GC";
    case Command::status:
      return "STATUS";
    case Command::version:
      return "VERSION";
  }
  return "VERSION";
}

std::map<std::string, std::string> parse_cni_args(std::string_view text) {
  std::map<std::string, std::string> out;
  while (!text.empty()) {
    size_t end = text.find(';');
    std::string_view pair = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (pair.empty()) continue;  // tolerate "A=1;;B=2" and a trailing ';'
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      throw CniError(code::kInvalidEnvironment,
                     "CNI_ARGS: invalid pair \"" + std::string(pair) + "\" (expected KEY=VALUE)");
    }
    out[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
  }
  return out;
}

EnvLookup process_environment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

Command parse_command(const EnvLookup& env) {
  std::string cmd = required_env(env, "CNI_COMMAND");
  for (Command c : {Command::add, Command::del, Command::check, Command::gc, Command::status,
                    Command::version}) {
    if (to_string(c) == cmd) return c;
  }
  throw CniError(code::kInvalidEnvironment, "CNI_COMMAND: unknown command \"" + cmd + "\"",
                 "expected ADD, DEL, CHECK, GC, STATUS or VERSION");
}

bool valid_ifname(std::string_view name) {
  // IFNAMSIZ is 16 with the terminating NUL; '/' and ':' break sysfs and
  // alias syntax; whitespace breaks every tool that prints the name.
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
        c == '\f' || c == '\0') {
      return false;
    }
  }
  return true;
}

bool valid_container_id(std::string_view id) {
  if (id.empty() || !alnum(id[0])) return false;
  for (char c : id) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

Environment parse_environment(const EnvLookup& env) {
  Environment out;
  out.command = parse_command(env);
  if (out.command == Command::version) return out;
  out.path = env("CNI_PATH").value_or("");
  const bool per_container =
      out.command == Command::add || out.command == Command::del || out.command == Command::check;
  if (per_container) {
    // Required by the spec for these commands even though we exec no
    // delegate: a runtime that omits it is broken in other ways too.
    out.path = required_env(env, "CNI_PATH");
    out.container_id = required_env(env, "CNI_CONTAINERID");
    if (!valid_container_id(out.container_id)) {
      throw CniError(code::kInvalidEnvironment,
                     "CNI_CONTAINERID: invalid container id \"" + out.container_id + "\"",
                     "must start with a letter or digit, then letters, digits, '_', '.', '-'");
    }
    out.ifname = required_env(env, "CNI_IFNAME");
    if (!valid_ifname(out.ifname)) {
      throw CniError(code::kInvalidEnvironment,
                     "CNI_IFNAME: invalid interface name \"" + out.ifname + "\"",
                     "1 to 15 characters, no '/', ':' or whitespace, not \".\" or \"..\"");
    }
    // DEL may come after the namespace is gone: the runtime may omit it then.
    if (out.command == Command::del) {
      out.netns = env("CNI_NETNS").value_or("");
    } else {
      out.netns = required_env(env, "CNI_NETNS");
    }
    out.args = parse_cni_args(env("CNI_ARGS").value_or(""));
  }
  return out;
}

}  // namespace swarmnet::cni
