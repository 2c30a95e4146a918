// CNI commands that are the same for both plugins (swarmnet and
// swarmnet-ipam): one request to swarmnetd each, no kernel work.
#pragma once

#include "plugin/cni/attachment.hpp"
#include "plugin/cni/skel.hpp"

namespace swarmnet::cni {

// GC: swarmnetd releases every attachment of the network on this host that
// is not in cni.dev/valid-attachments.
void cmd_gc(const Environment& env, const NetConf& conf);
// STATUS: error 50 while swarmnetd cannot be reached.
void cmd_status(const Environment& env, const NetConf& conf);

}  // namespace swarmnet::cni
