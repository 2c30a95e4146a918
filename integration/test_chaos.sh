#!/usr/bin/env bash
# A fault campaign. Three (--hosts) namespace hosts run
# real swarmnetd daemons in a cluster with two overlay networks and a pool of
# services (vip and dnsrr, some with an HTTP health check). The campaign is a
# series of phases; each injects one fault, runs a random churn of containers
# (CNI ADD/DEL through the real plugin), services (create/rm, attach/detach)
# and health (a task's listener started or killed) while the fault holds, then
# heals it and checks the invariants:
#   - no address live twice: not in two containers' interfaces, not under two
#     endpoints in the union of all nodes' tables; every container holds the
#     address its ADD returned (also checked before each heal);
#   - every node's tables (endpoints, services with their VIPs, task and
#     healthy counts, as `swarmnetctl endpoint ls` / `service ls` dump them)
#     are equal, and equal to what the operations made, within 5 s of the heal;
#   - `swarmnetctl lb check` is clean on every node;
#   - every node's DNS gives the same answers (the names of every container,
#     service and service's tasks), the ones the operations made.
# Faults: SIGKILL of a daemon (sometimes in the middle of a burst of ADDs on
# it) and its restart; a host cut off on the underlay and healed; a cut-off
# host killed and restarted while cut off; packet loss on the underlay (the
# kernel has no netem: an nft rule drops a random share, `numgen random mod
# 100 < N`); and phases with no fault (churn only, a control). The heal of a
# kill is the moment the restarted daemon's API answers.
#
# The campaign's randomness comes from --seed (printed first; default: the
# clock) through two generators of its own: one draws the faults (kind, host,
# duration, loss, number of operations), the other the operations. `--seed N`
# replays the same phases with the same faults; the operations are the same
# as long as they meet the same outcomes (an ADD a partition refuses leaves a
# different set of containers to pick from).
#
# Without options this is the short run of the test suite (about 2.5 min on 2
# busy cores); scripts/chaos runs the long one. Exit 1 if any invariant was
# violated (the summary names each, with the phase and the seed).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: integration/test_chaos.sh [OPTIONS]   (root; build first)
  --seed N             replay the campaign of seed N (default: from the clock; printed)
  --duration D         start phases until D has passed (90s, 15m, 1h; default 75s)
  --phases N           stop after N phases (whatever the duration)
  --plan N             print the faults of the first N phases of the seed, run nothing
  --hosts N            namespace hosts (default 3)
  --long-faults        some kills and partitions outlast --reclaim-after-s
  --reclaim-after-s S  swarmnetd's --reclaim-after-s (default 20)
  --converge-max S     how long to wait for convergence after a heal before
                       going on regardless (default 30)
  --no-repair          after a phase that never converged, keep the containers
                       the tables lost (default: removed as a runtime would, so
                       later phases are judged on their own); shows what the
                       loss leads to, e.g. their addresses handed out again
Env: KEEP_LOGS=1 keeps the daemons' logs and the campaign's event log;
     CHAOS_STACKS=1 saves the daemon's thread stacks (gdb) when its DNS stalls;
     SWARMNET_IT_TIMEOUT overrides the watchdog (default: duration + converge-max + 100 s).
EOF
}

SEED=""
DURATION=75
MAX_PHASES=0
PLAN=0
REPAIR=1
HOSTS=3
LONG_FAULTS=0
RECLAIM_S=20
CONVERGE_MAX=30
ON_TIME_MS=5000  # the issue's bound: every node's tables equal within 5 s of a heal

parse_duration() {  # parse_duration TEXT -> seconds on stdout
  local v="$1"
  case "$v" in
    *h) echo $((${v%h} * 3600)) ;;
    *m) echo $((${v%m} * 60)) ;;
    *s) echo "${v%s}" ;;
    *) echo "$v" ;;
  esac
}
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --seed) SEED="$2"; shift 2 ;;
    --duration) DURATION=$(parse_duration "$2"); shift 2 ;;
    --phases) MAX_PHASES="$2"; shift 2 ;;
    --plan) PLAN="$2"; shift 2 ;;
    --hosts) HOSTS="$2"; shift 2 ;;
    --long-faults) LONG_FAULTS=1; shift ;;
    --no-repair) REPAIR=0; shift ;;
    --reclaim-after-s) RECLAIM_S="$2"; shift 2 ;;
    --converge-max) CONVERGE_MAX="$2"; shift 2 ;;
    *) usage >&2; exit 2 ;;
  esac
done
for v in DURATION MAX_PHASES PLAN HOSTS RECLAIM_S CONVERGE_MAX; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
((HOSTS >= 3)) || { echo "error: --hosts must be 3 or more (a partition needs a majority)" >&2; exit 2; }
SEED="${SEED:-$(date +%s)}"
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "error: --seed must be a number" >&2; exit 2; }

