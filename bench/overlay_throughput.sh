#!/usr/bin/env bash
# Container-to-container throughput across two hosts (iperf3), one run, three
# paths side by side:
#   swarmnet   a 2-host swarmnet cluster (integration/lib/cluster.sh), one
#              container per host attached by the real CNI plugin, one network
#   hand-built the same data plane made by hand with `ip`/`bridge`: two "host"
#              namespaces on a veth underlay, a VXLAN device per host (same VNI
#              kind, port 4789, same MTU, learning off, proxy on, static FDB +
#              neighbour entries as swarmnet installs them), a bridge with the
#              gateway address and a veth to a container namespace on each host
#   veth       a plain veth pair between two namespaces (the ceiling)
# plus, as a diagnostic, the hand-built path with its underlay going through a
# bridge in a third namespace, as cluster.sh's underlay does (so the ratio can
# be read with and without that extra hop).
#
# The hand-built overlay uses the MTU that swarmnet chose for its network
# (underlay MTU - 50), read from the running cluster, so the comparison is
# like for like. Prints Gbit/s per path for 1 and for P streams, and the ratio
# swarmnet / hand-built (goal >= 0.95, DESIGN.md "Figures measured here").
#
# Root; build first. Traffic stays inside namespaces this script makes; all of
# them (and the daemons, iperf3 servers, files) are removed on exit, also on
# failure or Ctrl-C.
#
# Env: DURATION (iperf3 -t, default 10), PARALLEL (the -P run, default 4),
#      ROUNDS (repeat every measurement, default 1; the median is reported),
#      WAIT_LOAD=X (wait up to WAIT_LOAD_MAX s, default 600, for the 1-minute
#      load average to drop below X before measuring),
#      SWARMNET_BIN_DIR (default build/bin),
#      PERF_DIR=DIR (after the measurements, one more -P 1 run of swarmnet and
#      of the hand-built path each under `perf record -a -g`; DIR/PATH.data and
#      DIR/PATH.txt, the kernel symbols above 0.5%, to compare where the time
#      goes; and netfilter's share of iperf3's samples, from the same data),
#      DROP_TABLES="FAMILY:NAME ..." or "all" (diagnostic: before measuring,
#      both swarmnet daemons are stopped with SIGSTOP, so that they put
#      nothing back, and these nftables tables are deleted from the two host
#      namespaces; swarmnet's path then runs without their per-packet work.
#      The daemons are continued before they are stopped at the end).
# Also printed: the connections the hosts' conntrack holds while swarmnet's
# -P 1 run goes on (the containers' flow and the VXLAN tunnel's), the
# per-packet work that only swarmnet's path can have.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_needs iperf3 jq bridge awk
bench_needs_cluster

DURATION="${DURATION:-10}"
PARALLEL="${PARALLEL:-4}"
ROUNDS="${ROUNDS:-1}"
export CLUSTER_LOG_LEVEL="${CLUSTER_LOG_LEVEL:-info}"
watchdog $((600 + ROUNDS * 8 * (DURATION + 20)))

T="$CLUSTER_TAG"  # every namespace below starts with it
PORT=5201
declare -a BENCH_NS=()
declare -a SERVER_PIDS=()

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

declare -a STOPPED_PIDS=()
bench_cleanup() {
  local p n
  for p in "${STOPPED_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  STOPPED_PIDS=()
  for p in "${SERVER_PIDS[@]}"; do kill_pid "$p" "iperf3 server"; done
  SERVER_PIDS=()
  for n in "${BENCH_NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  BENCH_NS=()
}

mkns() { ip netns add "$1"; BENCH_NS+=("$1"); ip -n "$1" link set lo up; }

# start_server NS ADDR: an iperf3 server in NS (killed on exit).
start_server() {
  ip netns exec "$1" iperf3 -s -B "$2" -p "$PORT" >/dev/null 2>&1 </dev/null \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  SERVER_PIDS+=($!)
  wait_for 10 bash -c "ip netns exec '$1' ss -Hltn 'sport = :$PORT' | grep -q ." ||
    die "iperf3 server in $1 did not come up"
}

