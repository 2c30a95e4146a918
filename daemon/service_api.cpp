#include "daemon/service_api.hpp"

#include "common/error.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;

RouteHandler service_routes(Services& services, LoadBalancing* lb) {
  return [&services, lb](const std::string& method, const std::vector<std::string>& p,
                         const std::string& body) -> std::optional<HttpReply> {
    const size_t n = p.size();
    if (n < 2 || p[0] != "v1") return std::nullopt;
    if (p[1] == "services") {
      if (n == 2 && method == "GET") return HttpReply{200, services.list()};
      if (n == 2 && method == "POST") return HttpReply{201, services.create(body)};
      if (n == 3 && method == "GET") return HttpReply{200, services.inspect(p[2])};
      if (n == 3 && method == "PATCH") return HttpReply{200, services.update(p[2], body)};
      if (n == 3 && method == "DELETE") {
        services.remove(p[2]);
        return HttpReply{204, nullptr};
      }
      // "-" detaches: the endpoint becomes a task of no service.
      if (n == 4 && p[3] == "attach" && method == "POST")
        return HttpReply{200, services.attach(p[2] == "-" ? "" : p[2], body)};
      return std::nullopt;
    }
    if (n == 3 && p[1] == "lb" && p[2] == "check" && method == "GET") {
      if (!lb) throw Error(Errc::unavailable, "this daemon runs no load balancer (--lb-backend none)");
      const std::string diff = lb->check();
      json::array lines;
      size_t start = 0;
      while (start < diff.size()) {
        size_t end = diff.find('\n', start);
        if (end == std::string::npos) end = diff.size();
        if (end > start) lines.emplace_back(diff.substr(start, end - start));
        start = end + 1;
      }
      return HttpReply{200, json::object{{"backend", std::string(lb->backend_name())},
                                         {"vips", lb->intended().size()},
                                         {"differences", std::move(lines)}}};
    }
    return std::nullopt;
  };
}

}  // namespace swarmnet::daemon
