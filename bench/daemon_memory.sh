#!/usr/bin/env bash
# swarmnetd's resident memory per endpoint, and where it goes: one daemon in
# a network namespace of its own, alone (MODE=alone) or the node of a 1-host
# cluster (MODE=cluster, `cluster init`, as bench/dns_bench.sh's daemon
# part), one network, ENDPOINTS endpoints with a name each made through the
# API (attach=false, as dns_bench.sh makes them), in steps of STEP. After
# each step and after SETTLE seconds: VmRSS growth per endpoint, and glibc's
# own count (malloc_stats through gdb: bytes the allocator holds from the
# system and bytes in use), so RSS held by the allocator beyond what is in
# use (fragmentation, unreturned free memory) shows apart from what the
# daemon keeps.
#
# HEAPTRACK=FILE runs the daemon under heaptrack and leaves its data in
# FILE.zst (heaptrack_print FILE.zst: the peak, and what the daemon held
# when it was killed at the end, "leaked", by call stack).
#
# Root; build first (swarmnetd swarmnetctl). The namespaces, the daemon and
# its files go on exit, also on failure or Ctrl-C.
#
# Env: MODE (cluster or alone, default cluster), ENDPOINTS (default 20000),
#      STEP (default 5000), SETTLE (seconds after the last step, default 5),
#      HEAPTRACK (unset: no heaptrack), CONTAINER (1: a container attached to
#      the network by the CNI plugin first, as dns_bench.sh's client; needs
#      swarmnet built), DNSPERF (seconds of dnsperf from that container
#      against the daemon's DNS after the first step, as dns_bench.sh runs;
#      0: none), LIST (1, the default: list the network's endpoints through
#      the API at the end, as dns_bench.sh does; 0: not), SWARMNET_BIN_DIR (default build/bin).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_needs jq curl gdb
need_bin swarmnetd >/dev/null
need_bin swarmnetctl >/dev/null

MODE="${MODE:-cluster}"
ENDPOINTS="${ENDPOINTS:-20000}"
STEP="${STEP:-5000}"
SETTLE="${SETTLE:-5}"
HEAPTRACK="${HEAPTRACK:-}"
CONTAINER="${CONTAINER:-0}"
DNSPERF="${DNSPERF:-0}"
dnsperf_done=0
LIST="${LIST:-1}"
((DNSPERF == 0 || CONTAINER)) || die "DNSPERF needs CONTAINER=1"
[[ "$MODE" == cluster || "$MODE" == alone ]] || die "MODE is cluster or alone, not $MODE"
SUBNET=10.248.0.0/16
export CLUSTER_LOG_LEVEL="${CLUSTER_LOG_LEVEL:-warn}"
watchdog $((600 + ENDPOINTS / 20))


# heap_kib PID: "SYSTEM INUSE" in KiB, glibc's totals over every arena
# (malloc_stats prints them on the daemon's stderr, its log).
heap_kib() {
  local pid="$1" log="$CLUSTER_DIR/h1/swarmnetd.log" lines
  lines=$(wc -l <"$log")
  gdb -p "$pid" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || { echo "? ?"; return; }
  sleep 0.2
  tail -n +$((lines + 1)) "$log" | awk '/^Total \(incl. mmap\):/ {t = 1} t && /system bytes/ {s = $NF} t && /in use bytes/ {u = $NF}
    END {printf "%d %d\n", s / 1024, u / 1024}'
}

report() {
  local label="$1" n="$2" rss heap
  rss=$(bench_rss_kib "$DAEMON_PID")
  read -r -a heap <<<"$(heap_kib "$DAEMON_PID")"
  local per="-"
  ((n == 0)) || per=$(((rss - RSS0) * 1024 / n))
  printf '%-22s %7d %10d %10s %10s %10s\n' "$label" "$n" "$rss" "${heap[0]}" "${heap[1]}" "$per"
}

