#include "ctl/events.hpp"

#include <sys/socket.h>

#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstdio>

#include "common/api.hpp"
#include "common/api_client.hpp"
#include "common/error.hpp"

namespace swarmnet::ctl {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

// One line of the stream, printed; returns whether it was the "lost" event.
bool print_line(std::string_view line, const std::string& format) {
  if (line.empty()) return false;
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) throw Error(Errc::internal, "swarmnetd sent an event that is not JSON: " + ec.message());
  const Event e = event_from_json(v);
  const std::string out = format == "json" ? std::string(line) : format_text(e);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);  // as it happens, also into a pipe
  return e.type == "events" && e.action == "lost";
}

}  // namespace

int print_events(const std::string& socket_path, const EventFilter& filter, const std::string& format) {
  const DaemonConnection conn(socket_path);
  const std::string& where = conn.where();
  const std::string query = filter.query();
  conn.send_all("GET /v1/events" + (query.empty() ? "" : "?" + query) +
                " HTTP/1.1\r\nHost: swarmnetd\r\nConnection: close\r\n\r\n");

  // The body grows as chunks arrive; whole lines are printed and dropped
  // from it, so a stream of any length takes little memory.
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  std::string buffer;
  bool lost = false;
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::recv(conn.fd(), chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::unavailable, "reading from " + where, errno);
    }
    if (n == 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    boost::beast::error_code ec;
    while (!buffer.empty() && !parser.is_done()) {
      const size_t used = parser.put(boost::asio::buffer(buffer), ec);
      buffer.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) throw Error(Errc::internal, "malformed HTTP reply from " + where + ": " + ec.message());
      if (used == 0) break;
    }
    if (!parser.is_header_done()) continue;
    auto& res = parser.get();
    if (res.result_int() != 200) {
      if (!parser.is_done()) continue;  // the error body is short: read it whole
      break;
    }
    std::string& body = res.body();
    size_t start = 0;
    for (size_t nl; (nl = body.find('\n', start)) != std::string::npos; start = nl + 1) {
      lost = print_line(std::string_view(body).substr(start, nl - start), format) || lost;
    }
    body.erase(0, start);
    if (parser.is_done()) break;
  }
  if (!parser.is_header_done()) throw Error(Errc::unavailable, where + " closed the connection without answering");
  auto& res = parser.get();
  if (res.result_int() != 200) {
    api::ErrorBody e{"internal", "HTTP " + std::to_string(res.result_int())};
    boost::system::error_code ec;
    json::value v = json::parse(res.body(), ec);
    if (!ec) {
      try {
        e = json::value_to<api::ErrorBody>(v);
      } catch (const std::exception&) {
      }
    }
    throw Error(errc_from_string(e.code), e.message);
  }
  if (lost) return 1;
  if (!parser.is_done()) throw Error(Errc::unavailable, where + " went away (the stream ended mid-way)");
  return 0;
}

}  // namespace swarmnet::ctl
