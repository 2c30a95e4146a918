// swarmnetd --config FILE (daemon/config_file.hpp): settings named like the
// long options, the command line winning, and every bad line refused with
// the file and line in the message.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "common/error.hpp"
#include "daemon/config_file.hpp"

using swarmnet::config_file::apply;
using swarmnet::config_file::load;
using swarmnet::config_file::parse;

namespace {

// The shapes of option swarmnetd has: a string, a number with a range, a
// negated flag, an option taking several values.
struct Options {
  CLI::App app{"test"};
  std::string state_dir = "/var/lib/swarmnet";
  uint16_t dns_port = 53;
  unsigned rate = 30000;
  bool dns_enabled = true;
  std::vector<std::string> upstreams;
  std::string config;
  Options() {
    app.add_option("--state-dir", state_dir);
    app.add_option("--dns-port", dns_port);
    app.add_option("--dns-rate-limit", rate)->check(CLI::Range(0u, 10'000'000u));
    app.add_flag("!--no-dns", dns_enabled);
    app.add_option("--dns-upstream", upstreams);
    app.add_option("--config", config)->configurable(false);
    app.set_version_flag("--version", "1");
  }
  // Parses ARGS as the command line, then applies TEXT as the file "f.conf".
  void run(std::vector<std::string> args, const std::string& text) {
    std::vector<const char*> argv{"swarmnetd"};
    for (const auto& a : args) argv.push_back(a.c_str());
    app.parse(static_cast<int>(argv.size()), argv.data());
    apply(app, parse(text, "f.conf"), "f.conf");
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const swarmnet::Error& e) {
    CHECK(e.code() == swarmnet::Errc::invalid_argument);
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("config file: every kind of option is settable by its long name") {
  Options o;
  o.run({}, "# swarmnetd settings\n"
            "\n"
            "state-dir = /srv/swarmnet\n"
            "   dns-port=5353   \n"
            "dns-rate-limit = 100\r\n"
            "no-dns = true\n"
            "dns-upstream = 192.0.2.1\n"
            "dns-upstream = \"192.0.2.2:5353\"\n");
  CHECK(o.state_dir == "/srv/swarmnet");
  CHECK(o.dns_port == 5353);
  CHECK(o.rate == 100);
  CHECK_FALSE(o.dns_enabled);
  CHECK(o.upstreams == std::vector<std::string>{"192.0.2.1", "192.0.2.2:5353"});
}

TEST_CASE("config file: a negated flag set to false keeps the feature on") {
  Options o;
  o.dns_enabled = false;  // so that the test sees the file's value land
  o.run({}, "no-dns = false\n");
  CHECK(o.dns_enabled);
}

TEST_CASE("config file: options on the command line win over the file") {
  Options o;
  o.run({"--state-dir", "/cmdline", "--no-dns", "--dns-upstream", "198.51.100.1"},
        "state-dir = /file\nno-dns = false\ndns-upstream = 192.0.2.1\ndns-port = 5300\n");
  CHECK(o.state_dir == "/cmdline");
  CHECK_FALSE(o.dns_enabled);
  CHECK(o.upstreams == std::vector<std::string>{"198.51.100.1"});
  CHECK(o.dns_port == 5300);  // not on the command line: the file's
}

TEST_CASE("config file: a new option is settable without the reader knowing it") {
  Options o;
  std::string metrics;
  o.app.add_option("--metrics-addr", metrics);
  o.run({}, "metrics-addr = 127.0.0.1:9323\n");
  CHECK(metrics == "127.0.0.1:9323");
}

TEST_CASE("config file: each bad line is refused with the file and its line") {
  const auto err = [](const std::string& text) {
    Options o;
    return error_of([&] { o.run({}, text); });
  };
  // Not `key = value`.
  CHECK_THAT(err("state-dir = /x\n\njust words\n"), Catch::StartsWith("f.conf:3: expected `key = value`"));
  // A key with the dashes of the command line, or capitals.
  CHECK_THAT(err("--state-dir = /x\n"), Catch::StartsWith("f.conf:1: \"--state-dir\" is not a setting name"));
  CHECK_THAT(err("# c\nState-Dir = /x\n"), Catch::StartsWith("f.conf:2: \"State-Dir\" is not a setting name"));
  // No value.
  CHECK_THAT(err("state-dir =\n"), Catch::StartsWith("f.conf:1: \"state-dir\" has no value"));
  // Unknown: the message lists what is known.
  const std::string unknown = err("dns-port = 53\nstate-directory = /x\n");
  CHECK_THAT(unknown, Catch::StartsWith("f.conf:2: unknown setting \"state-directory\""));
  CHECK_THAT(unknown, Catch::Contains("state-dir, dns-port"));
  CHECK_THAT(unknown, !Catch::Contains("version"));
  // Values the option refuses, as the command line would.
  CHECK_THAT(err("\ndns-port = fifty\n"), Catch::StartsWith("f.conf:2: dns-port = fifty: "));
  CHECK_THAT(err("dns-port = 70000\n"), Catch::StartsWith("f.conf:1: dns-port = 70000: "));
  CHECK_THAT(err("dns-rate-limit = 20000000\n"), Catch::StartsWith("f.conf:1: dns-rate-limit = 20000000: "));
  CHECK_THAT(err("no-dns = maybe\n"), Catch::StartsWith("f.conf:1: no-dns = maybe: "));
  // A single-valued option twice.
  CHECK_THAT(err("state-dir = /a\n#\nstate-dir = /b\n"),
             Catch::StartsWith("f.conf:3: \"state-dir\" is already set on line 1"));
  // What acts at once or names the file itself.
  CHECK_THAT(err("config = /etc/other.conf\n"), Catch::StartsWith("f.conf:1: \"config\" cannot be set"));
  CHECK_THAT(err("version = true\n"), Catch::StartsWith("f.conf:1: \"version\" cannot be set"));
  // Binary junk.
  CHECK_THAT(err(std::string("state-dir = /a\0b\n", 17)), Catch::StartsWith("f.conf:1: a NUL byte"));
}

TEST_CASE("config file: a refused file changes no option") {
  Options o;
  const std::string e = error_of([&] { o.run({}, "state-dir = /x\nbogus line\n"); });
  CHECK_THAT(e, Catch::StartsWith("f.conf:2:"));
  CHECK(o.state_dir == "/var/lib/swarmnet");
}

TEST_CASE("config file: load reads the file, and says so when it cannot") {
  char path[] = "/tmp/swarmnet-config-test.XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  {
    std::ofstream f(path);
    f << "state-dir = /from/file\n";
  }
  Options o;
  const char* argv[] = {"swarmnetd"};
  o.app.parse(1, argv);
  load(o.app, path);
  CHECK(o.state_dir == "/from/file");
  std::remove(path);
  CHECK_THAT(error_of([&] { load(o.app, path); }),
             Catch::StartsWith(std::string("cannot read the configuration file ") + path + ": No such file"));
  // A directory or a device is no configuration (a directory reads as
  // empty through some interfaces: the daemon would start on defaults).
  CHECK(error_of([&] { load(o.app, "/tmp"); }) == "cannot read the configuration file /tmp: not a regular file");
  CHECK(error_of([&] { load(o.app, "/dev/zero"); }) ==
        "cannot read the configuration file /dev/zero: not a regular file");
}