CLUSTER_N=1
CLUSTER_DIR=$(mktemp -d /tmp/swarmnet-cluster.XXXXXX)
on_exit cluster_down
if [[ ! -e /etc/cni ]]; then mkdir -p /etc/cni; _CLUSTER_MADE_ETC_CNI=1; fi
ip netns add "$CLUSTER_TAG-u"
ip -n "$CLUSTER_TAG-u" link add br0 type bridge
ip -n "$CLUSTER_TAG-u" link set br0 up
_cluster_make_host 1
HT_PID=""
if [[ -n "$HEAPTRACK" ]]; then
  # The daemon under heaptrack's preload library, its pid its own (exec):
  # heaptrack's script would run it as a child.
  ht_lib=/usr/lib/heaptrack
  [[ -f "$ht_lib/libheaptrack_preload.so" ]] || die "heaptrack is needed (apt-get install heaptrack)"
  mkfifo "$CLUSTER_DIR/heaptrack.fifo"
  "$ht_lib/libexec/heaptrack_interpret" <"$CLUSTER_DIR/heaptrack.fifo" | zstd -q -c >"$HEAPTRACK.zst" &
  HT_PID=$!
  real_bin=$(cd "$SWARMNET_BIN_DIR" && pwd)
  SWARMNET_BIN_DIR="$CLUSTER_DIR/bin"
  mkdir -p "$SWARMNET_BIN_DIR"
  for b in swarmnetctl swarmnet; do ln -s "$real_bin/$b" "$SWARMNET_BIN_DIR/$b"; done
  printf '#!/bin/sh\nLD_PRELOAD=%s DUMP_HEAPTRACK_OUTPUT=%s exec %s "$@"\n' "$ht_lib/libheaptrack_preload.so" \
    "$CLUSTER_DIR/heaptrack.fifo" "$real_bin/swarmnetd" >"$SWARMNET_BIN_DIR/swarmnetd"
  chmod +x "$SWARMNET_BIN_DIR/swarmnetd"
fi
host_daemon_start 1
DAEMON_PID="${_CLUSTER_PIDS[1]}"
SOCK=$(host_sock 1)
if [[ "$MODE" == cluster ]]; then hctl 1 cluster init --advertise-addr "$(host_ip 1)" >/dev/null; fi
hctl 1 network create bench --subnet "$SUBNET" >/dev/null
if ((CONTAINER)); then
  need_bin swarmnet >/dev/null
  info "container client attached by the CNI plugin: $(container_add 1 client bench)"
fi
sleep 1

say "swarmnetd ($MODE), $ENDPOINTS named endpoints in steps of $STEP; $(uptime)"
printf '%-22s %7s %10s %10s %10s %10s\n' "" endpoints "RSS KiB" "heap KiB" "in use KiB" "RSS B/ep"
RSS0=$(bench_rss_kib "$DAEMON_PID")
report "empty network" 0
made=0
while ((made < ENDPOINTS)); do
  next=$((made + STEP < ENDPOINTS ? made + STEP : ENDPOINTS))
  start=$SECONDS
  bench_make_named_endpoints "$SOCK" "$CLUSTER_DIR" $((made + 1)) "$next"
  made=$next
  report "after n$made ($((SECONDS - start)) s)" "$made"
  if ((DNSPERF > 0 && made == next && !dnsperf_done)); then
    for ((i = 1; i <= made; i++)); do echo "n$i A"; done >"$CLUSTER_DIR/queries"
    ip netns exec "$(container_ns client)" dnsperf -s "${SUBNET%.0/*}.1" -d "$CLUSTER_DIR/queries" -l "$DNSPERF" \
      -q 200 -c 1 -T 1 >"$CLUSTER_DIR/dnsperf.out" 2>&1 || { cat "$CLUSTER_DIR/dnsperf.out" >&2; die "dnsperf failed"; }
    info "dnsperf: $(sed -n 's/.*Queries per second: *//p' "$CLUSTER_DIR/dnsperf.out") qps"
    dnsperf_done=1
    report "after dnsperf" "$made"
  fi
done
sleep "$SETTLE"
report "${SETTLE} s later" "$made"
if ((LIST)); then
  count=$(curl -sf --unix-socket "$SOCK" http://swarmnetd/v1/networks/bench/endpoints | jq 'length')
  info "the API lists $count endpoints in the network"
  report "after the listing" "$made"
fi
if [[ -n "$HT_PID" ]]; then
  # KILL: what the daemon holds now is what heaptrack_print calls leaked.
  host_daemon_stop 1 KILL
  wait "$HT_PID" 2>/dev/null || true
  info "heaptrack: $(ls "$HEAPTRACK"* 2>/dev/null | tr '\n' ' ')"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
