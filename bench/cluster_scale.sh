#!/usr/bin/env bash
# swarmnet at 10 hosts (real daemons in network namespaces, integration/lib/cluster.sh):
#   1. time of `cluster_up 10`: 10 daemons started one after the other, `cluster
#      init` on host 1, 9 joins, until every host sees 10 nodes alive (also the
#      join phase alone, from the daemons' logs);
#   2. endpoint convergence: one probe container per host; then, ROUNDS times,
#      a CNI ADD on a random host and the time from the start of that ADD until
#      the probe container of every other host gets a ping reply from the new
#      container (each probe sends 1 ping every 20 ms); p50/p90/max;
#   3. gossip traffic: `swarmnetctl cluster status` .stats.bytes_in/bytes_out on
#      every host, over WINDOW s at rest and over WINDOW s of churn (an ADD and
#      a DEL every 0.5 s, spread round-robin over the hosts); mean bytes/s per node.
#
# The probe containers' ARP retransmit time is set to 20 ms (kernel default
# 1 s), so a probe that started before the remote entries existed is answered
# at the 20 ms poll rate rather than at the next 1 s ARP retry: this measures
# when the data plane is ready, not the probe's ARP back-off.
#
# Root; build first. Everything it makes is removed on exit, also on failure.
# Env: HOSTS (default 10), ROUNDS (default 10), WINDOW (s, default 30),
#      CHURN_PERIOD (s, default 0.5), REACH_TIMEOUT (s per round, default 20),
#      CLUSTER_LOG_LEVEL (default info), SWARMNET_BIN_DIR (default build/bin).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_needs jq ping awk
bench_needs_cluster