# gbits NS ADDR STREAMS: one iperf3 run from NS to the server at ADDR,
# prints the receiver's Gbit/s.
gbits() {
  local out
  out=$(timeout $((DURATION + 30)) ip netns exec "$1" iperf3 -c "$2" -p "$PORT" -t "$DURATION" \
    -P "$3" -J) || { echo "$out" | jq -r '.error? // empty' >&2; die "iperf3 to $2 from $1 failed"; }
  jq -r '.end.sum_received.bits_per_second / 1e9' <<<"$out"
}

median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
mtu_of() { ip -n "$1" -o link show "$2" | sed -E 's/.* mtu ([0-9]+) .*/\1/'; }
# vxlan_params NS DEV: the device's VXLAN attributes as `ip -d` shows them.
vxlan_params() { ip -n "$1" -d -o link show "$2" | grep -oE 'vxlan id [^\\]*' | sed 's/ *$//'; }

if [[ -n "${WAIT_LOAD:-}" ]]; then
  say "waiting (up to ${WAIT_LOAD_MAX:-600} s) for the 1-min load average to drop below $WAIT_LOAD"
  deadline=$((SECONDS + ${WAIT_LOAD_MAX:-600}))
  while awk -v l="$WAIT_LOAD" '{exit !($1 >= l)}' /proc/loadavg && ((SECONDS < deadline)); do sleep 5; done
fi
LOAD_START=$(loadavg)

# ---- swarmnet ---------------------------------------------------------------
cluster_up 2
on_exit bench_cleanup  # after cluster_down's: runs first (servers, then namespaces)
say "swarmnet: one network, one container on each host"
hctl 1 network create benchnet >/dev/null
wait_for 10 hctl 2 network inspect benchnet || die "host 2 never learnt the network"
SN_MTU=$(hctl 1 network inspect benchnet | jq -r .mtu)
SN_IP1=$(container_add 1 c1 benchnet)
SN_IP2=$(container_add 2 c2 benchnet)
wait_for 15 cping c1 "$SN_IP2" || die "swarmnet containers cannot reach each other"
SN_NS1=$(container_ns c1)
SN_NS2=$(container_ns c2)
SN_CMTU=$(mtu_of "$SN_NS2" eth0)
SN_UMTU=$(mtu_of "$(host_ns 2)" eth0)
SN_VX=$(ip -n "$(host_ns 2)" -o link show type vxlan | awk -F': ' '{print $2}' | cut -d@ -f1 | head -1)
SN_VXMTU=$(mtu_of "$(host_ns 2)" "$SN_VX")
info "c1 $SN_IP1 (host 1) -> c2 $SN_IP2 (host 2); network MTU $SN_MTU, container eth0 $SN_CMTU, $SN_VX $SN_VXMTU, underlay eth0 $SN_UMTU"
info "swarmnet's $SN_VX: $(vxlan_params "$(host_ns 2)" "$SN_VX")"
start_server "$SN_NS2" "$SN_IP2"

