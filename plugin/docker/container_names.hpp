// Docker's container names and the `swarmnet.service` label, for DNS and
// services. Docker's remote driver protocol never names the container, and
// during Join dockerd holds the container's lock (an inspect would wait for
// our own reply). So after Join, a worker thread asks dockerd's API for the
// container list (a lock-free snapshot, updated once the start completes)
// until the endpoint shows up there, then tells swarmnetd the endpoint's
// name (the container name), aliases (the short id, --network-alias and
// docker network connect --alias, on that network only) and service.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/api_client.hpp"
#include "plugin/docker/driver.hpp"

namespace swarmnet::docker {

inline constexpr const char* kServiceLabel = "swarmnet.service";
inline constexpr const char* kDefaultDockerSocket = "/var/run/docker.sock";

// The container holding `endpoint_id` in a /containers/json reply, if any.
std::optional<ContainerInfo> container_of_endpoint(const json::value& containers,
                                                   const std::string& endpoint_id);
// The aliases of `endpoint_id` in a /containers/ID/json reply.
std::vector<std::string> endpoint_aliases(const json::value& inspect, const std::string& endpoint_id);
// What swarmnetd is told about the endpoint of `c`.
api::EndpointUpdate endpoint_names(const ContainerInfo& c);

class DockerEndpointNamer : public EndpointNamer {
 public:
  DockerEndpointNamer(std::string docker_socket, DaemonApi& daemon);
  ~DockerEndpointNamer() override;
  void joined(const std::string& network_id, const std::string& endpoint_id) override;

 private:
  void run();
  struct Pending {
    std::string network_id;  // swarmnet's
    std::string endpoint_id;
    std::chrono::steady_clock::time_point deadline;
  };
  ApiClient docker_;
  DaemonApi& daemon_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace swarmnet::docker
