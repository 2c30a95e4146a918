// A blocking client for the swarmnetd API on its unix socket. Used by the
// short-lived front ends (CNI plugins, swarmnetctl), where one request per
// process is the norm and a thread blocking on it is what we want.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <utility>

namespace swarmnet {

struct ApiResponse {
  unsigned status = 0;
  boost::json::value body;  // null when the reply had no body
};

// A stream connected to swarmnetd's API socket, closed on destruction: the
// one way the front ends reach the daemon (ApiClient's requests,
// swarmnetctl events' long-lived stream).
class DaemonConnection {
 public:
  // Throws Error(unavailable) when nothing listens there.
  explicit DaemonConnection(const std::string& socket_path);
  ~DaemonConnection();
  DaemonConnection(DaemonConnection&& other) noexcept;
  DaemonConnection& operator=(DaemonConnection&&) = delete;
  DaemonConnection(const DaemonConnection&) = delete;
  DaemonConnection& operator=(const DaemonConnection&) = delete;

  // Writes all of data (Error(unavailable) if the daemon went away).
  void send_all(const std::string& data) const;
  int fd() const { return fd_; }
  // "swarmnetd at SOCKET", for error messages.
  const std::string& where() const { return where_; }

 private:
  int fd_ = -1;
  std::string where_;
};

// A request sent whose reply is not read yet: the front end does meanwhile
// what does not depend on the reply (the CNI plugin's DEL removes the
// container's interface while swarmnetd releases its address).
class PendingRequest {
 public:
  PendingRequest(PendingRequest&&) = default;

  // Reads the whole reply, whatever its status (once). Throws like
  // ApiClient::request().
  ApiResponse response();
  // Like response(), and turns a non-2xx reply into the Error the daemon
  // sent.
  boost::json::value result();
  // After response() or result() of a request sent with ?sync=later
  // (docs/api.md): returns once the daemon says the change is durable.
  // Throws Error(unavailable) if it says it failed, or closes the connection
  // without saying (it stopped); waits at most the client's timeout from
  // this call. Returns at once for a reply without the Swarmnet-Sync header
  // (a daemon that synced before replying).
  void wait_synced();

 private:
  friend class ApiClient;
  PendingRequest(DaemonConnection conn, std::chrono::steady_clock::time_point deadline,
                 std::chrono::milliseconds timeout)
      : conn_(std::move(conn)), deadline_(deadline), timeout_(timeout) {}
  // Appends what the daemon sends next to buffer_; false at the end of
  // the connection.
  bool read_more();
  DaemonConnection conn_;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::milliseconds timeout_;
  // Received and not yet parsed: what follows the reply stays here.
  std::string buffer_;
  bool responded_ = false;
  bool sync_pending_ = false;
};

class ApiClient {
 public:
  explicit ApiClient(std::string socket_path,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Sends one request and returns the reply whatever its status.
  // Throws Error(unavailable) when the daemon cannot be reached or does not
  // answer in time, Error(internal) when the reply is not HTTP/JSON.
  ApiResponse request(const std::string& method, const std::string& target,
                      const boost::json::value* body = nullptr) const;

  // Like request(), and turns a non-2xx reply into the Error the daemon sent.
  boost::json::value call(const std::string& method, const std::string& target,
                          const boost::json::value* body = nullptr) const;

  // Connects and sends the request, and returns without reading the reply.
  // Throws Error(unavailable) when the daemon cannot be reached.
  PendingRequest send(const std::string& method, const std::string& target,
                      const boost::json::value* body = nullptr) const;

  const std::string& socket_path() const { return socket_path_; }

 private:
  std::string socket_path_;
  std::chrono::milliseconds timeout_;
};

// Percent-encodes one path segment (container ids and names are user input).
std::string url_segment(std::string_view s);

}  // namespace swarmnet