# ---- hand-built VXLAN ---------------------------------------------------------
# handbuilt PREFIX SUBNET3 UNDERLAY3 BRIDGED: hosts PREFIX-h1/h2, containers
# PREFIX-c1/c2; the client is PREFIX-c1, the server PREFIX-c2 at SUBNET3.3.
handbuilt() {
  local p="$1" sub="$2" und="$3" bridged="$4" i mac
  local -A cmac=()
  mkns "$p-h1"
  mkns "$p-h2"
  if ((bridged)); then
    mkns "$p-u"
    ip -n "$p-u" link add br0 type bridge
    ip -n "$p-u" link set br0 up
    for i in 1 2; do
      ip -n "$p-u" link add "up$i" type veth peer name eth0 netns "$p-h$i"
      ip -n "$p-u" link set "up$i" master br0 up
    done
  else
    ip -n "$p-h1" link add eth0 type veth peer name eth0 netns "$p-h2"
  fi
  for i in 1 2; do
    local h="$p-h$i" c="$p-c$i"
    ip -n "$h" link set eth0 mtu "$SN_UMTU" up
    ip -n "$h" addr add "$und.$i/24" dev eth0
    ip -n "$h" link add br0 mtu "$SN_MTU" type bridge
    ip -n "$h" addr add "$sub.1/24" dev br0
    ip -n "$h" link set br0 up
    ip -n "$h" link add vx0 mtu "$SN_MTU" type vxlan id 4242 dstport 4789 local "$und.$i" nolearning proxy
    ip -n "$h" link set vx0 master br0
    bridge -n "$h" link set dev vx0 learning off
    ip -n "$h" link set vx0 up
    mkns "$c"
    ip -n "$h" link add veth0 mtu "$SN_MTU" type veth peer name eth0 netns "$c"
    ip -n "$h" link set veth0 master br0 up
    ip -n "$c" link set eth0 mtu "$SN_MTU" up
    ip -n "$c" addr add "$sub.$((i + 1))/24" dev eth0
    ip -n "$c" route add default via "$sub.1"
    cmac[$i]=$(ip -n "$c" -o link show eth0 | grep -oE 'link/ether [0-9a-f:]+' | cut -d' ' -f2)
  done
  # Remote endpoint entries, as swarmnet's add_fdb/add_neighbor make them:
  # the tunnel's FDB (self, permanent), the bridge's (master, static), and a
  # permanent neighbour on the VXLAN device that its proxy answers ARP from.
  for i in 1 2; do
    local h="$p-h$i" r=$((3 - i))
    mac="${cmac[$r]}"
    bridge -n "$h" fdb replace "$mac" dev vx0 dst "$und.$r" self permanent
    bridge -n "$h" fdb replace "$mac" dev vx0 master static
    ip -n "$h" neigh replace "$sub.$((r + 1))" lladdr "$mac" dev vx0 nud permanent
  done
  wait_for 10 ip netns exec "$p-c1" ping -c 1 -W 1 "$sub.3" || die "hand-built overlay $p does not pass traffic"
  start_server "$p-c2" "$sub.3"
}

say "hand-built VXLAN: two host namespaces on a veth underlay"
handbuilt "$T-hv" 10.99.1 192.168.231 0
HV_VXMTU=$(mtu_of "$T-hv-h2" vx0)
HV_CMTU=$(mtu_of "$T-hv-c2" eth0)
info "underlay eth0 $(mtu_of "$T-hv-h2" eth0), vx0 $HV_VXMTU, container eth0 $HV_CMTU (= swarmnet's network MTU $SN_MTU)"
info "hand-built vx0: $(vxlan_params "$T-hv-h2" vx0)"
say "hand-built VXLAN, underlay through a bridge as in cluster.sh (diagnostic)"
handbuilt "$T-hb" 10.99.2 192.168.232 1

# ---- plain veth ------------------------------------------------------------
say "plain veth pair between two namespaces"
mkns "$T-v1"
mkns "$T-v2"
ip -n "$T-v1" link add eth0 type veth peer name eth0 netns "$T-v2"
ip -n "$T-v1" addr add 192.168.233.1/24 dev eth0
ip -n "$T-v2" addr add 192.168.233.2/24 dev eth0
ip -n "$T-v1" link set eth0 up
ip -n "$T-v2" link set eth0 up
VETH_MTU=$(mtu_of "$T-v1" eth0)
wait_for 10 ip netns exec "$T-v1" ping -c 1 -W 1 192.168.233.2 || die "veth pair does not pass traffic"
start_server "$T-v2" 192.168.233.2

