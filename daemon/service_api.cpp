#include "daemon/service_api.hpp"

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;

namespace {

template <class T>
T decode(const std::string& body, const char* what) {
  return json::value_to<T>(json_fields::parse(body, what));
}

template <class T>
json::value encode_list(const std::vector<T>& items) {
  json::array a;
  for (const auto& i : items) a.push_back(json::value_from(i));
  return a;
}

}  // namespace

void add_service_routes(Router& router, Services& services, LoadBalancing* lb) {
  using R = const ApiRequest&;
  router.add("GET", "/v1/services", "service", [&services](R) { return HttpReply{200, encode_list(services.list())}; });
  router.add("POST", "/v1/services", "service", [&services](R r) {
    return HttpReply{201, json::value_from(services.create(decode<api::ServiceCreate>(r.body, "service")))};
  });
  router.add("GET", "/v1/services/NAME", "service", [&services](R r) {
    return HttpReply{200, json::value_from(services.inspect(r.params[0]))};
  });
  router.add("PATCH", "/v1/services/NAME", "service",
             [&services](R r) {
               return HttpReply{200, json::value_from(services.update(
                                         r.params[0], decode<api::ServiceUpdate>(r.body, "service update")))};
             });
  router.add("DELETE", "/v1/services/NAME", "service", [&services](R r) {
    services.remove(r.params[0]);
    return HttpReply{204, nullptr};
  });
  // "-" detaches: the endpoint becomes a task of no service.
  router.add("POST", "/v1/services/NAME/attach", "service_attach", [&services](R r) {
    const std::string name = r.params[0] == "-" ? "" : r.params[0];
    return HttpReply{200, json::value_from(services.attach(name, decode<api::ServiceAttach>(r.body, "attach")))};
  });
  router.add("GET", "/v1/lb/check", "lb", [lb](R) {
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
  });
}

}  // namespace swarmnet::daemon
