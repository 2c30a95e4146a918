// `swarmnetctl doctor`: checks this host for what swarmnet needs. Every
// check tries the real thing (the kernel interface in a throwaway network
// namespace, the plugin binary, the driver's socket, a peer's port) rather
// than reading configuration, and none changes the host: what is created
// lives in a namespace of its own that is gone when the check returns.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "ctl/doctor_report.hpp"

namespace swarmnet::doctor {

struct Options {
  std::string daemon_socket;                // swarmnetd's API
  std::vector<std::string> cni_bin_dirs;    // searched in order, as containerd does
  std::string cni_conf_dir;
  std::string docker_socket;                // dockerd's own socket: is there a dockerd?
  std::string docker_plugin_socket;         // swarmnet-docker's
  std::chrono::milliseconds timeout{2000};  // per probe that waits on someone else
};

// Kernel features, each tried in one throwaway network namespace: VXLAN,
// bridge, veth, nftables (the NAT and hashing swarmnet uses), br_netfilter,
// and the optional IPVS and ESP (AES-GCM).
std::vector<Check> check_kernel();

// The CNI configuration directory and its files, the plugins (run with
// CNI_COMMAND=VERSION).
std::vector<Check> check_cni(const Options& options);

// swarmnet-docker's socket answers Plugin.Activate, when there is a dockerd.
std::vector<Check> check_docker(const Options& options);

// swarmnetd itself, then (when it is up) the underlay's MTU against the
// networks', and every peer: alive, its gossip port reachable, VXLAN from it
// accepted, and our gossip and VXLAN ports closed to containers. When it is
// down: says so, and checks the underlay's MTU from the default route.
std::vector<Check> check_daemon(const Options& options);

// All of the above, in that order.
std::vector<Check> run(const Options& options);

}  // namespace swarmnet::doctor
