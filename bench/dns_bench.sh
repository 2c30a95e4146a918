#!/usr/bin/env bash
# Service DNS throughput and latency, one run, same machine, same path:
#   swarmnet  a 1-host swarmnet cluster (integration/lib/cluster.sh), one
#             network, NAMES endpoints with a name each created through the
#             daemon's API (attach=false), and a client container attached by
#             the real CNI plugin; dnsperf inside the client asks the network's
#             gateway, port 53 (swarmnetd's DNS, the per-container rate limit off)
#   dnsmasq   the same names and addresses in an --addn-hosts file, listening
#             on the same gateway address in the same host namespace (port
#             5353), the same dnsperf run from the same container
# Prints QPS and mean latency of both and the ratio (goal: at least 1.5x
# dnsmasq's QPS with a lower mean latency, DESIGN.md "Figures measured here"),
# and each server's CPU time per query. On a small machine one dnsperf
# thread, not the server, sets that pace (both servers idle part of the
# time), so the same rounds are run again with each server in turn held to
# CPU_CAP percent of one core (a cpu cgroup): then the server sets the pace,
# and the QPS ratio is the servers' own.
#
# Memory, each next to dnsmasq's RSS growth for as many names in a hosts
# file, with the ratio and the goal:
#   the name table   build/bin/dns_names fills one in-process with
#                    MEMORY_NAMES names as the daemon feeds it: bytes a name
#                    (goal: at most 3x dnsmasq's)
#   swarmnetd        RSS growth of the whole daemon for DAEMON_NAMES named
#                    endpoints made through its API (the NAMES above, then
#                    more): bytes an endpoint (goal: at most 1 kB)
#
# Root; build first (swarmnetd swarmnetctl swarmnet dns_names). Traffic stays
# inside namespaces this script makes; they, the daemons and the files go on
# exit, also on failure or Ctrl-C.
#
# Env: NAMES (default 1000), DURATION (dnsperf -l, default 10),
#      OUTSTANDING (dnsperf -q, default 200), ROUNDS (default 1: each server
#      measured ROUNDS times, alternating; the median is reported),
#      CPU_CAP (percent of one core for the capped rounds, default 25; 0
#      skips them),
#      MEMORY_NAMES (default 100000; 0 skips the name table's part),
#      DAEMON_NAMES (default 20000; 0 skips the daemon's part; at least NAMES),
#      SWARMNET_BIN_DIR (default build/bin).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_needs dnsperf dnsmasq jq curl
bench_needs_cluster

NAMES="${NAMES:-1000}"
DURATION="${DURATION:-10}"
OUTSTANDING="${OUTSTANDING:-200}"
ROUNDS="${ROUNDS:-1}"
MEMORY_NAMES="${MEMORY_NAMES:-100000}"
DAEMON_NAMES="${DAEMON_NAMES:-20000}"
((DAEMON_NAMES == 0 || DAEMON_NAMES >= NAMES)) || die "DAEMON_NAMES ($DAEMON_NAMES) is below NAMES ($NAMES)"
CPU_CAP="${CPU_CAP:-25}"
DNSMASQ_PORT=5353
SUBNET=10.248.0.0/16
GW=10.248.0.1
export CLUSTER_LOG_LEVEL="${CLUSTER_LOG_LEVEL:-warn}"
export CLUSTER_DAEMON_ARGS="${CLUSTER_DAEMON_ARGS:-} --dns-rate-limit 0"
watchdog $((900 + ROUNDS * 2 * (DURATION + 10) + DAEMON_NAMES / 20))

# dnsmasq reads its hosts file after dropping to its own user: a world-readable directory.
BENCH_DIR=$(mktemp -d /tmp/swarmnet-dns-bench.XXXXXX)
chmod 755 "$BENCH_DIR"
on_exit "rm -rf '$BENCH_DIR'"
declare -a DNSMASQ_PIDS=()
bench_cleanup() {
  local p
  for p in "${DNSMASQ_PIDS[@]}"; do kill_pid "$p" dnsmasq; done
  DNSMASQ_PIDS=()
}
on_exit bench_cleanup

mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# dnsmasq_start NETNS ADDRESS HOSTS_FILE: prints its pid.
dnsmasq_start() {
  local ns="$1" address="$2" hosts="$3"
  ip netns exec "$ns" dnsmasq --no-daemon --no-resolv --no-hosts --conf-file=/dev/null --pid-file= \
    --addn-hosts="$hosts" --bind-interfaces --listen-address="$address" -p "$DNSMASQ_PORT" \
    >>"$BENCH_DIR/dnsmasq.log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  echo $!
}

# answers NETNS SERVER PORT NAME: one A query with dnsperf, answered NOERROR.
answers() {
  local ns="$1" server="$2" port="$3" name="$4"
  echo "$name A" >"$BENCH_DIR/one.query"
  ip netns exec "$ns" dnsperf -s "$server" -p "$port" -d "$BENCH_DIR/one.query" -n 1 -t 1 2>/dev/null |
    grep -q 'NOERROR 1 '
}

# cpu_ticks PID: the process's user + system time, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_HZ=$(getconf CLK_TCK)

# perf NAME PORT PID: one dnsperf run from the client container against the
# server process PID; sets QPS, LAT_MS, LOST, and US_PER_QUERY: the server
# process's CPU time (user + system, its own syscalls and the kernel's work
# done in them) per query answered. dnsperf, not the server, may set the
# pace (both servers then idle part of the time); the CPU a query costs the
# server says how far each could go.
perf() {
  local label="$1" port="$2" pid="$3" out="$BENCH_DIR/dnsperf.$1.$RANDOM" ticks_before ticks
  ticks_before=$(cpu_ticks "$pid")
  ip netns exec "$(container_ns client)" dnsperf -s "$GW" -p "$port" -d "$BENCH_DIR/queries" \
    -l "$DURATION" -q "$OUTSTANDING" -c 1 -T 1 >"$out" 2>&1 || { cat "$out" >&2; die "dnsperf against $label failed"; }
  QPS=$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' "$out" | awk '{printf "%.0f", $1}')
  LAT_MS=$(sed -n 's/.*Average Latency (s): *\([0-9.]*\).*/\1/p' "$out" | awk '{printf "%.3f", $1 * 1000}')
  LOST=$(sed -n 's/.*Queries lost: *\([0-9]*\).*/\1/p' "$out")
  ticks=$(($(cpu_ticks "$pid") - ticks_before))
  local completed
  completed=$(sed -n 's/.*Queries completed: *\([0-9]*\).*/\1/p' "$out")
  US_PER_QUERY=$(awk -v t="$ticks" -v hz="$TICK_HZ" -v n="${completed:-0}" 'BEGIN {printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0)}')
  local noerror
  noerror=$(sed -n 's/.*NOERROR \([0-9]*\) .*/\1/p' "$out")
  info "$label: $QPS qps, $LAT_MS ms mean, $LOST lost, ${noerror:-0} NOERROR; server CPU $US_PER_QUERY us a query"
  [[ -n "$QPS" && -n "$LAT_MS" ]] || { cat "$out" >&2; die "no figures from dnsperf against $label"; }
}

# create_endpoints FROM TO: endpoints nFROM..nTO with a name each, through
# the API (bench/lib.sh), then checks the API lists all of them.
create_endpoints() {
  local from="$1" to="$2"
  bench_make_named_endpoints "$SOCK" "$BENCH_DIR" "$from" "$to"
  local count
  count=$(curl -sf --unix-socket "$SOCK" http://swarmnetd/v1/networks/bench/endpoints |
    jq '[.[] | select(.name != null and (.name | startswith("n")))] | length')
  ((count == to)) || die "expected $to named endpoints in the API, got $count"
}