# ---- deterministic random numbers ----------------------------------------------
# Two streams (a 64-bit LCG each, bash arithmetic wraps), so the faults drawn
# do not depend on how many choices the operations made. rnd STREAM N sets R
# to a number in [0, N); no subshell, which would not move the stream on.
# shellcheck disable=SC2034  # read through rnd's nameref
RNG_fault=$((SEED * 2654435761 + 1))
# shellcheck disable=SC2034
RNG_ops=$((SEED * 40503 + 7))
rnd() {
  local -n _state="RNG_$1"
  _state=$((_state * 6364136223846793005 + 1442695040888963407))
  R=$((((_state >> 33) & 0x7fffffff) % $2))
}
rnd_in() { rnd "$1" $(($3 - $2 + 1)); R=$((R + $2)); }  # rnd_in STREAM LO HI
pick() { local s="$1"; shift; local a=("$@"); rnd "$s" ${#a[@]}; PICKED="${a[R]}"; }

now_ms() { NOW=$((${EPOCHREALTIME/./} / 1000)); }
secs() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }  # secs MS -> "1.2"


# draw_phase: the next phase's fault, from the fault stream alone (so
# --plan shows what a run will do): P_KIND, P_HOST, P_MS (how long the
# fault holds), P_OPS (operations meanwhile), P_LOSS, P_BURST, PHASE_DESC.
KINDS=(none kill kill partition partition loss loss cut-kill)
draw_phase() {
  local extra="" burst_txt=""
  pick fault "${KINDS[@]}"; P_KIND="$PICKED"
  rnd_in fault 1 "$HOSTS"; P_HOST=$R
  rnd_in fault 2 12; P_MS=$((R * 1000))
  rnd_in fault 3 10; P_OPS=$R
  rnd_in fault 5 30; P_LOSS=$R
  rnd fault 2; P_BURST=$R
  [[ "$P_KIND" == kill ]] || P_BURST=0
  if ((LONG_FAULTS)); then
    rnd fault 4
    if ((R == 0)) && [[ "$P_KIND" == kill || "$P_KIND" == partition || "$P_KIND" == cut-kill ]]; then
      P_MS=$(((RECLAIM_S + 10) * 1000)); extra=" (long: beyond the reclaim time)"
    fi
  fi
  ((P_BURST == 0)) || burst_txt=" during a burst of ADDs"
  case "$P_KIND" in
    none) PHASE_DESC="no fault, $P_OPS operations" ;;
    kill) PHASE_DESC="SIGKILL host $P_HOST${burst_txt}, down $(secs "$P_MS") s$extra, $P_OPS operations" ;;
    partition) PHASE_DESC="host $P_HOST cut off for $(secs "$P_MS") s$extra, $P_OPS operations" ;;
    loss) PHASE_DESC="$P_LOSS% loss on the underlay for $(secs "$P_MS") s, $P_OPS operations" ;;
    cut-kill) PHASE_DESC="host $P_HOST cut off, SIGKILLed and restarted while cut off, $(secs "$P_MS") s$extra, $P_OPS operations" ;;
  esac
}
if ((PLAN)); then
  for ((PHASE = 1; PHASE <= PLAN; PHASE++)); do draw_phase; printf 'phase %3d  %s\n' "$PHASE" "$PHASE_DESC"; done
  exit 0
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox dig jq nft; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done
watchdog "${SWARMNET_IT_TIMEOUT:-$((DURATION + CONVERGE_MAX + 100))}"
echo "chaos: seed $SEED (replay: integration/test_chaos.sh --seed $SEED ...)"

# ---- the cluster ------------------------------------------------------------------
# DNS: names that are not swarmnet's go to an upstream that does not exist
# (nothing listens on port 9 of the hosts' loopback), so no query leaves the
# test's namespaces; the checks ask only for NAME.NETWORK, which swarmnetd
# answers itself.
CLUSTER_LOG_LEVEL="${CLUSTER_LOG_LEVEL:-info}"
CLUSTER_DAEMON_ARGS="--reclaim-after-s $RECLAIM_S --dns-upstream 127.0.0.1:9 ${CLUSTER_DAEMON_ARGS:-}"
NETS=(na nb)
declare -A NET_SUBNET=([na]=10.236.0.0/24 [nb]=10.237.0.0/24) NET_GW=([na]=10.236.0.1 [nb]=10.237.0.1)
T0=$SECONDS
cluster_up "$HOSTS"
EVENTS_LOG="$CLUSTER_DIR/chaos-events.log"
[[ -z "${KEEP_LOGS:-}" ]] || info "logs kept in $CLUSTER_DIR (events: $EVENTS_LOG)"
log_event() { printf '%(%T)T %s\n' -1 "$*" >>"$EVENTS_LOG"; }

# The services' pool: each name has one fixed form; the churn creates and
# removes them. A task keeps its service name when the service goes (as in
# the daemon), so a service created again finds its old tasks.
SERVICES=(web api hc rr rrh)
HEALTH_PORT=8080
HEALTH_ARGS=(--health "http:$HEALTH_PORT/" --health-interval 1 --health-retries 1)
declare -A SVC_NETS=([web]="na nb" [api]="na" [hc]="nb" [rr]="na" [rrh]="nb")
declare -A SVC_MODE=([web]=vip [api]=vip [hc]=vip [rr]=dnsrr [rrh]=dnsrr)
declare -A SVC_HEALTH=([web]=0 [api]=0 [hc]=1 [rr]=0 [rrh]=1)

# ---- the model: what the operations made -------------------------------------------
declare -A C_HOST=() C_NET=() C_SVC=() C_IP=() C_HTTPD=()
declare -a NAMES=()          # containers whose ADD succeeded and that no DEL removed
declare -A PENDING_DEL=()    # name -> "host net": a DEL the runtime still owes (its ADD failed, or its DEL did)
declare -A SVC_UP=()         # service -> 1 while it exists
declare -A SVC_VIP=()        # "service/net" -> VIP
declare -a GONE=()           # containers deleted in this phase (their names must stop resolving)
declare -A DOWN=()           # host -> 1 while its daemon is killed
NEXT_ID=0
MAX_CHURN=$((8 * HOSTS))

