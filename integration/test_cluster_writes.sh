#!/usr/bin/env bash
# No lost update, on real daemons: HOSTS (default 3)
# namespace hosts; WRITES (default 1,000) service creations in total, issued
# from every host at once, each host's share one after the other as fast as
# its API takes them (swarmnetctl, dnsrr services on one network: one record
# each). Measured: when every host holds every one of them, from the moment
# the last write returned; then the same for their removal. Goal: within
# GOAL_S seconds (default 2; bench/cluster_writes.sh runs it with 10 hosts
# and 3 s). Each host's list must then equal the set written, exactly.
#
# Before the per-peer broadcast queue: the creations took 10.3 s to agree
# and the removals 25.1 s (a lost broadcast waited for the 30 s push/pull).
# Env: HOSTS, WRITES, GOAL_S, SWARMNET_IT_TIMEOUT (watchdog, default 300 s).
set -euo pipefail
case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq missing (scripts/install-deps)"
watchdog "${SWARMNET_IT_TIMEOUT:-300}"

HOSTS="${HOSTS:-3}"
WRITES="${WRITES:-1000}"
GOAL_S="${GOAL_S:-2}"
export CLUSTER_LOG_LEVEL="${CLUSTER_LOG_LEVEL:-info}"

cluster_up "$HOSTS"
hctl 1 network create wn --subnet 10.246.0.0/16 >/dev/null
for ((i = 2; i <= HOSTS; i++)); do wait_for 10 hctl "$i" network inspect wn || die "host $i lacks network wn"; done
WORK="$CLUSTER_DIR/writes"
mkdir -p "$WORK"

# The names host I writes: its share of WRITES.
names_of() {
  local i="$1" k share=$((WRITES / HOSTS + ($1 <= WRITES % HOSTS ? 1 : 0)))
  for ((k = 0; k < share; k++)); do echo "h$i-s$k"; done
}
for ((i = 1; i <= HOSTS; i++)); do names_of "$i"; done | sort >"$WORK/all"

# worker I create|rm: host I's share, one after the other; the time the last
# one returned goes to $WORK/end.I.
worker() {
  local i="$1" op="$2" name
  while read -r name; do
    if [[ "$op" == create ]]; then
      hctl "$i" service create "$name" --network wn --endpoint-mode dnsrr >/dev/null || { echo "create $name on host $i failed" >&2; return 1; }
    else
      hctl "$i" service rm "$name" >/dev/null || { echo "rm $name on host $i failed" >&2; return 1; }
    fi
  done < <(names_of "$i")
  echo "$EPOCHREALTIME" >"$WORK/end.$i"
}

services_of() { hctl "$1" service ls --format json | jq -r '.[].name' | sort; }
count_of() { hctl "$1" service ls --format json | jq length; }

# phase create|rm WANT: runs the workers, then polls every host until each
# holds WANT services; prints the seconds from the last write to then.
phase() {
  local op="$1" want="$2" i pids=() t_last=0 t end lag
  local t0=$EPOCHREALTIME
  for ((i = 1; i <= HOSTS; i++)); do worker "$i" "$op" & pids+=($!); done
  for ((i = 1; i <= HOSTS; i++)); do wait "${pids[i - 1]}" || die "the $op worker of host $i failed"; done
  for ((i = 1; i <= HOSTS; i++)); do
    t=$(cat "$WORK/end.$i")
    t_last=$(awk -v a="$t" -v b="$t_last" 'BEGIN {print (a > b) ? a : b}')
  done
  end=$((SECONDS + 60))
  while ((SECONDS < end)); do
    local all=1
    for ((i = 1; i <= HOSTS; i++)); do
      [[ "$(count_of "$i")" == "$want" ]] || { all=0; break; }
    done
    ((all)) && break
    sleep 0.05
  done
  lag=$(awk -v a="$t_last" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}')
  LAG="$lag"
  WRITE_S=$(awk -v a="$t0" -v b="$t_last" 'BEGIN {printf "%.1f", b - a}')
}

say "$WRITES service creations from $HOSTS hosts at once (load $(cut -d' ' -f1-3 /proc/loadavg))"
phase create "$WRITES"
info "written in $WRITE_S s; every host held all of them $LAG s after the last write returned"
check "every host holds all $WRITES creations within $GOAL_S s of the last write ($LAG s)" \
  awk -v l="$LAG" -v g="$GOAL_S" 'BEGIN {exit !(l <= g)}'
for ((i = 1; i <= HOSTS; i++)); do
  check "host $i lists exactly the $WRITES services written" diff -q "$WORK/all" <(services_of "$i")
done

say "their removal, from the same hosts at once (load $(cut -d' ' -f1-3 /proc/loadavg))"
phase rm 0
info "removed in $WRITE_S s; no host listed any $LAG s after the last removal returned"
check "every host saw all $WRITES removals within $GOAL_S s of the last one ($LAG s)" \
  awk -v l="$LAG" -v g="$GOAL_S" 'BEGIN {exit !(l <= g)}'
for ((i = 1; i <= HOSTS; i++)); do
  s=$(hctl "$i" cluster status 2>/dev/null | jq -c ".stats // {}" || true)
  info "host $i gossip stats: $s"
done

if (($(failures) > 0)); then
  echo "test_cluster_writes: $(failures) check(s) FAILED"
  exit 1
fi
echo "test_cluster_writes: all checks passed"
