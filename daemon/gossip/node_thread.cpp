#include "daemon/gossip/node_thread.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace swarmnet::gossip {

NodeThread::NodeThread(Config config, std::string id, std::string name, Address bind, Keyring& keyring,
                       Delegate& delegate, boost::asio::io_context* shared_io)
    : own_io_(shared_io ? nullptr : std::make_unique<boost::asio::io_context>()),
      node_(std::make_unique<Node>(shared_io ? *shared_io : *own_io_, config, std::move(id), std::move(name),
                                   bind, keyring, delegate)) {}

NodeThread::~NodeThread() {
  stop();
  // The node goes before its io_context: what is still queued there is
  // dropped with it, never run.
  node_.reset();
}

void NodeThread::start() {
  node_->start();
  if (!own_io_) return;
  work_.emplace(own_io_->get_executor());
  thread_ = std::thread([this] {
    for (;;) {
      try {
        own_io_->run();
        return;
      } catch (const std::exception& e) {
        // A handler that throws must not end gossip for good.
        spdlog::error("gossip: {}", e.what());
      }
    }
  });
}

void NodeThread::stop() {
  if (!thread_.joinable()) {
    node_->stop();
    return;
  }
  // On the node's own thread, so nothing of it runs meanwhile.
  boost::asio::post(*own_io_, [this] {
    node_->stop();
    own_io_->stop();
  });
  thread_.join();
  work_.reset();
}

}  // namespace swarmnet::gossip