HTTPD_ROOT="$CLUSTER_DIR/www"
HTTPD_PIDS="$CLUSTER_DIR/httpd.pids"
mkdir -p "$HTTPD_ROOT"
echo ok >"$HTTPD_ROOT/index.html"
: >"$HTTPD_PIDS"
# Every listener this run started that still runs (its command line names
# this run's directory, so a reused pid is never hit). Before cluster_down.
stop_all_httpd() {
  local pid
  while read -r pid; do
    [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" == *"httpd -f -p $HEALTH_PORT -h $HTTPD_ROOT"* ]] &&
      kill -KILL "$pid" 2>/dev/null
  done <"$HTTPD_PIDS"
  C_HTTPD=()
}
on_exit stop_all_httpd
httpd_start() {
  ip netns exec "$(container_ns "$1")" busybox httpd -f -p "$HEALTH_PORT" -h "$HTTPD_ROOT" \
    </dev/null >/dev/null 2>&1 {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  C_HTTPD[$1]=$!
  echo "$!" >>"$HTTPD_PIDS"
  disown "$!"  # (no "Killed" notice from bash when it goes)
}
httpd_stop() {
  local pid="${C_HTTPD[$1]:-}"
  [[ -n "$pid" ]] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  unset "C_HTTPD[$1]"
}

# hc I ARGS...: swarmnetctl against host I, bounded (a hung call must not hang the run).
hc() { local i="$1"; shift; timeout 20 "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$(host_sock "$i")" "$@"; }
# cni COMMAND HOST NAME NET [SERVICE]: the CNI plugin as a runtime runs it, bounded.
cni() {
  local cmd="$1" i="$2" name="$3" net="$4" svc="${5:-}"
  timeout 30 ip netns exec "$(host_ns "$i")" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$name" \
    CNI_ARGS="${svc:+SWARMNET_SERVICE=$svc}" CNI_NETNS="/var/run/netns/$(container_ns "$name")" CNI_IFNAME=eth0 \
    CNI_PATH="$SWARMNET_BIN_DIR" "$SWARMNET_BIN_DIR/swarmnet" \
    <<<'{"cniVersion":"1.1.0","name":"'"$net"'","type":"swarmnet","daemonSocket":"'"$(host_sock "$i")"'"}'
}

up_hosts() { local i out=(); for ((i = 1; i <= HOSTS; i++)); do [[ -n "${DOWN[$i]:-}" ]] || out+=("$i"); done; echo "${out[@]}"; }
is_up() { [[ -z "${DOWN[$1]:-}" ]]; }
churn_names() { local c out=(); for c in "${NAMES[@]}"; do [[ "$c" == p* ]] || out+=("$c"); done; echo "${out[@]}"; }

# shellcheck disable=SC2034  # counted through count's nameref
declare -A OPS=() REFUSED=() FAULTS=()
count() { local -n _m="$1"; _m[$2]=$((${_m[$2]:-0} + 1)); }

# ---- operations --------------------------------------------------------------------
# add_container HOST NET SERVICE NAME: 0 if the ADD succeeded (the model has it).
add_container() {
  local i="$1" net="$2" svc="$3" name="$4" out
  ip netns add "$(container_ns "$name")"
  ip -n "$(container_ns "$name")" link set lo up
  if out=$(cni ADD "$i" "$name" "$net" "$svc" 2>&1); then
    C_HOST[$name]=$i C_NET[$name]=$net C_SVC[$name]=$svc
    C_IP[$name]=$(jq -r '.ips[0].address | split("/")[0]' <<<"$out")
    NAMES+=("$name")
    log_event "add $name host $i $net service '$svc': ${C_IP[$name]}"
    return 0
  fi
  log_event "add $name host $i $net service '$svc' REFUSED: $(tr '\n' ' ' <<<"$out" | head -c 300)"
  # A runtime whose ADD failed calls DEL (it may find nothing to undo).
  PENDING_DEL[$name]="$i $net"
  retry_del "$name"
  return 1
}
# retry_del NAME: the DEL a runtime owes; the namespace goes once it succeeded.
retry_del() {
  local name="$1" i net
  read -r i net <<<"${PENDING_DEL[$name]}"
  is_up "$i" || return 0
  if cni DEL "$i" "$name" "$net" >/dev/null 2>&1; then
    ip netns del "$(container_ns "$name")" 2>/dev/null || true
    unset "PENDING_DEL[$name]"
  fi
}
retry_pending_dels() { local n; for n in "${!PENDING_DEL[@]}"; do retry_del "$n"; done; }

del_container() {
  local name="$1" c rest=()
  httpd_stop "$name"
  for c in "${NAMES[@]}"; do [[ "$c" == "$name" ]] || rest+=("$c"); done
  NAMES=("${rest[@]}")
  GONE+=("$name.${C_NET[$name]}")
  PENDING_DEL[$name]="${C_HOST[$name]} ${C_NET[$name]}"
  log_event "del $name (host ${C_HOST[$name]} ${C_NET[$name]} ${C_IP[$name]})"
  unset "C_HOST[$name]" "C_NET[$name]" "C_SVC[$name]" "C_IP[$name]"
  retry_del "$name"
}

op_add() {
  local hosts net svc="" choices=() s name="c$((NEXT_ID++))"
  read -ra hosts <<<"$(up_hosts)"
  pick ops "${hosts[@]}"; local i="$PICKED"
  pick ops "${NETS[@]}"; net="$PICKED"
  for s in "${SERVICES[@]}"; do if [[ " ${SVC_NETS[$s]} " == *" $net "* ]]; then choices+=("$s"); fi; done
  rnd ops 4
  if ((R)); then pick ops "${choices[@]}"; svc="$PICKED"; fi
  if add_container "$i" "$net" "$svc" "$name"; then
    count OPS add
    rnd ops 4
    ((R == 0)) || httpd_start "$name"
  else
    count REFUSED add
  fi
}
op_del() {
  local names
  read -ra names <<<"$(churn_names)"
  pick ops "${names[@]}"
  is_up "${C_HOST[$PICKED]}" || return 0
  del_container "$PICKED"
  count OPS del
}
# Moves a container to another service of its network, or out of any.
op_attach() {
  local names name choices=("") s to
  read -ra names <<<"$(churn_names)"
  pick ops "${names[@]}"; name="$PICKED"
  for s in "${SERVICES[@]}"; do if [[ " ${SVC_NETS[$s]} " == *" ${C_NET[$name]} "* ]]; then choices+=("$s"); fi; done
  pick ops "${choices[@]}"; to="$PICKED"
  is_up "${C_HOST[$name]}" || return 0
  [[ "$to" != "${C_SVC[$name]}" ]] || return 0
  local out cmd=(service detach)
  [[ -z "$to" ]] || cmd=(service attach "$to")
  if out=$(hc "${C_HOST[$name]}" "${cmd[@]}" --network "${C_NET[$name]}" --container "$name" 2>&1); then
    log_event "move $name (host ${C_HOST[$name]}) from '${C_SVC[$name]}' to '$to'"
    C_SVC[$name]="$to"
    count OPS attach
    return 0
  fi
  log_event "move $name from '${C_SVC[$name]}' to '$to' REFUSED: $(head -c 300 <<<"$out")"
  count REFUSED attach
}
op_flip() {
  local names name
  read -ra names <<<"$(churn_names)"
  pick ops "${names[@]}"; name="$PICKED"
  if [[ -n "${C_HTTPD[$name]:-}" ]]; then httpd_stop "$name"; else httpd_start "$name"; fi
  log_event "flip $name (service '${C_SVC[$name]}') listener $([[ -n "${C_HTTPD[$name]:-}" ]] && echo on || echo off)"
  count OPS flip
}
# create_service HOST NAME: 0 if created (the model records its VIPs).
create_service() {
  local i="$1" s="$2" args=() n out
  for n in ${SVC_NETS[$s]}; do args+=(--network "$n"); done
  args+=(--endpoint-mode "${SVC_MODE[$s]}")
  ((SVC_HEALTH[$s] == 0)) || args+=("${HEALTH_ARGS[@]}")
  if out=$(hc "$i" service create "$s" "${args[@]}" 2>&1) && out=$(hc "$i" service inspect "$s" 2>&1); then
    SVC_UP[$s]=1
    if [[ "${SVC_MODE[$s]}" == vip ]]; then
      for n in ${SVC_NETS[$s]}; do SVC_VIP[$s/$n]=$(jq -r --arg n "$n" '.vips[$n] // empty' <<<"$out"); done
    fi
    log_event "service create $s on host $i: $(jq -c .vips <<<"$out")"
    return 0
  fi
  log_event "service create $s on host $i REFUSED: $(head -c 300 <<<"$out")"
  return 1
}
op_service() {
  local hosts s out
  read -ra hosts <<<"$(up_hosts)"
  pick ops "${hosts[@]}"; local i="$PICKED"
  pick ops "${SERVICES[@]}"; s="$PICKED"
  if [[ -n "${SVC_UP[$s]:-}" ]]; then
    if out=$(hc "$i" service rm "$s" 2>&1); then
      unset "SVC_UP[$s]"
      log_event "service rm $s on host $i"
      count OPS service-rm
    else
      log_event "service rm $s on host $i REFUSED: $(head -c 300 <<<"$out")"
      count REFUSED service-rm
    fi
  elif create_service "$i" "$s"; then
    count OPS service-create
  else
    count REFUSED service-create
  fi
}
op_random() {
  local n
  n=$(churn_names | wc -w)
  rnd ops 100
  if ((n < 2 || (R < 35 && n < MAX_CHURN))); then op_add
  elif ((R < 55)); then op_del
  elif ((R < 70)); then op_attach
  elif ((R < 88)); then op_flip
  else op_service
  fi
}

# ---- faults --------------------------------------------------------------------------
U="$CLUSTER_TAG-u"
ip netns exec "$U" nft -f - <<EOF
table bridge swnchaos {
  chain faults {
    type filter hook forward priority 0; policy accept;
  }
}
EOF
cut_off() {  # cut_off HOST: nothing crosses the underlay to or from it
  ip netns exec "$U" nft add rule bridge swnchaos faults iifname "${CLUSTER_TAG}h$1" drop
  ip netns exec "$U" nft add rule bridge swnchaos faults oifname "${CLUSTER_TAG}h$1" drop
}
lose() { ip netns exec "$U" nft add rule bridge swnchaos faults numgen random mod 100 '<' "$1" drop; }
heal_net() { ip netns exec "$U" nft flush chain bridge swnchaos faults; }

kill_daemon() { host_daemon_stop "$1" KILL; DOWN[$1]=1; log_event "SIGKILL swarmnetd on host $1"; }
# restart_daemon HOST: 0 once its API answers; a daemon that does not come
# back is a violation (and ends the campaign: later phases would only see it).
restart_daemon() {
  local i="$1"
  host_daemon_launch "$i"
  if wait_for 30 hc "$i" status; then
    unset "DOWN[$i]"
    log_event "swarmnetd on host $i restarted"
    return 0
  fi
  violation "swarmnetd on host $i did not answer within 30 s of its restart: $(tail -n 3 "$CLUSTER_DIR/h$i/swarmnetd.log" | tr '\n' ' ')"
  return 1
}

# A burst of ADDs on host I, in the background, that a SIGKILL will cut
# into (a restart at the wrong moment). Names are drawn here, so a replay
# makes the same ones; the outcome of each is read by burst_collect.
BURST=()
burst_start() {
  local i="$1" k n name net
  rnd_in ops 4 8; n=$R
  BURST=()
  mkdir -p "$CLUSTER_DIR/burst"
  for ((k = 0; k < n; k++)); do
    name="b$((NEXT_ID++))"
    pick ops "${NETS[@]}"; net="$PICKED"
    BURST+=("$name $i $net")
    ip netns add "$(container_ns "$name")"
    ip -n "$(container_ns "$name")" link set lo up
    (cni ADD "$i" "$name" "$net" >"$CLUSTER_DIR/burst/$name.out" 2>&1; echo $? >"$CLUSTER_DIR/burst/$name.rc") &
  done
}
burst_collect() {
  local b name i net ok=0 failed=0
  # shellcheck disable=SC2016  # expanded by the inner bash
  wait_for 40 bash -c 'for b in "$@"; do [[ -s "$0/burst/${b%% *}.rc" ]] || exit 1; done' "$CLUSTER_DIR" "${BURST[@]}" || true
  for b in "${BURST[@]}"; do
    read -r name i net <<<"$b"
    if [[ "$(cat "$CLUSTER_DIR/burst/$name.rc" 2>/dev/null)" == 0 ]]; then
      C_HOST[$name]=$i C_NET[$name]=$net C_SVC[$name]=""
      C_IP[$name]=$(jq -r '.ips[0].address | split("/")[0]' "$CLUSTER_DIR/burst/$name.out")
      NAMES+=("$name")
      log_event "burst add $name host $i $net: ${C_IP[$name]}"
      ok=$((ok + 1)); count OPS add
    else
      log_event "burst add $name host $i $net failed: $(head -c 200 "$CLUSTER_DIR/burst/$name.out")"
      PENDING_DEL[$name]="$i $net"
      failed=$((failed + 1)); count REFUSED add
    fi
  done
  BURST=()
  BURST_RESULT="$ok ok, $failed failed"
}

# ---- the invariants --------------------------------------------------------------------
VIOLATIONS=()
PHASE_DESC=""
SHOWN_PHASE=-1
violation() {
  VIOLATIONS+=("phase $PHASE ($PHASE_DESC): $*")
  echo "VIOLATION: phase $PHASE ($PHASE_DESC): $*"
  # The phase's events, once, for whoever reads a CI log.
  if ((SHOWN_PHASE != PHASE)); then
    SHOWN_PHASE=$PHASE
    info "events of phase $PHASE so far:"
    awk -v p="phase $PHASE:" 'index($0, p) {on = 1} on' "$EVENTS_LOG" | tail -n 40 | sed 's/^/      /'
  fi
  log_event "VIOLATION: $*"
}

# dump I: host I's tables, one sorted line per endpoint and service.
dump() {
  local i="$1" n
  {
    for n in "${NETS[@]}"; do
      hc "$i" endpoint ls "$n" --format json 2>/dev/null |
        jq -r --arg n "$n" '.[] | "ep \($n) \(.container_id) \(.ifname) \(.node) \(.address | split("/")[0]) \(.service // "")"' ||
        echo "error: host $i did not list the endpoints of $n"
    done
    hc "$i" service ls --format json 2>/dev/null |
      jq -r '.[] | "svc \(.name) \(.id) \(.endpoint_mode) \(.networks | join(",")) \(.vips | to_entries | map("\(.key)=\(.value)") | join(",")) tasks=\(.task_count) healthy=\(.healthy_count)"' ||
      echo "error: host $i did not list the services"
  } | sort
}
# The same lines as the operations made them, without what only the daemon
# knows (node ids are names here, services' ids): compared with host 1's dump.
model_view() {
  local c s n tasks healthy
  {
    for c in "${NAMES[@]}"; do echo "ep ${C_NET[$c]} $c eth0 ${NODE_ID[${C_HOST[$c]}]} ${C_IP[$c]} ${C_SVC[$c]}"; done
    for s in "${!SVC_UP[@]}"; do
      if [[ "${SVC_MODE[$s]}" == vip ]]; then
        for n in ${SVC_NETS[$s]}; do echo "vip $n svc-vip-$s ${SVC_VIP[$s/$n]}"; done
      fi
      tasks=0 healthy=0
      for c in "${NAMES[@]}"; do
        [[ "${C_SVC[$c]}" == "$s" ]] || continue
        tasks=$((tasks + 1))
        if task_healthy "$c"; then healthy=$((healthy + 1)); fi
      done
      echo "svc $s ${SVC_MODE[$s]} tasks=$tasks healthy=$healthy"
    done
  } | sort
}
# task_healthy NAME: what its service's checker must conclude (no check: healthy).
task_healthy() { ((SVC_HEALTH[${C_SVC[$1]}] == 0)) || [[ -n "${C_HTTPD[$1]:-}" ]]; }
# A dump seen as model_view lines: VIP reservations by service, services
# without their ids.
as_model() {
  awk '$1 == "ep" && $3 ~ /^svc-vip-/ { print "vip", $2, $3, $6; next }
       $1 == "ep" { print; next }
       $1 == "svc" { print "svc", $2, $4, $(NF-1), $NF }' | sort
}
# members_state: "ok" when every host sees every node alive, or who does not.
members_state() {
  local i c out=""
  for ((i = 1; i <= HOSTS; i++)); do
    c=$(hc "$i" node ls --format json 2>/dev/null | jq -r --argjson n "$HOSTS" '[(.[] | select(.status != "alive") | "\(.name) \(.status)"),
        (if ([.[] | select(.status == "alive")] | length) != $n then "\([.[] | select(.status == "alive")] | length) alive" else empty end)] | join(", ")') ||
      c="no answer"
    [[ -z "$c" ]] || out+="host $i sees $c; "
  done
  echo "${out:-ok}"
}
# tables_state: "ok", or what differs (first lines).
tables_state() {
  local i d1 di
  d1=$(dump 1)
  for ((i = 2; i <= HOSTS; i++)); do
    di=$(dump "$i")
    [[ "$di" == "$d1" ]] || { echo "host $i differs from host 1: $(diff <(echo "$d1") <(echo "$di") | grep '^[<>]' | head -4 | tr '\n' ';')"; return; }
  done
  di=$(as_model <<<"$d1")
  [[ "$di" == "$(model_view)" ]] || { echo "the tables differ from what the operations made: $(diff <(model_view) <(echo "$di") | grep '^[<>]' | head -4 | tr '\n' ';')"; return; }
  echo ok
}
lb_state() {
  local i out
  for ((i = 1; i <= HOSTS; i++)); do
    out=$(hc "$i" lb check 2>&1) || { echo "host $i: $(head -2 <<<"$out" | tr '\n' ';')"; return; }
  done
  echo ok
}
# DNS: every host's answers for every name, asked from its probe container
# on each network at the gateway (what a container sees).
dns_names() {  # dns_names NET: the names to ask on NET
  local n="$1" c s
  for c in "${NAMES[@]}"; do if [[ "${C_NET[$c]}" == "$n" ]]; then echo "$c.$n"; fi; done
  for s in "${SERVICES[@]}"; do if [[ " ${SVC_NETS[$s]} " == *" $n "* ]]; then echo "$s.$n tasks.$s.$n"; fi; done
  for c in "${GONE[@]}"; do if [[ "$c" == *".$n" ]]; then echo "$c"; fi; done
}
dns_answers() {  # dns_answers HOST NET
  local i="$1" n="$2"
  # shellcheck disable=SC2046
  timeout 10 ip netns exec "$(container_ns "p$i$n")" stdbuf -oL dig +noall +answer +comments +tries=1 +time=1 \
    "@${NET_GW[$n]}" $(dns_names "$n") >"$CLUSTER_DIR/dns/raw-$i-$n" 2>&1 || echo "dig exit $?" >>"$CLUSTER_DIR/dns/raw-$i-$n"
  awk '$4 == "A" { sub(/\.$/, "", $1); print $1, $5 }' "$CLUSTER_DIR/dns/raw-$i-$n" | sort
}
dns_model() {  # dns_model NET: the answers the operations call for
  local n="$1" c s
  {
    for c in "${NAMES[@]}"; do if [[ "${C_NET[$c]}" == "$n" ]]; then echo "$c.$n ${C_IP[$c]}"; fi; done
    for s in "${!SVC_UP[@]}"; do
      [[ " ${SVC_NETS[$s]} " == *" $n "* ]] || continue
      if [[ "${SVC_MODE[$s]}" == vip ]]; then echo "$s.$n ${SVC_VIP[$s/$n]}"; fi
      for c in "${NAMES[@]}"; do
        [[ "${C_SVC[$c]}" == "$s" && "${C_NET[$c]}" == "$n" ]] || continue
        task_healthy "$c" || continue
        echo "tasks.$s.$n ${C_IP[$c]}"
        if [[ "${SVC_MODE[$s]}" == dnsrr ]]; then echo "$s.$n ${C_IP[$c]}"; fi
      done
    done
  } | sort
}
# dns_diag HOST NET: why a probe's queries go unanswered, in one line: does
# the gateway address sit on a bridge, does anything listen on it, is the
# probe's host end on that bridge, does the gateway answer a ping.
dns_diag() {
  local i="$1" n="$2" hns cns gw host_if br mac
  hns=$(host_ns "$i") cns=$(container_ns "p$i$n") gw="${NET_GW[$n]}"
  host_if=$(hc "$i" endpoint ls "$n" --format json 2>/dev/null |
    jq -r --arg c "p$i$n" '.[] | select(.container_id == $c) | .host_ifname' || true)
  br=$(ip -n "$hns" -o -4 addr show | awk -v a="$gw" 'index($4, a "/") == 1 {print $2; exit}')
  mac=$(ip netns exec "$cns" ip neigh show "$gw" 2>/dev/null | grep -o 'lladdr [^ ]*' | cut -d' ' -f2)
  echo "gateway $gw on: ${br:-nothing}" \
    "| udp sockets on it: $(ip netns exec "$hns" ss -Hlun "src $gw" 2>/dev/null | wc -l)" \
    "| probe's veth ${host_if:-?}: $(ip -n "$hns" -o link show dev "${host_if:-none}" 2>/dev/null | grep -o 'master [^ ]*\|state [A-Z]*' | tr '\n' ' ')" \
    "| ping gateway: $(ip netns exec "$cns" ping -c 1 -W 1 "$gw" >/dev/null 2>&1 && echo ok || echo lost)" \
    "| probe's neighbour entry: ${mac:-none}; bridge's MAC: $(ip -n "$hns" -o link show dev "${br:-none}" 2>/dev/null | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)" \
    "| bridge fdb for it: $(bridge -n "$hns" fdb show br "${br:-none}" 2>/dev/null | grep -i "^${mac:-none} " | tr '\n' ';')" \
    "| nft DNS flood drops: $(ip netns exec "$hns" nft list chain inet swarmnet dns-input 2>/dev/null | grep -o 'packets [0-9]*' | head -1)"
  # CHAOS_STACKS=1: the daemon's threads as they are, once a phase (for whoever debugs a stall).
  if [[ -n "${CHAOS_STACKS:-}" && ! -e "$CLUSTER_DIR/stacks-phase$PHASE-h$i" ]] && command -v gdb >/dev/null; then
    timeout 30 gdb -p "${_CLUSTER_PIDS[$i]}" -batch -ex 'thread apply all bt 12' >"$CLUSTER_DIR/stacks-phase$PHASE-h$i" 2>&1 || true
  fi
}
dns_state() {
  local i n want got d="$CLUSTER_DIR/dns"
  mkdir -p "$d"
  # All at once: a host whose DNS does not answer costs one timeout, not one per name.
  for n in "${NETS[@]}"; do
    for ((i = 1; i <= HOSTS; i++)); do dns_answers "$i" "$n" >"$d/$i-$n" & done
  done
  wait
  for n in "${NETS[@]}"; do
    want=$(dns_model "$n")
    for ((i = 1; i <= HOSTS; i++)); do
      got=$(cat "$d/$i-$n")
      [[ "$got" == "$want" ]] || { if grep -q 'timed out' "$d/raw-$i-$n"; then echo -n "[$(dns_diag "$i" "$n")] "; fi; echo "host $i on $n ($(grep -c 'status: NOERROR' "$d/raw-$i-$n") NOERROR, $(grep -c 'status: NXDOMAIN' "$d/raw-$i-$n") NXDOMAIN, $(grep -c 'status: SERVFAIL' "$d/raw-$i-$n") SERVFAIL, $(grep -ci 'timed out\|no servers' "$d/raw-$i-$n") timeouts$(grep -o 'dig exit [0-9]*' "$d/raw-$i-$n" | sed 's/^/, /')): $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | head -4 | tr '\n' ';')"; return; }
    done
  done
  echo ok
}

# live: "name address" for eth0 of every container namespace of this run.
live() {
  local ns
  for ns in $(ip netns list | awk -v p="$CLUSTER_TAG-c-" 'index($1, p) == 1 {print $1}'); do
    ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null |
      awk -v n="${ns#"$CLUSTER_TAG-c-"}" '{split($4, a, "/"); print n, a[1]}'
  done | sort
}
# addresses_check WHEN [TABLES]: no address live twice (interfaces; with
# TABLES also the union of the up hosts' tables); each container holds the
# address its ADD returned.
address_findings() {  # what addresses_check finds, a line each
  local tables="${1:-}" l d c i
  l=$(live)
  d=$(awk '{print $2}' <<<"$l" | sort | uniq -d | tr '\n' ' ')
  [[ -z "$d" ]] || echo "address(es) live in two containers: $d($(grep -wF -e "${d%% *}" <<<"$l" | tr '\n' ' '))"
  for c in "${NAMES[@]}"; do
    grep -qx "$c ${C_IP[$c]}" <<<"$l" || echo "$c should hold ${C_IP[$c]}, has: $(awk -v c="$c" '$1 == c {print $2}' <<<"$l")"
  done
  # A VIP is an address too (a local route through the bridges of the hosts
  # that balance it, the same on each, lb/vip_addresses.hpp): never one a
  # container holds.
  d=$(for ((i = 1; i <= HOSTS; i++)); do
    ip -n "$(host_ns "$i")" -4 route show table local proto 83 2>/dev/null | awk '$1 == "local" {print $2}'
  done | sort -u | grep -xF -f <(awk '{print $2}' <<<"$l") | tr '\n' ' ' || true)
  [[ -z "$d" ]] || echo "VIP address(es) also live in a container: $d"
  [[ -n "$tables" ]] || return 0
  # Per network, an address under two endpoint keys anywhere in the cluster.
  d=$(for i in $(up_hosts); do dump "$i"; done | awk '$1 == "ep" {print $2, $6, $3, $4}' | sort -u |
    awk '{k = $1 " " $2; n[k]++; who[k] = who[k] " " $3} END {for (k in n) if (n[k] > 1) print k ":" who[k]}')
  [[ -z "$d" ]] || echo "an address under two endpoints in the nodes' tables: $(tr '\n' ';' <<<"$d")"
}
addresses_check() {  # addresses_check WHEN [tables]
  local f
  while read -r f; do [[ -z "$f" ]] || violation "$1: $f"; done <<<"$(address_findings "${2:-}")"
}

# repair: after a phase that did not converge, a container whose endpoint
# no table holds any more (the cluster reclaimed it) is removed as a runtime
# would remove it (DEL, then its namespace), and a probe made again, so the
# next phases are judged on what they do, not on this phase's loss again.
repair() {
  local t c i n
  t=$(dump 1)
  for c in "${NAMES[@]}"; do
    grep -q "^ep ${C_NET[$c]} $c " <<<"$t" && continue
    info "repair: $c (host ${C_HOST[$c]}, ${C_IP[$c]}) is in no table any more: removed as its runtime would"
    log_event "repair: $c (${C_IP[$c]}) lost from the tables"
    i=${C_HOST[$c]} n=${C_NET[$c]}
    del_container "$c"
    if [[ "$c" == p* ]]; then add_container "$i" "$n" "" "$c" >/dev/null || die "the probe $c could not be made again"; fi
  done
}

CONVERGE_TIMES=()
when() { if [[ -n "$1" ]]; then echo "$(secs "$1") s"; else echo never; fi; }
# converge: after a heal, poll every invariant; the time to converge is the
# moment they all hold at once. One that does not hold 5 s after the heal is
# a violation (with the time it took, if it came later).
converge() {
  local start="$1" t ms ts ls ds tm="" tt="" tl="" td="" all="" late=() late_fixed=0
  while :; do
    now_ms; t=$((NOW - start))
    # What the last look begun within the 5 s found wrong: the violation if
    # no look begun within them found everything right.
    if ((!late_fixed)); then
      ((t <= ON_TIME_MS)) || late_fixed=1
      late=()
      [[ -z "${ms:-}" || "$ms" == ok ]] || late+=("membership: $ms")
      [[ -z "${ts:-}" || "$ts" == ok ]] || late+=("tables: $ts")
      [[ -z "${ls:-}" || "$ls" == ok ]] || late+=("lb check: $ls")
      [[ -z "${ds:-}" || "$ds" == ok || "$ds" == "not asked"* ]] || late+=("dns: $ds")
    fi
    ms=$(members_state); [[ "$ms" != ok || -n "$tm" ]] || tm=$t
    ts=$(tables_state); [[ "$ts" != ok || -n "$tt" ]] || tt=$t
    ls=$(lb_state); [[ "$ls" != ok || -n "$tl" ]] || tl=$t
    # The answers follow the tables: asked once these agree.
    ds="not asked (the tables differ)"
    if [[ "$ts" == ok ]]; then ds=$(dns_state); [[ "$ds" != ok || -n "$td" ]] || td=$t; fi
    if [[ "$ms" == ok && "$ts" == ok && "$ls" == ok && "$ds" == ok ]]; then all=$t; break; fi
    now_ms
    ((NOW - start < CONVERGE_MAX * 1000)) || break
    sleep 0.2
  done
  if [[ -n "$all" ]]; then
    CONVERGE_TIMES+=("$all")
    CONVERGED_IN="$(secs "$all") s"
  else
    CONVERGE_TIMES+=("never")
    CONVERGED_IN="not within ${CONVERGE_MAX} s"
  fi
  if [[ -z "$all" || "$all" -gt "$ON_TIME_MS" ]]; then
    ((${#late[@]})) || late+=("membership: $ms" "tables: $ts" "lb check: $ls" "dns: $ds")
    local what
    for what in "${late[@]}"; do
      [[ "$what" != *": ok" ]] || continue
      violation "not converged 5 s after the heal ($CONVERGED_IN): $what"
    done
    info "first right after the heal: membership $(when "$tm"), tables $(when "$tt"), lb check $(when "$tl"), dns $(when "$td")"
  fi
}

# ---- setup --------------------------------------------------------------------------------
say "networks ${NETS[*]}; services ${SERVICES[*]}; a probe container per host and network"
PHASE=0
PHASE_DESC="setup"
for n in "${NETS[@]}"; do hc 1 network create "$n" --subnet "${NET_SUBNET[$n]}" >/dev/null; done
now_ms; t_net=$NOW
# A network reaches the others by gossip; one not there within 5 s is a
# finding (a lost update), but the campaign needs it: wait for the repair.
for ((i = 2; i <= HOSTS; i++)); do
  for n in "${NETS[@]}"; do wait_for 45 hc "$i" network inspect "$n" || die "host $i does not know network $n after 45 s (seed $SEED)"; done
done
now_ms
((NOW - t_net <= ON_TIME_MS)) || violation "the networks reached every host only after $(secs $((NOW - t_net))) s"
declare -A NODE_ID=()
for ((i = 1; i <= HOSTS; i++)); do
  NODE_ID[$i]=$(hc "$i" node ls --format json | jq -r '.[] | select(.self) | .id')
  for n in "${NETS[@]}"; do add_container "$i" "$n" "" "p$i$n" >/dev/null || die "the probe container p$i$n could not be added"; done
done
for s in "${SERVICES[@]}"; do create_service 1 "$s" || die "service $s could not be created"; done
now_ms
converge "$NOW"
info "the cluster agrees: $CONVERGED_IN"
[[ "${CONVERGE_TIMES[0]}" != never ]] || die "the cluster did not agree before any fault (seed $SEED)"
CONVERGE_TIMES=()

# ---- the phases ---------------------------------------------------------------------------
declare -a PHASE_LINES=()
run_phase() {
  local kind h d_ms ops loss burst k start t_fault
  draw_phase
  kind=$P_KIND h=$P_HOST d_ms=$P_MS ops=$P_OPS loss=$P_LOSS burst=$P_BURST
  say "phase $PHASE: $PHASE_DESC"
  log_event "phase $PHASE: $PHASE_DESC"
  count FAULTS "$kind"
  GONE=()
  now_ms; t_fault=$NOW
  case "$kind" in
    kill)
      if ((burst)); then
        burst_start "$h"
        rnd ops 300; sleep "0.$(printf '%03d' "$R")"
      fi
      kill_daemon "$h"
      if ((burst)); then burst_collect; info "burst: $BURST_RESULT"; fi
      ;;
    partition) cut_off "$h" ;;
    loss) lose "$loss" ;;
    cut-kill) cut_off "$h"; kill_daemon "$h" ;;
  esac
  for ((k = 0; k < ops; k++)); do op_random; done
  if [[ "$kind" == cut-kill ]]; then
    # Restarted while still cut off, then a few more
    # operations there and elsewhere before the heal.
    restart_daemon "$h" || return 1
    retry_pending_dels
    for ((k = 0; k < 3; k++)); do op_random; done
  fi
  now_ms
  if ((NOW - t_fault < d_ms)); then sleep "$(secs $((d_ms - (NOW - t_fault))))"; fi
  addresses_check "before the heal"
  # The heal.
  case "$kind" in
    kill) restart_daemon "$h" || return 1 ;;
    partition | loss | cut-kill) heal_net ;;
  esac
  now_ms; start=$NOW
  retry_pending_dels
  converge "$start"
  addresses_check "after the heal" tables
  [[ "${CONVERGE_TIMES[-1]}" != never ]] || ((!REPAIR)) || repair
  info "converged: $CONVERGED_IN; $(churn_names | wc -w) containers, ${#PENDING_DEL[@]} DEL(s) owed, services: ${!SVC_UP[*]}"
  PHASE_LINES+=("$PHASE|$kind|$PHASE_DESC|$CONVERGED_IN")
}

