// Forgets the UDP flows of backends that left a VIP (the balancers of lb/)
// and of tasks that the DNAT of a published port no longer sends to
// straight (the routing mesh's shortcut, daemon/ingress/mesh_kernel.cpp),
// off the path of the change (lb/conntrack_netlink.hpp says why they must
// go).
//
// Finding them means a dump, and the kernel walks its whole conntrack
// table for it: about 10 ms here, against tens of microseconds for the
// balancer's change. So a change only queues what left; a thread does the
// dump and the deletes 200 ms later, and the changes of those 200 ms share
// one dump (under steady churn at most one per 200 ms: 5% of a core; at
// 50 ms the dumps, competing for the CPU, lengthened the changes' p99 by
// 1.5 ms in bench/change_cost). The health check's seconds dwarf the wait. A pinned client's next datagram after that picks a backend
// the VIP still has (or what the port's DNAT picks now).
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common/ipv4.hpp"
#include "lb/conntrack_netlink.hpp"

namespace swarmnet::lb {

class StaleFlows {
 public:
  // Its socket is in the calling thread's network namespace. Throws
  // Error(unavailable) if it cannot be opened.
  StaleFlows();
  // Finishes what is queued, then stops.
  ~StaleFlows();
  StaleFlows(const StaleFlows&) = delete;
  StaleFlows& operator=(const StaleFlows&) = delete;

  // Queues the flows `vip` had sent to `backends`, which left it.
  void forget(Ipv4Address vip, const std::vector<Ipv4Address>& backends);
  // Queues the flows that this namespace's DNAT of `port` had sent straight
  // to `tasks` (sorted), which it no longer does.
  void forget(conntrack::PublishedPort port, const std::vector<Ipv4Address>& tasks);

 private:
  void run();

  conntrack::ConntrackSocket socket_;
  std::mutex mutex_;
  std::condition_variable wake_;
  conntrack::Left pending_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace swarmnet::lb
