#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/shared_string.hpp"
#include "daemon/records.hpp"

using swarmnet::SharedString;

namespace {

// The text's bytes, where they are: equal for two SharedStrings holding one copy.
const char* where(const SharedString& s) { return s.data(); }

}  // namespace

TEST_CASE("SharedString: one copy of a text however many hold it, dropped with the last", "[shared_string]") {
  const size_t before = SharedString::held_texts();
  const std::string id(32, 'a');
  {
    std::vector<SharedString> many;
    for (int i = 0; i < 1000; ++i) many.emplace_back(std::string(id));  // each made from its own std::string
    CHECK(SharedString::held_texts() == before + 1);
    CHECK(where(many.front()) == where(many.back()));
    // The control: another text is another copy.
    SharedString other(std::string(32, 'b'));
    CHECK(SharedString::held_texts() == before + 2);
    CHECK(where(other) != where(many.front()));
  }
  CHECK(SharedString::held_texts() == before);
  // Made again after it was dropped: a working copy, not a dangling one.
  SharedString again(id);
  CHECK(again == id);
  CHECK(SharedString::held_texts() == before + 1);
}

TEST_CASE("SharedString: one pointer in every record that holds it", "[shared_string]") {
  // 20,000 endpoints hold seven each (bench/daemon_memory.sh); a shared_ptr was twice this.
  CHECK(sizeof(SharedString) == sizeof(void*));
  // Texts dropped are freed by the table's sweep: 10 rounds of 500 new
  // texts each leave a table of at most twice a round's, not 5,000.
  const size_t before = SharedString::held_texts();
  for (int round = 0; round < 10; ++round) {
    std::vector<SharedString> texts;
    for (int i = 0; i < 500; ++i) texts.emplace_back("text-" + std::to_string(round) + "-" + std::to_string(i));
    CHECK(SharedString::held_texts() == before + 500);  // the control: a round's texts are all there
    CHECK(texts[499] == "text-" + std::to_string(round) + "-499");
  }
  CHECK(SharedString::held_texts() == before);
  CHECK(SharedString::table_size() <= 2 * (before + 500) + 64);
  // A text dropped and swept is made anew, whole, when asked for again.
  SharedString again("text-0-7");
  CHECK(again == "text-0-7");
}

TEST_CASE("SharedString reads, compares and joins like a std::string", "[shared_string]") {
  SharedString s("net-1");
  const std::string& as_string = s;
  CHECK(as_string == "net-1");
  CHECK(s == "net-1");
  CHECK(s == std::string("net-1"));
  CHECK(s != "net-2");
  CHECK(s < "net-2");
  CHECK(std::string("net-0") < s);
  CHECK(s + "/x" == "net-1/x");
  CHECK("x/" + s == "x/net-1");
  CHECK(s.size() == 5);
  CHECK(s.substr(0, 3) == "net");
  CHECK(fmt::format("[{}]", s) == "[net-1]");
  SharedString none;
  CHECK(none.empty());
  CHECK(none == "");
  CHECK(SharedString("").empty());
  s.clear();
  CHECK(s.empty());
  // As a map key, ordered by its text.
  std::map<SharedString, int> by_name{{SharedString("b"), 2}, {SharedString("a"), 1}};
  CHECK(by_name.begin()->first == "a");
}

TEST_CASE("SharedString: copies made and dropped on several threads", "[shared_string]") {
  const size_t before = SharedString::held_texts();
  std::atomic<int> wrong{0};  // Catch2's checks are not for other threads
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &wrong] {
      for (int i = 0; i < 20000; ++i) {
        SharedString a("node-" + std::to_string(i % 7));
        SharedString b = a;
        if (b != a || a.str() != "node-" + std::to_string(i % 7)) ++wrong;
        if (i % 1000 == 0) SharedString own("thread-" + std::to_string(t));
        // Texts of their own, dropped at once: the table is swept while
        // the other threads copy and drop theirs.
        if (i % 10 == 0) SharedString passing("t" + std::to_string(t) + "-" + std::to_string(i));
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  CHECK(SharedString::held_texts() == before);
}

TEST_CASE("An endpoint's repeated fields are held once for all endpoints", "[shared_string]") {
  // What the store holds 20,000 of (bench/daemon_memory.sh): their network,
  // node and version's node are one copy each, not one per endpoint.
  std::vector<swarmnet::daemon::EndpointRecord> endpoints(3);
  for (size_t i = 0; i < endpoints.size(); ++i) {
    endpoints[i].network_id = std::string(32, 'n');
    endpoints[i].node = std::string(32, 'h');
    endpoints[i].container_id = std::string(32, char('0' + i));
  }
  CHECK(where(endpoints[0].network_id) == where(endpoints[2].network_id));
  CHECK(where(endpoints[0].node) == where(endpoints[1].node));
  CHECK(endpoints[0].container_id.data() != endpoints[1].container_id.data());
}
