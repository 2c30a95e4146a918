#!/usr/bin/env bash
# One task change across a cluster: HOSTS (10) real swarmnetd processes in
# network namespaces (integration/lib/cluster.sh's cluster_up), then
# `change_cost --sockets` against them: SERVICES (1,000) services made on
# host 1, TASKS (1000,10000) tasks spread round-robin over the hosts, and once
# every host lists them all, SAMPLES (50) times one task added and removed on
# the next host in turn, timed to its host's reply and until the last host's
# endpoint event (the event feed is told after the host's balancer and DNS
# have the change), p50/p99 beside the gossip interval the daemons run with.
# Arguments after the script's name go to change_cost (e.g. --ingress).
#
# Root; build first. Run under the integration lock:
#   flock /tmp/swarmnet-integration.lock nice -n 10 bench/cluster_change.sh
# Everything it makes is removed on exit, also on failure.
# Env: HOSTS, SERVICES, TASKS, SAMPLES, GOSSIP_INTERVAL_MS (200, the daemon's
#      default; passed to every daemon), CLUSTER_LOG_LEVEL (warn),
#      CLUSTER_DAEMON_ARGS (more swarmnetd flags), SWARMNET_BIN_DIR (build/bin),
#      TIMEOUT (s, 3600: the whole run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_needs jq
need_bin swarmnetd >/dev/null
need_bin swarmnetctl >/dev/null
CHANGE_COST=$(need_bin change_cost)

N="${HOSTS:-10}"
GOSSIP_INTERVAL_MS="${GOSSIP_INTERVAL_MS:-200}"
export CLUSTER_LOG_LEVEL="${CLUSTER_LOG_LEVEL:-warn}"
export CLUSTER_DAEMON_ARGS="--gossip-interval-ms $GOSSIP_INTERVAL_MS ${CLUSTER_DAEMON_ARGS:-}"
watchdog "${TIMEOUT:-3600}"

say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
cluster_up "$N"
sockets=$(for ((i = 1; i <= N; i++)); do host_sock "$i"; done | paste -sd,)
say "change_cost against the $N daemons"
timeout "$((${TIMEOUT:-3600} - 300))" "$CHANGE_COST" --sockets "$sockets" --gossip-interval-ms "$GOSSIP_INTERVAL_MS" \
  --services "${SERVICES:-1000}" --tasks "${TASKS:-1000,10000}" --samples "${SAMPLES:-50}" "$@"
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
