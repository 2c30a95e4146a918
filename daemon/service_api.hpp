// The API routes of services and of the load balancer's check (docs/api.md).
#pragma once

#include "daemon/api_routes.hpp"
#include "daemon/load_balancing.hpp"
#include "daemon/services.hpp"

namespace swarmnet::daemon {

// `lb` may be null (a daemon without a balancer): /v1/lb/check is then 503.
void add_service_routes(Router& router, Services& services, LoadBalancing* lb);

}  // namespace swarmnet::daemon
