// The API routes of services and load balancing (docs/api.md):
//   GET/POST /v1/services, GET/DELETE /v1/services/NAME,
//   POST /v1/services/NAME/attach, POST /v1/services/-/detach,
//   GET /v1/lb/check
#pragma once

#include "daemon/api_server.hpp"
#include "daemon/load_balancing.hpp"
#include "daemon/services.hpp"

namespace swarmnet::daemon {

// `lb` may be null (a daemon without a balancer): /v1/lb/check is then 503.
RouteHandler service_routes(Services& services, LoadBalancing* lb);

}  // namespace swarmnet::daemon
