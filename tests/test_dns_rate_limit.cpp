// The DNS server's per-source limiter: a second's worth answered, a quarter
// as many refused, the rest dropped; refills with time; sources independent;
// the table of sources bounded.
#include <catch2/catch.hpp>
#include <map>

#include "dns/rate_limit.hpp"

using namespace swarmnet::dns;
using Verdict = SourceLimiter::Verdict;
using std::chrono::milliseconds;

namespace {

const SourceLimiter::Clock::time_point t0 = SourceLimiter::Clock::now();

// Verdicts of `n` queries from `source` at `now`, counted.
std::map<Verdict, int> ask(SourceLimiter& l, uint32_t source, int n,
                           SourceLimiter::Clock::time_point now) {
  std::map<Verdict, int> counts;
  for (int i = 0; i < n; ++i) ++counts[l.admit(source, now)];
  return counts;
}

}  // namespace

TEST_CASE("rate 0 answers everything") {
  SourceLimiter l(0);
  auto c = ask(l, 1, 100000, t0);
  CHECK(c[Verdict::answer] == 100000);
  CHECK(l.tracked() == 0);
}

TEST_CASE("a burst: one second's worth answered, a quarter as many refused, the rest dropped") {
  SourceLimiter l(100);
  auto c = ask(l, 1, 350, t0);
  CHECK(c[Verdict::answer] == 100);
  CHECK(c[Verdict::refuse] == 25);
  CHECK(c[Verdict::drop] == 225);
  CHECK(SourceLimiter::ceiling(100) == 125);
  CHECK(SourceLimiter::ceiling(30000) == 37500);
  CHECK(SourceLimiter::ceiling(1) == 2);  // a refusal at least
  CHECK(SourceLimiter::ceiling(0) == 0);
}

TEST_CASE("the buckets refill with time, never past one second's worth") {
  SourceLimiter l(100);
  ask(l, 1, 300, t0);
  // 200 ms: 20 more answers, 5 more refusals.
  auto c = ask(l, 1, 30, t0 + milliseconds(200));
  CHECK(c[Verdict::answer] == 20);
  CHECK(c[Verdict::refuse] == 5);
  CHECK(c[Verdict::drop] == 5);
  // Ten idle seconds are worth one.
  c = ask(l, 1, 300, t0 + milliseconds(10200));
  CHECK(c[Verdict::answer] == 100);
  CHECK(c[Verdict::refuse] == 25);
}

TEST_CASE("a client at the rate is answered every time") {
  SourceLimiter l(1000);
  int answered = 0;
  // 1000 a second for 5 seconds, one every millisecond.
  for (int i = 0; i < 5000; ++i) answered += l.admit(7, t0 + milliseconds(i)) == Verdict::answer;
  CHECK(answered == 5000);
}

TEST_CASE("one source over the limit leaves the others untouched") {
  SourceLimiter l(100);
  ask(l, 1, 1000, t0);
  auto c = ask(l, 2, 100, t0);
  CHECK(c[Verdict::answer] == 100);
  CHECK(l.admit(1, t0) == Verdict::drop);
}

TEST_CASE("a clock read earlier than the last one takes nothing back") {
  SourceLimiter l(100);
  ask(l, 1, 125, t0 + milliseconds(500));
  // Another thread's reading of the clock can be a little older.
  CHECK(l.admit(1, t0) == Verdict::drop);
  CHECK(l.admit(1, t0 + milliseconds(520)) == Verdict::answer);
}

TEST_CASE(
    "the table of sources is bounded; beyond it sources share one bucket; idle ones are "
    "forgotten") {
  SourceLimiter l(10, 4);
  for (uint32_t s = 1; s <= 4; ++s) ask(l, s, 1, t0);
  CHECK(l.tracked() == 4);
  // Sources 5 and 6 share the overflow bucket: together they get 10 answers.
  auto a = ask(l, 5, 6, t0);
  auto b = ask(l, 6, 6, t0);
  CHECK(a[Verdict::answer] + b[Verdict::answer] == 10);
  CHECK(l.tracked() == 4);
  // Three seconds later the first four are idle: a new source gets its own.
  auto c = ask(l, 9, 10, t0 + std::chrono::seconds(3));
  CHECK(c[Verdict::answer] == 10);
  CHECK(l.tracked() == 1);
}