END_AT=$((SECONDS + DURATION))
STOPPED=""
PHASE=1
while ((SECONDS < END_AT)) && ((MAX_PHASES == 0 || PHASE <= MAX_PHASES)); do
  if ! run_phase; then STOPPED="the campaign stopped at phase $PHASE (a daemon did not come back)"; break; fi
  PHASE=$((PHASE + 1))
done
PHASES_RUN=$((PHASE - 1))
[[ -z "$STOPPED" ]] || PHASES_RUN=$PHASE

# ---- controls: each check sees what it exists to see --------------------------------------
# After the campaign (they change the cluster behind the model's back): an
# address put twice, an endpoint made through the API alone, a name that must
# not resolve but does, a backend deleted from one host's kernel. A checker
# that says "ok" to these could not have found a violation either.
CONTROLS_FAILED=0
# control WHAT BEFORE AFTER: the check's verdict before the violation was
# made (must be clean, "" or ok, for the control to say anything) and after
# (must not be).
control() {
  if [[ -n "$2" && "$2" != ok ]]; then
    info "control: $1: not conclusive, the check already failed before ($(head -c 120 <<<"$2"))"
  elif [[ -n "$3" && "$3" != ok ]]; then
    info "control: $1: seen ($(head -c 160 <<<"$3"))"
  else
    echo "CONTROL FAILED: $1: the check did not see it"; CONTROLS_FAILED=$((CONTROLS_FAILED + 1))
  fi
}
run_controls() {
  local c ns vip br before before_dns
  say "controls: each invariant's check sees a violation made on purpose"
  PHASE_DESC="controls"
  c="${NAMES[0]}"
  ns=$(container_ns ctl-dup)
  before=$(address_findings)
  ip netns add "$ns"
  ip -n "$ns" link add eth0 type veth peer name eth1
  ip -n "$ns" addr add "${C_IP[$c]}/32" dev eth0
  control "the address of $c live in a second namespace" "$before" "$(address_findings)"
  ip netns del "$ns"
  br=$(ip -n "$(host_ns 1)" -o -4 addr show | awk -v a="${NET_GW[na]}" 'index($4, a "/") == 1 {print $2; exit}')
  # A VIP is a local route of protocol 83 through the bridge (lb/vip_addresses.hpp).
  ip -n "$(host_ns 1)" route add local "${C_IP[$c]}" dev "$br" table local proto 83
  control "the address of $c on host 1's bridge, as a VIP" "$before" "$(address_findings)"
  ip -n "$(host_ns 1)" route del local "${C_IP[$c]}" dev "$br" table local proto 83
  before=$(tables_state) before_dns=$(dns_state)
  curl -sf --unix-socket "$(host_sock 1)" -X POST -H 'Content-Type: application/json' \
    -d '{"container_id":"ctlextra","ifname":"eth0","attach":false}' \
    http://swarmnetd/v1/networks/na/endpoints >/dev/null || die "the control endpoint could not be made"
  sleep 2
  control "an endpoint the operations did not make" "$before" "$(tables_state)"
  GONE=(ctlextra.na)
  control "a name that must not resolve" "$before_dns" "$(dns_state)"
  curl -sf --unix-socket "$(host_sock 1)" -X DELETE http://swarmnetd/v1/networks/na/endpoints/ctlextra/eth0 >/dev/null || true
  for ((i = 1; i <= HOSTS; i++)); do
    vip=$(ip netns exec "$(host_ns "$i")" nft -j list map ip swarmnet-lb backends 2>/dev/null |
      jq -r '[.nftables[] | select(.map) | .map.elem // [] | .[] | .[0].concat | "\(.[0]) . \(.[1])"] | first // empty')
    if [[ -n "$vip" ]]; then
      before=$(lb_state)
      ip netns exec "$(host_ns "$i")" nft delete element ip swarmnet-lb backends "{ $vip }"
      control "backend $vip deleted from host $i's kernel" "$before" "$(lb_state)"
      return
    fi
  done
  info "control: lb check not tried (no host balances a backend now)"
}
if [[ -z "$STOPPED" ]]; then run_controls; fi

