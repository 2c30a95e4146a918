// The CNI execution protocol, as the runtime speaks it: spec versions,
// commands, the environment (CNI_COMMAND, CNI_ARGS, ...), the error object
// and the VERSION reply. Pure: nothing here touches the kernel or the daemon,
// so every rule of the spec is unit-tested without root.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace swarmnet::cni {

// The spec versions we speak. Ordered, so "at least 0.4.0" is a comparison.
enum class SpecVersion { v0_3_0, v0_3_1, v0_4_0, v1_0_0, v1_1_0 };

inline constexpr SpecVersion kLatestVersion = SpecVersion::v1_1_0;

std::string_view to_string(SpecVersion v);
std::optional<SpecVersion> parse_spec_version(std::string_view text);
std::span<const SpecVersion> supported_versions();
// "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0", for messages.
std::string supported_versions_text();

// Well-known codes of the spec (0-99) and ours (100+, see README.md).
namespace code {
inline constexpr int kIncompatibleVersion = 1;
inline constexpr int kUnsupportedField = 2;
inline constexpr int kUnknownContainer = 3;
inline constexpr int kInvalidEnvironment = 4;
inline constexpr int kIoFailure = 5;
inline constexpr int kDecodeFailure = 6;
inline constexpr int kInvalidConfig = 7;
inline constexpr int kTryAgainLater = 11;
inline constexpr int kPluginNotAvailable = 50;
inline constexpr int kAddressExhausted = 100;
inline constexpr int kAlreadyExists = 101;
inline constexpr int kDaemonOrKernel = 102;
inline constexpr int kCheckFailed = 103;
}  // namespace code

// What the plugin prints on stdout when it fails. Thrown by the protocol
// layer for protocol errors; swarmnet::Error from the daemon or the kernel
// is turned into one by from_error() at the program's edge.
class CniError : public std::runtime_error {
 public:
  CniError(int code, std::string msg, std::string details = "")
      : std::runtime_error(msg), code_(code), msg_(std::move(msg)), details_(std::move(details)) {}
  int code() const noexcept { return code_; }
  const std::string& msg() const noexcept { return msg_; }
  const std::string& details() const noexcept { return details_; }

 private:
  int code_;
  std::string msg_;
  std::string details_;
};

// The one mapping from swarmnet::Errc to a CNI code.
int cni_code_for(Errc errc);
CniError from_error(const Error& e);

// {"cniVersion", "code", "msg", "details"}; details left out when empty.
std::string encode_error(const CniError& e, SpecVersion version);
// {"cniVersion": "1.1.0", "supportedVersions": [...]}
std::string encode_version_reply();

enum class Command { add, del, check, gc, status, version };
std::string_view to_string(Command c);

// CNI_ARGS: "KEY=VALUE;KEY=VALUE". Unknown keys are kept (and ignored by the
// callers), as runtimes add their own (K8S_POD_NAME, IgnoreUnknown, ...).
// A pair without '=' or with an empty key is error 4.
std::map<std::string, std::string> parse_cni_args(std::string_view text);

struct Environment {
  Command command = Command::version;
  std::string container_id;
  std::string netns;  // may be empty for DEL, GC, STATUS
  std::string ifname;
  std::string path;  // CNI_PATH, kept for logs; we exec no delegate
  std::map<std::string, std::string> args;
};

// Reads one variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
EnvLookup process_environment();

// CNI_COMMAND alone: error 4 when missing or unknown.
Command parse_command(const EnvLookup& env);
// Everything the command needs, validated (error 4 naming the variable).
Environment parse_environment(const EnvLookup& env);

// Validation rules shared with the config parser and the tests.
bool valid_ifname(std::string_view name);        // as the kernel accepts it
bool valid_container_id(std::string_view name);  // [A-Za-z0-9][A-Za-z0-9_.-]*

}  // namespace swarmnet::cni
