#!/usr/bin/env bash
# No lost update at 10 hosts: integration/test_cluster_writes.sh
# with HOSTS (default 10) real daemons in namespaces: WRITES (default 1,000)
# service creations issued from every host at once, as fast as their APIs take
# them, then their removal; prints, for each, the seconds from the last write
# until every host holds all of them (goal GOAL_S, default 3 s), and the hosts'
# gossip counters (streams of broadcasts, drops, full syncs).
# Root; build first. Env: HOSTS, WRITES, GOAL_S, SWARMNET_BIN_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_needs jq
bench_needs_cluster
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
HOSTS="${HOSTS:-10}" GOAL_S="${GOAL_S:-3}" SWARMNET_IT_TIMEOUT="${SWARMNET_IT_TIMEOUT:-600}" \
  bash "$(dirname "${BASH_SOURCE[0]}")/../integration/test_cluster_writes.sh"
