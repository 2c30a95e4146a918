// A state directory written by swarmnet before the checksums (format 1:
// state.json and a journal of bare JSON lines, killed before compaction)
// loads whole, and the first start converts it to format 2.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/state_records.hpp"
#include "daemon/store.hpp"
#include "support/log_capture.hpp"
#include "support/temp_dir.hpp"

using namespace swarmnet;
using swarmnet::testing::LogCapture;
using swarmnet::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kFixture = std::string(SWARMNET_FIXTURES_DIR) + "/state-format1";
const std::string kNode = "1f92d3e2895b173af097ef37a621dbc0";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const daemon::EndpointRecord* endpoint(const daemon::Store& s, const daemon::NetworkRecord& n,
                                       const std::string& container, const std::string& ifname = "eth0") {
  return s.find_endpoint(daemon::endpoint_key(n.id, kNode, container, ifname));
}

void check_fixture_content(const daemon::Store& s) {
  CHECK(s.node_id() == kNode);
  const auto* alpha = s.find_network_by_name("alpha");
  const auto* beta = s.find_network_by_name("beta");
  REQUIRE(alpha);
  REQUIRE(beta);
  CHECK(alpha->subnet.str() == "10.61.0.0/24");
  CHECK(beta->subnet.str() == "10.62.0.0/24");
  // From the snapshot, then deleted by the journal's last line.
  CHECK(endpoint(s, *alpha, "c1") == nullptr);
  // From the journal.
  REQUIRE(endpoint(s, *alpha, "c2"));
  CHECK(endpoint(s, *alpha, "c2")->ip.str() == "10.61.0.3");
  REQUIRE(endpoint(s, *beta, "c3"));
  CHECK(endpoint(s, *beta, "c3")->ip.str() == "10.62.0.2");
  const auto* web = s.find_service_by_name("web");
  REQUIRE(web);
  REQUIRE(web->vips.count(beta->id) == 1);
  CHECK(web->vips.at(beta->id).str() == "10.62.0.3");
  CHECK(s.blocks().size() == 2);
}

}  // namespace

TEST_CASE("store: a format 1 state directory (no checksums) loads and is converted", "[store][fixture]") {
  // The fixture is what it claims: a snapshot without checksums and journal
  // lines not yet compacted into it.
  REQUIRE(fs::exists(kFixture + "/state.json"));
  const std::string old_journal = read_text(kFixture + "/journal");
  REQUIRE(old_journal.size() > 0);
  REQUIRE(old_journal.front() == '{');

  TempDir dir;
  const std::string state = dir / "state";
  fs::copy(kFixture, state);
  fs::remove(state + "/README.md");
  std::vector<daemon::Store::Line> entries;
  {
    LogCapture log;
    daemon::Store s(state);
    INFO(log.all());
    CHECK(log.matching({"dropped"}).empty());
    CHECK(log.matching({"converted " + state + " to format 2"}).size() == 1);
    check_fixture_content(s);
    entries = s.replicated_entries();
  }
  // Converted: format 2 files only, and they load to the same state.
  CHECK_FALSE(fs::exists(state + "/state.json"));
  CHECK(read_text(state + "/snapshot").rfind(std::string(daemon::state_records::kSnapshotHeader) + "\n", 0) == 0);
  CHECK(read_text(state + "/journal") == std::string(daemon::state_records::kJournalHeader) + "\n");
  LogCapture log;
  daemon::Store s(state);
  CHECK(log.matching({"dropped"}).empty());
  check_fixture_content(s);
  CHECK(s.replicated_entries() == entries);
  // The clock goes on from the old one (the journal's last line was 10).
  CHECK(s.put(s.networks().begin()->second.value).lamport == 11);
}
