#include "plugin/docker/container_names.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/log.hpp"

namespace swarmnet::docker {

namespace {
constexpr auto kPollInterval = std::chrono::milliseconds(250);
// A container that takes longer than this to start keeps an unnamed endpoint.
constexpr auto kGiveUpAfter = std::chrono::seconds(120);
}  // namespace

namespace {

// The entry of `networks` (a container's NetworkSettings.Networks) whose
// EndpointID is `endpoint_id`.
const json::object* network_entry(const json::value* networks, const std::string& endpoint_id) {
  if (!networks || !networks->is_object()) return nullptr;
  for (const auto& [name, net] : networks->get_object()) {
    const json::value* eid = net.is_object() ? net.get_object().if_contains("EndpointID") : nullptr;
    if (eid && eid->is_string() && eid->get_string() == endpoint_id) return &net.get_object();
  }
  return nullptr;
}

const json::value* networks_of(const json::object& container) {
  const json::value* settings = container.if_contains("NetworkSettings");
  return settings && settings->is_object() ? settings->get_object().if_contains("Networks") : nullptr;
}

std::vector<std::string> aliases_in(const json::object& entry) {
  std::vector<std::string> out;
  if (const json::value* aliases = entry.if_contains("Aliases"); aliases && aliases->is_array()) {
    for (const auto& a : aliases->get_array()) {
      if (a.is_string()) out.emplace_back(a.get_string());
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> endpoint_aliases(const json::value& inspect, const std::string& endpoint_id) {
  const json::object* o = inspect.if_object();
  const json::object* entry = o ? network_entry(networks_of(*o), endpoint_id) : nullptr;
  return entry ? aliases_in(*entry) : std::vector<std::string>{};
}

std::optional<ContainerInfo> container_of_endpoint(const json::value& containers,
                                                   const std::string& endpoint_id) {
  const json::array* list = containers.if_array();
  if (!list) return std::nullopt;
  for (const auto& c : *list) {
    const json::object* o = c.if_object();
    if (!o) continue;
    const json::object* ours = network_entry(networks_of(*o), endpoint_id);
    if (!ours) continue;
    ContainerInfo info;
    info.aliases = aliases_in(*ours);
    if (const json::value* id = o->if_contains("Id"); id && id->is_string()) info.id = id->get_string();
    if (const json::value* names = o->if_contains("Names"); names && names->is_array()) {
      for (const auto& n : names->get_array()) {
        // "/web" is the container's own name; "/other/alias" a legacy link.
        if (n.is_string() && n.get_string().find('/', 1) == json::string::npos) {
          info.name = std::string(n.get_string()).substr(n.get_string().starts_with("/") ? 1 : 0);
          break;
        }
      }
    }
    if (const json::value* labels = o->if_contains("Labels"); labels && labels->is_object()) {
      for (const auto& [k, v] : labels->get_object()) {
        if (v.is_string()) info.labels.emplace(std::string(k), std::string(v.get_string()));
      }
    }
    return info;
  }
  return std::nullopt;
}

api::EndpointUpdate endpoint_names(const ContainerInfo& c) {
  api::EndpointUpdate u;
  u.name = c.name;
  // Docker's own DNS answers the short id too (dockerd 20.10 lists it among
  // the aliases itself; newer ones do not).
  std::vector<std::string> aliases;
  if (!c.id.empty()) aliases.push_back(c.id.substr(0, 12));
  for (const auto& a : c.aliases) {
    if (a != c.name && std::find(aliases.begin(), aliases.end(), a) == aliases.end()) aliases.push_back(a);
  }
  if (!aliases.empty()) u.aliases = std::move(aliases);
  auto it = c.labels.find(kServiceLabel);
  u.service = it != c.labels.end() ? it->second : "";
  return u;
}

DockerEndpointNamer::DockerEndpointNamer(std::string docker_socket, DaemonApi& daemon)
    : docker_(std::move(docker_socket), std::chrono::seconds(10)),
      daemon_(daemon),
      worker_([this] { run(); }) {}

DockerEndpointNamer::~DockerEndpointNamer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

void DockerEndpointNamer::joined(const std::string& network_id, const std::string& endpoint_id) {
  {
    std::lock_guard lock(mutex_);
    pending_.push_back({network_id, endpoint_id, std::chrono::steady_clock::now() + kGiveUpAfter});
  }
  wake_.notify_all();
}

void DockerEndpointNamer::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (pending_.empty()) {
      wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      continue;
    }
    std::deque<Pending> work;
    work.swap(pending_);
    lock.unlock();
    json::value containers;
    try {
      ApiResponse r = docker_.request("GET", "/containers/json?all=1");
      if (r.status == 200) containers = std::move(r.body);
    } catch (const std::exception& e) {
      spdlog::debug("dockerd's API: {}", e.what());
    }
    std::deque<Pending> retry;
    for (auto& p : work) {
      auto c = container_of_endpoint(containers, p.endpoint_id);
      if (c && c->aliases.empty()) {
        // dockerd 20.10's list leaves Aliases out (null); its inspect has
        // them. The container is listed with the endpoint, so its start (or
        // connect) is over and dockerd no longer holds its lock.
        try {
          ApiResponse r = docker_.request("GET", "/containers/" + url_segment(c->id) + "/json");
          if (r.status == 200) c->aliases = endpoint_aliases(r.body, p.endpoint_id);
        } catch (const std::exception& e) {
          spdlog::debug("dockerd's API, inspect {}: {}", c->id.substr(0, 12), e.what());
        }
      }
      if (!c) {
        if (std::chrono::steady_clock::now() < p.deadline) {
          retry.push_back(std::move(p));
        } else {
          spdlog::warn("endpoint {}: no container found in dockerd's API: it keeps no DNS name",
                       p.endpoint_id.substr(0, 12));
        }
        continue;
      }
      try {
        json::value body = json::value_from(endpoint_names(*c));
        daemon_.call("PATCH", "/v1/networks/" + url_segment(p.network_id) + "/endpoints/" +
                                  url_segment(p.endpoint_id) + "/" + kEndpointIfname,
                     &body);
        spdlog::info("endpoint {}: container {} ({}){}", p.endpoint_id.substr(0, 12), c->name,
                     c->id.substr(0, 12),
                     c->labels.count(kServiceLabel) ? ", service " + c->labels.at(kServiceLabel) : "");
      } catch (const Error& e) {
        // Gone already (a short-lived container) or swarmnetd restarting.
        if (e.code() == Errc::unavailable && std::chrono::steady_clock::now() < p.deadline) {
          retry.push_back(std::move(p));
        } else {
          spdlog::warn("endpoint {}: naming it {}: {}", p.endpoint_id.substr(0, 12), c->name,
                       e.what());
        }
      }
    }
    lock.lock();
    for (auto& p : retry) pending_.push_back(std::move(p));
    if (!retry.empty()) wake_.wait_for(lock, kPollInterval, [&] { return stopping_; });
  }
}

}  // namespace swarmnet::docker
