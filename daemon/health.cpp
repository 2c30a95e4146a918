#include "daemon/health.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <istream>
#include <vector>

#include "common/log.hpp"

namespace swarmnet::daemon {

namespace asio = boost::asio;
using asio::ip::tcp;

HealthChecker::HealthChecker(asio::io_context& io, Store& store) : io_(io), store_(store), timer_(io) {}

HealthChecker::~HealthChecker() { *alive_ = false; }

void HealthChecker::start() { tick(); }

void HealthChecker::tick() {
  const auto now = std::chrono::steady_clock::now();
  const std::string& me = store_.node_id();
  // The tasks that may need work: those of the services with a check (by
  // the index: O(their tasks)) and those checked until now (a check gone
  // leaves them healthy). Not every local task, every 250 ms: at 10,000 that
  // walk took a fifth of the daemon's time and held up the changes that
  // arrived meanwhile. At the first tick, every local task once: one left
  // unhealthy by a check that went away while the daemon was down.
  std::map<std::string_view, const ServiceRecord*> services;  // by name, once per tick
  std::vector<std::string> keys;
  for (const auto& [id, e] : store_.services()) {
    if (e.deleted) continue;
    services.emplace(e.value.name, &e.value);
    if (e.value.health.kind.empty()) continue;
    for (const std::string& key : store_.index().endpoints_of_service(e.value.name)) keys.push_back(key);
  }
  for (const auto& [key, st] : states_) keys.push_back(key);
  if (!swept_) {
    const EndpointKeys local = store_.index().endpoints_of_node(me);
    keys.insert(keys.end(), local.begin(), local.end());
    swept_ = true;
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::map<std::string, State> seen;
  // record() below writes to the store, which updates the index: the keys
  // are a copy.
  for (const std::string& key : keys) {
    const EndpointRecord* found = store_.find_endpoint(key);
    if (!found || found->node != me) continue;
    const EndpointRecord& r = *found;
    if (r.service.empty()) continue;
    auto service = services.find(r.service);
    const ServiceRecord* s = service == services.end() ? nullptr : service->second;
    if (!s || s->health.kind.empty()) {
      // No check (any more): a task is healthy by definition.
      if (!r.healthy) record(key, true, "the service has no health check");
      continue;
    }
    auto known = states_.find(key);
    State st = known != states_.end() ? known->second : State{now, 0, false};
    if (!st.running && now >= st.next) {
      st.running = true;
      st.next = now + std::chrono::seconds(s->health.interval_s);
      seen[key] = st;
      probe(key, r, s->health);
    } else {
      seen[key] = st;
    }
  }
  states_ = std::move(seen);  // forgets tasks that went away
  timer_.expires_after(std::chrono::milliseconds(250));
  timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (!ec && *alive) tick();
  });
}

void HealthChecker::probe(const std::string& key, const EndpointRecord& task, const HealthCheckRecord& check) {
  const tcp::endpoint target(asio::ip::address_v4(task.ip.value()), check.port);
  // A probe gets at most the interval (and 5 s) to answer.
  const auto limit = std::chrono::seconds(std::min(check.interval_s, 5u));
  auto work = [this, key, target, check, limit, alive = alive_]() -> asio::awaitable<void> {
    // Shared with the deadline's handler: when the deadline expires in the
    // same turn as the probe ends, its handler is already queued (cancel()
    // comes too late) and runs after this frame is gone; by reference it
    // closed a destroyed socket, and the throwing close() (EBADF) took the
    // whole daemon down.
    auto owned = std::make_shared<tcp::socket>(io_);
    tcp::socket& socket = *owned;
    asio::steady_timer deadline(io_);
    deadline.expires_after(limit);
    deadline.async_wait([owned](const boost::system::error_code& ec) {
      boost::system::error_code ignored;
      if (!ec) owned->close(ignored);
    });
    boost::system::error_code ec;
    std::string detail;
    bool ok = false;
    co_await socket.async_connect(target, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      detail = "connect " + target.address().to_string() + ":" + std::to_string(check.port) + ": " + ec.message();
    } else if (check.kind == "tcp") {
      ok = true;
    } else {
      const std::string request = "GET " + check.path + " HTTP/1.0\r\nHost: " + target.address().to_string() +
                                  "\r\nUser-Agent: swarmnetd-health\r\n\r\n";
      co_await asio::async_write(socket, asio::buffer(request), asio::redirect_error(asio::use_awaitable, ec));
      asio::streambuf buf(4096);
      if (!ec) co_await asio::async_read_until(socket, buf, "\r\n", asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        detail = "http " + check.path + ": " + ec.message();
      } else {
        std::istream in(&buf);
        std::string version;
        unsigned status = 0;
        in >> version >> status;
        ok = status >= 200 && status < 400;
        if (!ok) detail = "http " + check.path + ": status " + std::to_string(status);
      }
    }
    deadline.cancel();
    if (*alive) record(key, ok, detail);
  };
  asio::co_spawn(io_, work, asio::detached);
}

void HealthChecker::record(const std::string& key, bool ok, const std::string& detail) {
  auto st = states_.find(key);
  if (st != states_.end()) {
    st->second.running = false;
    st->second.failures = ok ? 0 : st->second.failures + 1;
  }
  const EndpointRecord* e = store_.find_endpoint(key);
  if (!e) return;
  const ServiceRecord* s = store_.find_service_by_name(e->service);
  const unsigned retries = s ? s->health.retries : 1;
  bool healthy = e->healthy;
  if (ok) {
    healthy = true;
  } else if (st != states_.end() && st->second.failures >= retries) {
    healthy = false;
  }
  if (!ok) spdlog::debug("health: {} {}: {}", e->container_id, e->ip.str(), detail);
  if (healthy == e->healthy) return;
  EndpointRecord updated = *e;
  updated.healthy = healthy;
  store_.put(updated);  // gossiped: every host's balancers and DNS follow
  if (healthy) {
    spdlog::info("health: task {} ({}) of {} is healthy", e->container_id, e->ip.str(), e->service);
  } else {
    spdlog::warn("health: task {} ({}) of {} is unhealthy after {} failed checks: {}", e->container_id,
                 e->ip.str(), e->service, retries, detail);
  }
}

}  // namespace swarmnet::daemon
