// A gossip Node on a thread of its own, so that probes are answered and
// sent on time whatever the daemon's thread is doing (a slow netlink or nft
// transaction, an fdatasync). The Node's callbacks (its Delegate's, and
// join's and leave's done) run on this thread with the Node's mutex held:
// a Delegate that has work to do posts it to its own thread and returns.
// The Node's public methods may be called from any thread (node.hpp).
//
// Given an io_context, the node runs on it instead, with no thread of its
// own (how gossip ran before it had one: the unit tests' control). Such a
// node's pending handlers refer to it: keep it until that io_context stops.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <thread>

#include "daemon/gossip/node.hpp"

namespace swarmnet::gossip {

class NodeThread {
 public:
  NodeThread(Config config, std::string id, std::string name, Address bind, Keyring& keyring,
             Delegate& delegate, boost::asio::io_context* shared_io = nullptr);
  ~NodeThread();  // stop()
  NodeThread(const NodeThread&) = delete;
  NodeThread& operator=(const NodeThread&) = delete;

  // Binds the node's sockets (Error(unavailable) if it cannot), then starts
  // the thread.
  void start();
  // Stops the node without a leave (to others it fell silent) and joins the
  // thread. Not from the node's own thread (a callback).
  void stop();
  Node& node() { return *node_; }
  const Node& node() const { return *node_; }

 private:
  std::unique_ptr<boost::asio::io_context> own_io_;  // null: runs on a shared one
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::unique_ptr<Node> node_;
  std::thread thread_;
};

}  // namespace swarmnet::gossip