N="${HOSTS:-10}"
ROUNDS="${ROUNDS:-10}"
WINDOW="${WINDOW:-30}"
CHURN_PERIOD="${CHURN_PERIOD:-0.5}"
REACH_TIMEOUT="${REACH_TIMEOUT:-20}"
export CLUSTER_LOG_LEVEL="${CLUSTER_LOG_LEVEL:-info}"
NET=scalenet
watchdog $((300 + ROUNDS * (REACH_TIMEOUT + 10) + 4 * WINDOW))

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
now() { echo "$EPOCHREALTIME"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", (b - a) * 1000}'; }
# pct P: nearest-rank percentile of the numbers on stdin.
pct() { sort -g | awk -v p="$1" '{v[NR] = $1} END {i = int(p * NR + 0.999999); if (i < 1) i = 1; print v[i]}'; }
# Seconds since the epoch of a daemon log line "2026-11-26T13:14:15.123 swarmnetd[42] info: ...".
log_time() { date -d "${1%% *}" +%s.%N; }

LOAD_START=$(loadavg)
say "load average at start: $LOAD_START ($(nproc) CPUs)"

# ---- 1. cluster_up --------------------------------------------------------------
T0=$(now)
cluster_up "$N"
T1=$(now)
UP_MS=$(ms "$T0" "$T1")
# The join phase, in the daemons' own clocks: host 1's "initialised" line until
# the last "node ... is alive" line on any host.
JOIN_MS=""
init_line=$(grep -h 'cluster: initialised' "$CLUSTER_DIR/h1/swarmnetd.log" | tail -1 || true)
last_alive=$(grep -h -E 'cluster: node .* is alive' "$CLUSTER_DIR"/h*/swarmnetd.log | sort | tail -1 || true)
if [[ -n "$init_line" && -n "$last_alive" ]]; then
  JOIN_MS=$(ms "$(log_time "$init_line")" "$(log_time "$last_alive")") || JOIN_MS=""
fi
info "cluster_up $N: $UP_MS ms${JOIN_MS:+ (join phase from the daemon logs: $JOIN_MS ms)}"

# ---- 2. ADD until every host reaches it -----------------------------------------
say "network $NET and one probe container per host"
t=$(now)
hctl 1 network create "$NET" >/dev/null
for ((i = 2; i <= N; i++)); do
  wait_for 20 hctl "$i" network inspect "$NET" || die "host $i never learnt network $NET"
done
NET_MS=$(ms "$t" "$(now)")
info "network known on all $N hosts after $NET_MS ms (polled from the harness)"
declare -A PROBE_IP=()
for ((i = 1; i <= N; i++)); do
  PROBE_IP[$i]=$(container_add "$i" "p$i" "$NET")
  ip netns exec "$(container_ns "p$i")" sysctl -qw net.ipv4.neigh.eth0.retrans_time_ms=20
done
for ((i = 2; i <= N; i++)); do
  wait_for 20 cping p1 "${PROBE_IP[$i]}" || die "probe on host 1 cannot reach the probe on host $i"
done
info "probes: $(for ((i = 1; i <= N; i++)); do printf '%s ' "${PROBE_IP[$i]}"; done)"

WORK="$CLUSTER_DIR/bench"
mkdir -p "$WORK"
REACH=()
ADDS=()
AFTER=()
FAILED_ROUNDS=()
say "$ROUNDS rounds: ADD on a random host, then ping it from every other host every 20 ms"
for ((r = 1; r <= ROUNDS; r++)); do
  h=$((RANDOM % N + 1))
  t0=$(now)
  ip_new=$(container_add "$h" "r$r" "$NET")
  t1=$(now)
  pids=()
  for ((j = 1; j <= N; j++)); do
    ((j == h)) && continue
    ns=$(container_ns "p$j")
    # All probes start at once (in parallel). Each runs 1 s pings (one echo
    # every 20 ms), restarted with its neighbour entry flushed: a probe whose
    # ARP entry had gone FAILED sometimes stayed unanswered for the rest of a
    # long ping while a fresh ping got replies at once (seen in 3 of 50
    # rounds). -D: each reply line starts with its receive time; the first
    # one is kept.
    (end=$((SECONDS + REACH_TIMEOUT)) line=""
      while [[ -z "$line" ]] && ((SECONDS < end)); do
        ip -n "$ns" neigh flush to "$ip_new" 2>/dev/null || true
        line=$(ip netns exec "$ns" ping -D -n -i 0.02 -w 1 "$ip_new" 2>/dev/null | grep -m1 'bytes from') || true
      done
      echo "$line" >"$WORK/r$r-$j") &
    pids+=($!)
  done
  wait "${pids[@]}"
  worst=0 worst_host="" unreached=()
  for ((j = 1; j <= N; j++)); do
    ((j == h)) && continue
    line=$(cat "$WORK/r$r-$j")
    if [[ -z "$line" ]]; then unreached+=("$j"); continue; fi
    tr=$(sed -E 's/^\[([0-9.]+)\].*/\1/' <<<"$line")
    d=$(ms "$t0" "$tr")
    if ((d > worst)); then worst=$d worst_host=$j; fi
  done
  if ((${#unreached[@]} > 0)); then
    # A finding, not a harness failure: say what the unreached hosts hold for
    # the new endpoint, count the round as failed, and go on.
    FAILED_ROUNDS+=("$r")
    warn "round $r: host(s) ${unreached[*]} never reached $ip_new (ADD on host $h) within $REACH_TIMEOUT s"
    for j in "${unreached[@]}"; do
      vx=$(ip -n "$(host_ns "$j")" -o link show type vxlan | awk -F': ' '{print $2}' | cut -d@ -f1 | head -1) || true
      mac=$(ip -n "$(container_ns "r$r")" -o link show eth0 | grep -oE 'link/ether [0-9a-f:]+' | cut -d' ' -f2) || true
      warn "  host $j: endpoint table: $(hctl "$j" endpoint ls "$NET" 2>&1 | grep -F -w "$ip_new" | tr -s ' ' | head -2 || echo "no entry for $ip_new")"
      warn "  host $j: neigh on $vx: $(ip -n "$(host_ns "$j")" neigh show dev "$vx" to "$ip_new" | tr '\n' ' ')"
      warn "  host $j: fdb for $mac: $(bridge -n "$(host_ns "$j")" fdb show dev "$vx" | grep -F "$mac" | tr '\n' ' ')"
      warn "  host $j: probe's neigh: $(ip -n "$(container_ns "p$j")" neigh show to "$ip_new" | tr '\n' ' ')"
      ip -n "$(container_ns "p$j")" neigh flush to "$ip_new" 2>/dev/null || true
      if cping "p$j" "$ip_new" 3; then fresh="replies"; else fresh="no reply"; fi
      warn "  host $j: a fresh ping now (neighbour flushed, 3 tries): $fresh; probe's neigh then: $(ip -n "$(container_ns "p$j")" neigh show to "$ip_new" | tr '\n' ' ')"
      warn "  host $j: last log lines: $(tail -3 "$CLUSTER_DIR/h$j/swarmnetd.log" | tr '\n' '|')"
    done
    continue
  fi
  REACH+=("$worst")
  ADDS+=("$(ms "$t0" "$t1")")
  AFTER+=("$((worst - $(ms "$t0" "$t1")))")
  info "round $r: ADD on host $h -> $ip_new: CNI ADD $(ms "$t0" "$t1") ms, all $((N - 1)) other hosts reach it after $worst ms (last: host $worst_host)   (load $(loadavg))"
done

# ---- 3. gossip bytes ------------------------------------------------------------------
# sample FILE: "host time bytes_in bytes_out packets_in packets_out" per host.
sample() {
  local i s
  : >"$1"
  for ((i = 1; i <= N; i++)); do
    s=$(hctl "$i" cluster status)
    echo "$i $(now) $(jq -r '[.stats.bytes_in, .stats.bytes_out, .stats.packets_in, .stats.packets_out] | @tsv' <<<"$s")" >>"$1"
  done
}
# rates A B: per-node rates between two samples: mean and min/max of bytes/s.
rates() {
  join <(sort -k1,1 "$1") <(sort -k1,1 "$2") | awk '
    { dt = $7 - $2; bi = ($8 - $3) / dt; bo = ($9 - $4) / dt; pi = ($10 - $5) / dt; po = ($11 - $6) / dt
      sbi += bi; sbo += bo; spi += pi; spo += po; n++
      if (n == 1 || bo < minbo) minbo = bo; if (bo > maxbo) maxbo = bo }
    END { printf "in %.0f B/s, out %.0f B/s per node (out: min %.0f, max %.0f); packets in %.1f/s, out %.1f/s per node\n",
                 sbi / n, sbo / n, minbo, maxbo, spi / n, spo / n }'
}
mean_out() {
  join <(sort -k1,1 "$1") <(sort -k1,1 "$2") | awk '{ s += ($9 - $4) / ($7 - $2); n++ } END { printf "%.0f", s / n }'
}

say "gossip bytes at rest: $WINDOW s"
sleep 5  # let the rounds' broadcasts finish their retransmits
sample "$WORK/rest0"
sleep "$WINDOW"
sample "$WORK/rest1"
REST=$(rates "$WORK/rest0" "$WORK/rest1")
info "at rest: $REST"

say "gossip bytes under churn: $WINDOW s, an ADD and a DEL every $CHURN_PERIOD s, round-robin over the hosts"
# One background job per tick: ADD container xK on host K mod N, keep it
# CHURN_LIFETIME s, DEL it. Jobs overlap, so the rate holds even when one
# ADD takes longer than a tick; the names are registered here first, so the
# harness removes their namespaces whatever happens to the job.
CHURN_LIFETIME="${CHURN_LIFETIME:-2}"
declare -a CHURN_PIDS=()
stop_churn() { local p; for p in "${CHURN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; CHURN_PIDS=(); }
on_exit stop_churn
churn_job() {  # churn_job K HOST
  container_add "$2" "x$1" "$NET" >/dev/null 2>>"$WORK/churn-errors" || { echo "ADD x$1 failed" >>"$WORK/churn-errors"; return; }
  sleep "$CHURN_LIFETIME"
  container_del "$2" "x$1" "$NET" 2>>"$WORK/churn-errors" || echo "DEL x$1 failed" >>"$WORK/churn-errors"
}
: >"$WORK/churn-errors"
sample "$WORK/churn0"
start=$(now)
k=0
while :; do
  wait_s=$(awk -v s="$start" -v k="$k" -v p="$CHURN_PERIOD" -v t="$(now)" -v w="$WINDOW" 'BEGIN {
    n = s + k * p; if (n - s >= w || t - s >= w) print "end"; else if (n > t) printf "%.6f", n - t; else print 0 }')
  [[ "$wait_s" == end ]] && break
  [[ "$wait_s" == 0 ]] || sleep "$wait_s"
  _CLUSTER_CONTAINERS+=("x$k")
  churn_job "$k" $((k % N + 1)) {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  CHURN_PIDS+=($!)
  k=$((k + 1))
done
churn_s=$(awk -v a="$start" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')
sample "$WORK/churn1"
ops=$k
wait "${CHURN_PIDS[@]}" 2>/dev/null || true
CHURN_PIDS=()
churn_errors=$(grep -c failed "$WORK/churn-errors" || true)
((churn_errors == 0)) || { tail -5 "$WORK/churn-errors" >&2; warn "$churn_errors churn ADD/DEL failed"; }
CHURN=$(rates "$WORK/churn0" "$WORK/churn1")
info "under churn ($ops ADD+DEL started in $churn_s s, each container kept $CHURN_LIFETIME s; $churn_errors failed): $CHURN"
LOAD_END=$(loadavg)

# ---- summary ---------------------------------------------------------------------------
echo
echo "cluster scale, $N hosts (real swarmnetd in namespaces); load average $LOAD_START at start, $LOAD_END at end ($(nproc) CPUs)"
printf '  %-52s %s ms\n' "cluster_up $N (start $N daemons, init, $((N - 1)) joins, all see $N alive)" "$UP_MS"
[[ -z "$JOIN_MS" ]] || printf '  %-52s %s ms\n' "  of which join phase (init until last 'alive', logs)" "$JOIN_MS"
printf '  %-52s %s ms\n' "network create until known on all hosts" "$NET_MS"
if ((${#FAILED_ROUNDS[@]} > 0)); then
  printf '  %-52s %s of %s (round(s) %s): excluded below\n' "rounds where a host never reached the new container" \
    "${#FAILED_ROUNDS[@]}" "$ROUNDS" "${FAILED_ROUNDS[*]}"
fi
((${#REACH[@]} > 0)) || die "no round reached every host"
printf '  %-52s p50 %s ms, p90 %s ms, max %s ms\n' "ADD until all $((N - 1)) other hosts ping it (${#REACH[@]} rounds)" \
  "$(printf '%s\n' "${REACH[@]}" | pct 0.5)" "$(printf '%s\n' "${REACH[@]}" | pct 0.9)" "$(printf '%s\n' "${REACH[@]}" | pct 1)"
printf '  %-52s p50 %s ms, max %s ms\n' "  of which the CNI ADD itself" \
  "$(printf '%s\n' "${ADDS[@]}" | pct 0.5)" "$(printf '%s\n' "${ADDS[@]}" | pct 1)"
printf '  %-52s p50 %s ms, p90 %s ms, max %s ms\n' "  after the ADD returned (dissemination + kernel)" \
  "$(printf '%s\n' "${AFTER[@]}" | pct 0.5)" "$(printf '%s\n' "${AFTER[@]}" | pct 0.9)" "$(printf '%s\n' "${AFTER[@]}" | pct 1)"
printf '  %-52s %s B/s\n' "gossip bytes out per node, at rest (mean)" "$(mean_out "$WORK/rest0" "$WORK/rest1")"
printf '  %-52s %s B/s\n' "gossip bytes out per node, churn $(awk -v o="$ops" -v s="$churn_s" 'BEGIN {printf "%.1f", o / s}') ADD+DEL/s (mean)" "$(mean_out "$WORK/churn0" "$WORK/churn1")"
echo "  at rest:     $REST"
echo "  under churn: $CHURN"
echo "  (bytes are the sealed gossip payloads, UDP packets and TCP push/pull frames, as"
echo "   swarmnetctl cluster status counts them; IP/UDP/TCP headers not included)"