# ---- summary ------------------------------------------------------------------------------
# shellcheck disable=SC2178
kv() { local -n _m="$1"; local k out=""; for k in "${!_m[@]}"; do out+="$k ${_m[$k]}, "; done; echo "${out%, }"; }
# shellcheck disable=SC2178
sum() { local -n _m="$1"; local k t=0; for k in "${!_m[@]}"; do t=$((t + ${_m[$k]})); done; echo "$t"; }
n_ops=$(sum OPS); n_ref=$(sum REFUSED); n_faults=$(( $(sum FAULTS) - ${FAULTS[none]:-0} ))
times=$(printf '%s\n' "${CONVERGE_TIMES[@]}" | grep -v never | sort -n || true)
echo
echo "==== chaos summary: seed $SEED, $HOSTS hosts, $PHASES_RUN phases in $((SECONDS - T0)) s"
echo "events: $((n_ops + n_ref + n_faults)) (operations done $n_ops: $(kv OPS); refused $n_ref$( ((n_ref == 0)) || echo ": $(kv REFUSED)"); faults $n_faults)"
echo "phases by fault: $(kv FAULTS)"
if [[ -n "$times" ]]; then
  echo "time to converge after a heal: min $(secs "$(head -1 <<<"$times")") s, median $(secs "$(sed -n "$((($(wc -l <<<"$times") + 1) / 2))p" <<<"$times")") s, max $(secs "$(tail -1 <<<"$times")") s; never: $(printf '%s\n' "${CONVERGE_TIMES[@]}" | grep -c never || true)"
fi
for l in "${PHASE_LINES[@]}"; do
  IFS='|' read -r p kind desc conv <<<"$l"
  printf '  phase %3d  %-9s converged %-18s %s\n' "$p" "$kind" "$conv" "$desc"
done
[[ -z "$STOPPED" ]] || echo "$STOPPED"
echo "invariant violations: ${#VIOLATIONS[@]}"
for v in "${VIOLATIONS[@]}"; do echo "  $v"; done
if ((CONTROLS_FAILED)); then echo "test_chaos: $CONTROLS_FAILED control(s) failed: the checks cannot be trusted"; exit 1; fi
if ((${#VIOLATIONS[@]})); then
  echo "test_chaos: ${#VIOLATIONS[@]} violation(s); replay with: integration/test_chaos.sh --seed $SEED --phases $PHASES_RUN$( ((LONG_FAULTS)) && echo " --long-faults")$( ((REPAIR)) || echo " --no-repair")$( ((CONVERGE_MAX != 30)) && echo " --converge-max $CONVERGE_MAX")$( ((HOSTS != 3)) && echo " --hosts $HOSTS")"
  exit 1
fi
echo "test_chaos: no violation (seed $SEED)"
