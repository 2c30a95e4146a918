// The event stream's parsers: the query of GET /v1/events (any API client's
// bytes) and an event line as swarmnetctl reads it from the daemon. Either
// succeeds or throws swarmnet::Error; what parses survives a round trip.
// Input: first byte 'q' for a query, anything else for a JSON line.
// Corpus: fuzz/corpus/event.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/error.hpp"
#include "common/event.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmnet;
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 'q') {
    try {
      const EventFilter f = EventFilter::from_query(text);
      const EventFilter again = EventFilter::from_query(f.query());
      if (again.query() != f.query()) std::abort();
    } catch (const Error&) {
    }
    return 0;
  }
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(text, ec);
  if (ec) return 0;
  try {
    const Event e = event_from_json(v);
    (void)format_text(e);
    if (!(event_from_json(to_json(e)) == e)) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
