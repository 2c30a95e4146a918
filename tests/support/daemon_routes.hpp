// swarmnetd's whole route table as main.cpp builds it (add_all_routes), over
// a store in a temporary directory and a fake data plane: for the tests that
// read the routes themselves (the API document, the metrics labels).
#pragma once

#include "daemon/api_routes.hpp"
#include "daemon/controller.hpp"
#include "daemon/events.hpp"
#include "daemon/services.hpp"
#include "daemon/store.hpp"
#include "fake_dataplane.hpp"
#include "temp_dir.hpp"

namespace swarmnet::testing {

struct DaemonRoutes {
  TempDir dir;
  FakeDataplane dataplane;
  daemon::Store store{dir.path()};
  daemon::Controller controller{store, dataplane, "test"};
  daemon::Services services{store, controller};
  daemon::EventBus events;
  daemon::Router router;
  DaemonRoutes() {
    daemon::add_all_routes(router, daemon::ApiParts{.controller = controller,
                                                    .store = store,
                                                    .services = services,
                                                    .events = &events});
  }
};

}  // namespace swarmnet::testing
