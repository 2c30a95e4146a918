#include "daemon/ingress/mesh_kernel.hpp"

#include <netinet/in.h>

#include "common/error.hpp"
#include "common/log.hpp"
#include "lb/stale_flows.hpp"

namespace swarmnet::daemon {

namespace {

class LinuxMeshKernel final : public MeshKernel {
 public:
  LinuxMeshKernel() {
    try {
      stale_flows_ = std::make_unique<lb::StaleFlows>();  // in the host's namespace, as its rules
    } catch (const Error& e) {
      spdlog::warn("routing mesh: {}; UDP flows the host sent straight to a task stay on it until idle", e.what());
    }
  }
  void build_sandbox(const IngressSandboxConfig& config) override {
    sandbox_ = std::make_unique<IngressSandbox>(config);
  }
  bool has_sandbox() const override { return sandbox_ != nullptr; }
  void sync_peers(const std::map<Ipv4Address, std::string>& sandboxes,
                  const std::vector<Ipv4Address>& members) override {
    sandbox().sync_peers(sandboxes, members);
  }
  void set_route(Ipv4Address task, std::optional<Ipv4Address> via) override { sandbox().set_route(task, via); }
  void remove_route(Ipv4Address task) override { sandbox().remove_route(task); }
  lb::Balancer& balancer() override { return sandbox().balancer(); }
  void set_hairpin(const std::set<Ipv4Address>& tasks) override { sandbox().set_hairpin(tasks); }
  void publish(const std::string& service_id, Ipv4Address vip, const std::vector<kernel::PublishedPort>& ports,
               const kernel::Spread& spread) override {
    host_rules_.replace(service_id, vip, ports, spread);
  }
  void unpublish(const std::string& service_id) override { host_rules_.remove(service_id); }
  std::set<std::string> published_ids() override { return host_rules_.ids(); }
  void forget_udp_flows(uint16_t port, const std::vector<Ipv4Address>& tasks) override {
    if (stale_flows_) stale_flows_->forget(lb::conntrack::PublishedPort{IPPROTO_UDP, port}, tasks);
  }

 private:
  IngressSandbox& sandbox() {
    if (!sandbox_) throw Error(Errc::internal, "the ingress sandbox is not built");
    return *sandbox_;
  }
  std::unique_ptr<IngressSandbox> sandbox_;
  kernel::PublishedPorts host_rules_{kIngressPortOwner};
  std::unique_ptr<lb::StaleFlows> stale_flows_;  // null if conntrack netlink is unavailable
};

}  // namespace

std::unique_ptr<MeshKernel> make_linux_mesh_kernel() { return std::make_unique<LinuxMeshKernel>(); }

}  // namespace swarmnet::daemon