# ---- measure -------------------------------------------------------------------
# Interleaved (every path once per round, per stream count), so a change in
# the machine's load hits all paths alike.
if [[ -n "${DROP_TABLES:-}" ]]; then
  say "diagnostic: swarmnetd stopped (SIGSTOP) on both hosts, tables deleted: $DROP_TABLES"
  for i in 1 2; do
    STOPPED_PIDS+=("${_CLUSTER_PIDS[$i]}")
    kill -STOP "${_CLUSTER_PIDS[$i]}"
    if [[ "$DROP_TABLES" == all ]]; then
      ip netns exec "$(host_ns "$i")" nft flush ruleset
    else
      for t in $DROP_TABLES; do ip netns exec "$(host_ns "$i")" nft delete table "${t%%:*}" "${t#*:}"; done
    fi
    info "host $i keeps $(ip netns exec "$(host_ns "$i")" nft list ruleset | grep -c ' hook ' || true) base chains"
  done
fi
PATHS=(swarmnet handvx handvx_br veth)
declare -A CLIENT=([swarmnet]="$SN_NS1" [handvx]="$T-hv-c1" [handvx_br]="$T-hb-c1" [veth]="$T-v1")
declare -A SERVER=([swarmnet]="$SN_IP2" [handvx]=10.99.1.3 [handvx_br]=10.99.2.3 [veth]=192.168.233.2)
declare -A RESULTS=()
declare -a CT_FLOW=() CT_VXLAN=()
for ((r = 1; r <= ROUNDS; r++)); do
  for streams in 1 "$PARALLEL"; do
    for path in "${PATHS[@]}"; do
      g=$(gbits "${CLIENT[$path]}" "${SERVER[$path]}" "$streams")
      info "round $r, -P $streams, $path: $(printf '%.2f' "$g") Gbit/s   (load $(loadavg))"
      RESULTS[$path,$streams]+="$g "
    done
  done
done
LOAD_END=$(loadavg)

# ct_entries NS PATTERN: connections in NS's conntrack table matching PATTERN.
ct_entries() { ip netns exec "$1" cat /proc/net/nf_conntrack 2>/dev/null | grep -cE "$2" || true; }
say "conntrack during a swarmnet -P 1 run"
timeout $((DURATION + 30)) ip netns exec "$SN_NS1" iperf3 -c "$SN_IP2" -p "$PORT" -t 4 -P 1 >/dev/null &
ct_pid=$!
sleep 2
for i in 1 2; do
  CT_FLOW[$i]=$(ct_entries "$(host_ns "$i")" "src=$SN_IP1 dst=$SN_IP2 .*dport=$PORT")
  CT_VXLAN[$i]=$(ct_entries "$(host_ns "$i")" "udp .*dport=4789 ")
  info "host $i: the containers' connection tracked ${CT_FLOW[$i]} time(s), VXLAN flows tracked ${CT_VXLAN[$i]}"
done
wait "$ct_pid" || true