# dnsmasq_rss_growth N: sets DM_KIB, dnsmasq's RSS growth for N names in a
# hosts file (against an empty one), on the host namespace's loopback.
dnsmasq_rss_growth() {
  local n="$1" i hosts pid rss=()
  : >"$BENCH_DIR/empty.hosts"
  for ((i = 1; i <= n; i++)); do
    echo "10.$((i >> 16 & 255)).$((i >> 8 & 255)).$((i & 255)) c$i"
  done >"$BENCH_DIR/many.hosts"
  for hosts in empty.hosts many.hosts; do
    pid=$(dnsmasq_start "$HOST_NS" 127.0.0.1 "$BENCH_DIR/$hosts")
    DNSMASQ_PIDS+=("$pid")
    if [[ "$hosts" == many.hosts ]]; then
      wait_for 60 answers "$HOST_NS" 127.0.0.1 "$DNSMASQ_PORT" "c$n" || die "dnsmasq did not load $n names"
    else
      sleep 1
    fi
    rss+=("$(bench_rss_kib "$pid")")
    bench_cleanup
  done
  DM_KIB=$((rss[1] - rss[0]))
}

# The capped rounds' cgroup (v2 where mounted, else v1's cpu controller).
CAP_CGROUP=""
cap_setup() {
  if cgroup_v2; then
    grep -qw cpu /sys/fs/cgroup/cgroup.controllers || die "cgroup v2 without the cpu controller"
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
    CAP_CGROUP=/sys/fs/cgroup/swarmnet-dns-bench.$$
    mkdir "$CAP_CGROUP"
    echo "$((CPU_CAP * 1000)) 100000" >"$CAP_CGROUP/cpu.max"
  else
    [[ -d /sys/fs/cgroup/cpu ]] || die "no cpu cgroup controller mounted (CPU_CAP=0 skips the capped rounds)"
    CAP_CGROUP=/sys/fs/cgroup/cpu/swarmnet-dns-bench.$$
    mkdir "$CAP_CGROUP"
    echo 100000 >"$CAP_CGROUP/cpu.cfs_period_us"
    echo "$((CPU_CAP * 1000))" >"$CAP_CGROUP/cpu.cfs_quota_us"
  fi
  on_exit cap_remove
}
# The cgroup a process came from, to put it back.
cgroup_v2() { [[ -f /sys/fs/cgroup/cgroup.controllers ]]; }
cgroup_of() {
  if cgroup_v2; then
    awk -F: '$1 == "0" {print $3; exit}' "/proc/$1/cgroup"
  else
    awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3; exit}' "/proc/$1/cgroup"
  fi
}
cgroup_dir() { if cgroup_v2; then echo "/sys/fs/cgroup$1"; else echo "/sys/fs/cgroup/cpu$1"; fi; }
# capped PID CMD...: runs CMD with PID's whole process in the capped cgroup.
capped() {
  local pid="$1" home
  shift
  home=$(cgroup_dir "$(cgroup_of "$pid")")
  echo "$pid" >"$CAP_CGROUP/cgroup.procs"
  "$@"
  echo "$pid" >"$home/cgroup.procs"
}
cap_remove() {
  [[ -n "$CAP_CGROUP" && -d "$CAP_CGROUP" ]] || return 0
  local p
  # A process still inside (the run was interrupted) goes back to the root.
  for p in $(cat "$CAP_CGROUP/cgroup.procs" 2>/dev/null); do
    echo "$p" >"$(dirname "$CAP_CGROUP")/cgroup.procs" 2>/dev/null || true
  done
  rmdir "$CAP_CGROUP" 2>/dev/null || true
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

cluster_up 1
HOST_NS=$(host_ns 1)
SOCK=$(host_sock 1)
DAEMON_PID="${_CLUSTER_PIDS[1]}"
hctl 1 network create bench --subnet "$SUBNET" >/dev/null
client_ip=$(container_add 1 client bench)
info "client container $client_ip; the network's DNS at $GW"
wait_for 10 answers "$(container_ns client)" "$GW" 53 client || die "swarmnetd does not answer DNS at $GW"

say "creating $NAMES endpoints with a name each through the API"
rss_before=$(bench_rss_kib "$DAEMON_PID")
start=$SECONDS
create_endpoints 1 "$NAMES"
info "$NAMES endpoints in $((SECONDS - start)) s"
wait_for 10 answers "$(container_ns client)" "$GW" 53 "n$NAMES" || die "n$NAMES does not resolve"
rss_after=$(bench_rss_kib "$DAEMON_PID")

# The same names and addresses for dnsmasq, and the query file for both.
curl -sf --unix-socket "$SOCK" http://swarmnetd/v1/networks/bench/endpoints |
  jq -r '.[] | select(.name != null and (.name | startswith("n"))) | "\(.address | split("/")[0]) \(.name)"' \
    >"$BENCH_DIR/hosts"
[[ "$(wc -l <"$BENCH_DIR/hosts")" == "$NAMES" ]] || die "expected $NAMES names in the API, got $(wc -l <"$BENCH_DIR/hosts")"
for ((i = 1; i <= NAMES; i++)); do echo "n$i A"; done >"$BENCH_DIR/queries"

pid=$(dnsmasq_start "$HOST_NS" "$GW" "$BENCH_DIR/hosts")
DNSMASQ_PIDS+=("$pid")
wait_for 10 answers "$(container_ns client)" "$GW" "$DNSMASQ_PORT" "n$NAMES" || die "dnsmasq does not answer n$NAMES"

say "dnsperf from the client container: $NAMES names, $DURATION s, $OUTSTANDING outstanding, $ROUNDS round(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$BENCH_DIR/sw.qps"; : >"$BENCH_DIR/sw.lat"; : >"$BENCH_DIR/sw.cpu"
: >"$BENCH_DIR/dm.qps"; : >"$BENCH_DIR/dm.lat"; : >"$BENCH_DIR/dm.cpu"
for ((r = 1; r <= ROUNDS; r++)); do
  perf swarmnet 53 "$DAEMON_PID"
  echo "$QPS" >>"$BENCH_DIR/sw.qps"; echo "$LAT_MS" >>"$BENCH_DIR/sw.lat"; echo "$US_PER_QUERY" >>"$BENCH_DIR/sw.cpu"
  perf dnsmasq "$DNSMASQ_PORT" "$pid"
  echo "$QPS" >>"$BENCH_DIR/dm.qps"; echo "$LAT_MS" >>"$BENCH_DIR/dm.lat"; echo "$US_PER_QUERY" >>"$BENCH_DIR/dm.cpu"
done
if ((CPU_CAP > 0)); then
  cap_setup
  say "again, each server held to $CPU_CAP% of one core; load $(cut -d' ' -f1-3 /proc/loadavg)"
  : >"$BENCH_DIR/swc.qps"; : >"$BENCH_DIR/swc.lat"; : >"$BENCH_DIR/dmc.qps"; : >"$BENCH_DIR/dmc.lat"
  for ((r = 1; r <= ROUNDS; r++)); do
    capped "$DAEMON_PID" perf "swarmnet (capped)" 53 "$DAEMON_PID"
    echo "$QPS" >>"$BENCH_DIR/swc.qps"; echo "$LAT_MS" >>"$BENCH_DIR/swc.lat"
    capped "$pid" perf "dnsmasq (capped)" "$DNSMASQ_PORT" "$pid"
    echo "$QPS" >>"$BENCH_DIR/dmc.qps"; echo "$LAT_MS" >>"$BENCH_DIR/dmc.lat"
  done
  swc_qps=$(median <"$BENCH_DIR/swc.qps"); swc_lat=$(median <"$BENCH_DIR/swc.lat")
  dmc_qps=$(median <"$BENCH_DIR/dmc.qps"); dmc_lat=$(median <"$BENCH_DIR/dmc.lat")
fi
bench_cleanup
sw_qps=$(median <"$BENCH_DIR/sw.qps"); sw_lat=$(median <"$BENCH_DIR/sw.lat")
dm_qps=$(median <"$BENCH_DIR/dm.qps"); dm_lat=$(median <"$BENCH_DIR/dm.lat")
sw_cpu=$(median <"$BENCH_DIR/sw.cpu"); dm_cpu=$(median <"$BENCH_DIR/dm.cpu")

table_line=""
if ((MEMORY_NAMES > 0)); then
  say "the name table's memory for $MEMORY_NAMES names"
  dnsmasq_rss_growth "$MEMORY_NAMES"
  dm_bytes=$((DM_KIB * 1024 / MEMORY_NAMES))
  info "dnsmasq: RSS +$(mib "$DM_KIB") MiB for $MEMORY_NAMES names in a hosts file ($dm_bytes bytes a name)"
  "$(need_bin dns_names)" -n "$MEMORY_NAMES" --lookups 200000 --dnsmasq-bytes-per-name "$dm_bytes" >"$BENCH_DIR/names.out"
  sed 's/^/  /' "$BENCH_DIR/names.out"
  table_line=$(grep '^memory per name' "$BENCH_DIR/names.out")
fi

daemon_line=""
if ((DAEMON_NAMES > 0)); then
  say "swarmnetd's memory for $DAEMON_NAMES named endpoints"
  start=$SECONDS
  ((DAEMON_NAMES == NAMES)) || create_endpoints $((NAMES + 1)) "$DAEMON_NAMES"
  info "$((DAEMON_NAMES - NAMES)) more endpoints in $((SECONDS - start)) s"
  wait_for 10 answers "$(container_ns client)" "$GW" 53 "n$DAEMON_NAMES" || die "n$DAEMON_NAMES does not resolve"
  rss_all=$(bench_rss_kib "$DAEMON_PID")
  sw_bytes=$(((rss_all - rss_before) * 1024 / DAEMON_NAMES))
  dnsmasq_rss_growth "$DAEMON_NAMES"
  dm_bytes=$((DM_KIB * 1024 / DAEMON_NAMES))
  goal_daemon="met"
  ((sw_bytes <= 1024)) || goal_daemon="NOT met"
  daemon_line="swarmnetd for $DAEMON_NAMES named endpoints: RSS +$(mib $((rss_all - rss_before))) MiB ($sw_bytes bytes each; goal <= 1024: $goal_daemon); dnsmasq +$(mib "$DM_KIB") MiB for the same names ($dm_bytes bytes each); ratio $(awk -v a="$sw_bytes" -v b="$dm_bytes" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}')"
fi

say "results"
ratio=$(awk -v a="$sw_qps" -v b="$dm_qps" 'BEGIN {printf "%.2f", a / b}')
goal="met"
awk -v a="$sw_qps" -v b="$dm_qps" -v la="$sw_lat" -v lb="$dm_lat" 'BEGIN {exit !(a >= 1.5 * b && la < lb)}' ||
  goal="NOT met"
echo "swarmnet: $sw_qps qps, $sw_lat ms mean; dnsmasq: $dm_qps qps, $dm_lat ms mean; ratio $ratio (goal >= 1.5 with a lower mean latency: $goal)"
if ((CPU_CAP > 0)); then
  capped_goal="met"
  awk -v a="$swc_qps" -v b="$dmc_qps" -v la="$swc_lat" -v lb="$dmc_lat" 'BEGIN {exit !(a >= 1.5 * b && la < lb)}' ||
    capped_goal="NOT met"
  echo "each server held to $CPU_CAP% of a core: swarmnet $swc_qps qps, $swc_lat ms mean; dnsmasq $dmc_qps qps, $dmc_lat ms mean; ratio $(awk -v a="$swc_qps" -v b="$dmc_qps" 'BEGIN {printf "%.2f", a / b}') (goal >= 1.5 with a lower mean latency: $capped_goal)"
fi
echo "server CPU a query: swarmnetd $sw_cpu us, dnsmasq $dm_cpu us (dnsmasq/swarmnetd $(awk -v a="$sw_cpu" -v b="$dm_cpu" 'BEGIN {printf "%.2f", (a > 0 ? b / a : 0)}'))"
echo "swarmnetd RSS: $(mib "$rss_before") MiB before the $NAMES names, $(mib "$rss_after") MiB after"
[[ -z "$table_line" ]] || echo "$table_line"
[[ -z "$daemon_line" ]] || echo "$daemon_line"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
