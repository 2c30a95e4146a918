// Every Docker plugin call's body through the driver with fakes behind it:
// decoding must either succeed or throw swarmnet::Error, and handle() must
// always produce a reply. Input: "METHOD\nBODY" (the first line picks the
// call). Corpus: fuzz/corpus/docker_request.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "plugin/docker/driver.hpp"

namespace {
using namespace swarmnet;
using namespace swarmnet::docker;

class NoDaemon : public DaemonApi {
 public:
  json::value call(const std::string&, const std::string&, const json::value*) override {
    throw Error(Errc::unavailable, "no daemon in the fuzzer");
  }
};
class NoLinks : public HostLinks {
 public:
  void create_pair(const std::string&, const std::string&, unsigned, const std::string&,
                   const std::string&) override {}
  bool remove(const std::string&) override { return false; }
};
class NoPublisher : public PortPublisher {
 public:
  void publish(const std::string&, Ipv4Address, const std::vector<PortBinding>&) override {}
  void unpublish(const std::string&) override {}
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static NoDaemon daemon;
  static NoLinks links;
  static NoPublisher publisher;
  static StateDir state((std::filesystem::temp_directory_path() / "fuzz_docker_state").string());
  static Driver driver(daemon, links, publisher, state);
  std::string input(reinterpret_cast<const char*>(data), size);
  auto nl = input.find('\n');
  std::string method = nl == std::string::npos ? input : input.substr(0, nl);
  std::string body = nl == std::string::npos ? "" : input.substr(nl + 1);
  auto [status, reply] = driver.handle(method, body);
  if (status != 200 && status != 404) __builtin_trap();
  return 0;
}