declare -A NF_SHARE=()
if [[ -n "${PERF_DIR:-}" ]]; then
  command -v perf >/dev/null || die "PERF_DIR: perf is needed"
  mkdir -p "$PERF_DIR"
  for path in swarmnet handvx; do
    say "perf record -a -g during a -P 1 run of $path ($PERF_DIR/$path.data)"
    perf record -a -g -q -o "$PERF_DIR/$path.data" -- \
      ip netns exec "${CLIENT[$path]}" iperf3 -c "${SERVER[$path]}" -p "$PORT" -t "$DURATION" -P 1 >/dev/null 2>&1
    perf report -i "$PERF_DIR/$path.data" --no-children --sort sym --stdio -g none --percent-limit 0.5 \
      2>/dev/null | grep -v '^#' | grep . >"$PERF_DIR/$path.txt" || true
    info "$(head -12 "$PERF_DIR/$path.txt" | tr -s ' ' | paste -sd ';')"
    # Netfilter's share of iperf3's own samples (client and server, with
    # the softirq work they carry): nftables, br_netfilter, conntrack and
    # NAT hooks. Under load the Gbit/s swing; this share is the figure
    # to compare from run to run.
    perf report -i "$PERF_DIR/$path.data" --comm iperf3 --percentage relative --no-children --sort sym \
      --stdio -g none 2>/dev/null | grep -v '^#' | grep . >"$PERF_DIR/$path.iperf3.txt" || true
    NF_SHARE[$path]=$(awk '{sub("%", "", $1)}
      $3 ~ /^(nf_|__nf_|nft_|__nft|pipapo|br_nf|brnf_|setup_pre_routing|ip_sabotage|ipv4_conntrack)/ {s += $1}
      END {printf "%.1f", s}' "$PERF_DIR/$path.iperf3.txt")
    info "netfilter: ${NF_SHARE[$path]}% of iperf3's samples ($PERF_DIR/$path.iperf3.txt)"
  done
fi

med() { tr ' ' '\n' <<<"${RESULTS[$1,$2]}" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }

echo
echo "overlay throughput, iperf3 -t $DURATION, median of $ROUNDS round(s); load average $LOAD_START at start, $LOAD_END at end ($(nproc) CPUs)"
echo "MTUs: swarmnet network $SN_MTU (container eth0 $SN_CMTU, $SN_VX $SN_VXMTU, underlay $SN_UMTU);"
echo "      hand-built VXLAN set to the same: container eth0 $HV_CMTU, vx0 $HV_VXMTU, underlay $SN_UMTU; plain veth $VETH_MTU"
printf '%-44s %12s %12s\n' "path" "-P 1" "-P $PARALLEL"
declare -A M=()
for path in "${PATHS[@]}"; do
  for streams in 1 "$PARALLEL"; do M[$path,$streams]=$(med "$path" "$streams"); done
done
label() {
  case "$1" in
    swarmnet) echo "swarmnet (2 hosts, CNI containers)" ;;
    handvx) echo "hand-built VXLAN (veth underlay)" ;;
    handvx_br) echo "hand-built VXLAN (bridged underlay, diag.)" ;;
    veth) echo "plain veth pair" ;;
  esac
}
for path in "${PATHS[@]}"; do
  printf '%-44s %7.2f Gb/s %7.2f Gb/s\n' "$(label "$path")" "${M[$path,1]}" "${M[$path,$PARALLEL]}"
done
printf '%-44s %12s %12s\n' "ratio swarmnet / hand-built VXLAN (>= 0.95)" \
  "$(ratio "${M[swarmnet,1]}" "${M[handvx,1]}")" "$(ratio "${M[swarmnet,$PARALLEL]}" "${M[handvx,$PARALLEL]}")"
printf '%-44s %12s %12s\n' "ratio swarmnet / hand-built, bridged underlay" \
  "$(ratio "${M[swarmnet,1]}" "${M[handvx_br,1]}")" "$(ratio "${M[swarmnet,$PARALLEL]}" "${M[handvx_br,$PARALLEL]}")"
printf '%-44s %12s %12s\n' "ratio hand-built VXLAN / plain veth" \
  "$(ratio "${M[handvx,1]}" "${M[veth,1]}")" "$(ratio "${M[handvx,$PARALLEL]}" "${M[veth,$PARALLEL]}")"
echo "conntrack during swarmnet's -P 1 run: the containers' connection tracked ${CT_FLOW[1]}/${CT_FLOW[2]} time(s), VXLAN flows ${CT_VXLAN[1]}/${CT_VXLAN[2]} (host 1/host 2)"
[[ -z "${PERF_DIR:-}" ]] ||
  echo "netfilter's share of iperf3's samples (perf, one -P 1 run each): swarmnet ${NF_SHARE[swarmnet]}%, hand-built ${NF_SHARE[handvx]}%"
echo "DESIGN.md figures (earlier, same machine): hand-built VXLAN 24.8 Gbit/s, plain veth 33.9"
