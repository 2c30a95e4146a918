# shellcheck shell=bash
# An N-host swarmnet cluster on one machine (source after common.sh).
#
#   cluster_up N [NETWORK_ARGS]   N host namespaces on one underlay bridge, a
#                                 swarmnetd in each, `cluster init` on host 1 and
#                                 `cluster join` on the others; waits until every
#                                 node sees N alive nodes
#   cluster_down                  stops every daemon (by pid) and removes every
#                                 namespace, link and file it made (also runs on exit)
#   host_ns I                     the network namespace of host I (1-based)
#   host_ip I                     host I's underlay address
#   host_sock I                   host I's swarmnetd API socket
#   hctl I ARGS...                swarmnetctl against host I
#   host_daemon_start I / host_daemon_stop I [SIGNAL]
#   host_daemon_launch I          host_daemon_start without waiting for the API
#   host_add I                    one more host namespace (I > N) with its daemon
#                                 started, not joined; removed by cluster_down
#   alive_count I / alive_is I N  how many nodes host I sees alive / whether that is N
#   node_status I NAME            the state (alive/suspect/dead/left) of node NAME
#                                 as host I sees it ("" if host I does not know it)
#   container_add I NAME NETWORK  a "container": a namespace attached by the real
#                                 CNI plugin run inside host I's namespace; prints its address
#   container_del I NAME NETWORK  CNI DEL, then the namespace goes
#                                 (containers added in background jobs are removed
#                                 by cluster_down too: it sweeps "$CLUSTER_TAG-c-*")
#   container_ns NAME             the container's namespace
#   outside_up                    an "outside" namespace on the underlay (not a node)
#   task_servers NAME IP          in container NAME: busybox httpd on port 80 (its
#                                 page is NAME) and dnsmasq on UDP 53 (who.test = IP);
#                                 pids in TASK_PIDS[NAME-http] and [NAME-dns], stopped on exit
#
# Layout: namespace "$CLUSTER_TAG-u" holds the underlay bridge; host I is
# "$CLUSTER_TAG-hI" with eth0 = 172.31.250.(10+I)/24 on it (an address only
# inside these namespaces); containers are "$CLUSTER_TAG-c-NAME". Each host
# gets /etc/netns/HOST/cni/net.d/ (what `ip netns exec HOST ctr run --cni`
# reads in place of /etc/cni/net.d), naming that host's daemon socket.
#
# Env: CLUSTER_TAG (default swc$$), CLUSTER_LOG_LEVEL (default debug),
#      CLUSTER_DAEMON_ARGS (extra swarmnetd flags, e.g. faster gossip timings),
#      CLUSTER_INIT_ARGS (extra `cluster init` flags, e.g. --default-addr-pool).

if [[ -n "${_SWARMNET_CLUSTER_SH:-}" ]]; then return 0; fi
_SWARMNET_CLUSTER_SH=1

CLUSTER_TAG="${CLUSTER_TAG:-swc$$}"
CLUSTER_N=0
CLUSTER_DIR=""
CLUSTER_UNDERLAY="172.31.250"
_CLUSTER_MADE_ETC_CNI=0
declare -A _CLUSTER_PIDS=()
declare -a _CLUSTER_CONTAINERS=()

host_ns() { echo "$CLUSTER_TAG-h$1"; }
host_ip() { echo "$CLUSTER_UNDERLAY.$((10 + $1))"; }
host_sock() { echo "$CLUSTER_DIR/h$1/swarmnetd.sock"; }
hctl() { local i="$1"; shift; "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$(host_sock "$i")" "$@"; }
container_ns() { echo "$CLUSTER_TAG-c-$1"; }
outside_ns() { echo "$CLUSTER_TAG-out"; }

_cluster_make_host() {
  local i="$1" ns
  ns=$(host_ns "$i")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "${CLUSTER_TAG}h$i" type veth peer name eth0 netns "$ns"
  ip link set "${CLUSTER_TAG}h$i" netns "$CLUSTER_TAG-u"
  ip -n "$CLUSTER_TAG-u" link set "${CLUSTER_TAG}h$i" master br0 up
  ip -n "$ns" addr add "$(host_ip "$i")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$CLUSTER_UNDERLAY.1"
  mkdir -p "$CLUSTER_DIR/h$i" "/etc/netns/$ns/cni/net.d"
  cat >"/etc/netns/$ns/cni/net.d/10-swarmnet.conflist" <<JSON
{"cniVersion":"1.0.0","name":"${CLUSTER_CNI_NETWORK:-overlay}","plugins":[{"type":"swarmnet","daemonSocket":"$(host_sock "$i")"}]}
JSON
}

host_daemon_start() {
  host_daemon_launch "$1"
  wait_for 20 hctl "$1" status || { tail -20 "$CLUSTER_DIR/h$1/swarmnetd.log" >&2; die "swarmnetd on host $1 did not start"; }
}

# host_daemon_launch I: start host I's swarmnetd without waiting for its API
# (a test that treats a daemon which does not come back as a finding).
host_daemon_launch() {
  local i="$1" ns
  ns=$(host_ns "$i")
  # shellcheck disable=SC2086
  ip netns exec "$ns" "$SWARMNET_BIN_DIR/swarmnetd" --state-dir "$CLUSTER_DIR/h$i/state" \
    --api-socket "$(host_sock "$i")" --node-name "host$i" --log-level "${CLUSTER_LOG_LEVEL:-debug}" \
    ${CLUSTER_DAEMON_ARGS:-} >>"$CLUSTER_DIR/h$i/swarmnetd.log" 2>&1 </dev/null \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  _CLUSTER_PIDS[$i]=$!
}

# host_daemon_stop I [SIGNAL]: TERM (graceful) by default, KILL to crash it.
host_daemon_stop() {
  local i="$1" sig="${2:-TERM}" pid="${_CLUSTER_PIDS[$1]:-}"
  [[ -n "$pid" ]] || return 0
  if [[ "$sig" == KILL ]]; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  else
    kill_pid "$pid" "swarmnetd on host $i"
  fi
  unset "_CLUSTER_PIDS[$i]"
}

# host_add I: a host beyond those of cluster_up (its daemon runs, not in the cluster).
host_add() {
  local i="$1"
  if ((i > CLUSTER_N)); then CLUSTER_N="$i"; fi
  _cluster_make_host "$i"
  host_daemon_start "$i"
}

node_status() {
  hctl "$1" node ls --format json 2>/dev/null | jq -r --arg n "$2" '.[] | select(.name == $n) | .status'
}

alive_count() { hctl "$1" node ls --format json 2>/dev/null | jq '[.[] | select(.status == "alive")] | length'; }
# alive_is I N: host I sees N nodes alive (for wait_for, which must re-run the
# count: `wait_for S test "$(alive_count I)" == N` would count only once).
alive_is() { [[ "$(alive_count "$1")" == "$2" ]]; }

cluster_up() {
  local n="$1" i token
  CLUSTER_N="$n"
  CLUSTER_DIR=$(mktemp -d /tmp/swarmnet-cluster.XXXXXX)
  on_exit cluster_down
  say "building a $n-host cluster ($CLUSTER_TAG, files in $CLUSTER_DIR)"
  # `ip netns exec` bind-mounts /etc/netns/HOST/cni over /etc/cni: it must exist.
  if [[ ! -e /etc/cni ]]; then mkdir -p /etc/cni; _CLUSTER_MADE_ETC_CNI=1; fi
  ip netns add "$CLUSTER_TAG-u"
  ip -n "$CLUSTER_TAG-u" link add br0 type bridge
  ip -n "$CLUSTER_TAG-u" link set br0 up
  for ((i = 1; i <= n; i++)); do _cluster_make_host "$i"; host_daemon_start "$i"; done
  # shellcheck disable=SC2086
  token=$(hctl 1 cluster init --advertise-addr "$(host_ip 1)" ${CLUSTER_INIT_ARGS:-} | tail -n 1)
  for ((i = 2; i <= n; i++)); do
    hctl "$i" cluster join --token-file - --advertise-addr "$(host_ip "$i")" <<<"$token" >/dev/null ||
      die "host $i could not join"
  done
  for ((i = 1; i <= n; i++)); do
    wait_for 30 alive_is "$i" "$n" || die "host $i sees $(alive_count "$i") of $n nodes alive"
  done
  info "$n nodes alive on every host"
}

cluster_down() {
  local i c
  for c in "${_CLUSTER_CONTAINERS[@]}"; do ip netns del "$(container_ns "$c")" 2>/dev/null || true; done
  _CLUSTER_CONTAINERS=()
  # Those made in background jobs (whose additions to the list were lost).
  for c in $(ip netns list 2>/dev/null | awk -v p="$CLUSTER_TAG-c-" 'index($1, p) == 1 {print $1}'); do
    ip netns del "$c" 2>/dev/null || true
  done
  for i in "${!_CLUSTER_PIDS[@]}"; do host_daemon_stop "$i"; done
  for ((i = 1; i <= CLUSTER_N; i++)); do
    ip netns del "$(host_ns "$i")" 2>/dev/null || true
    rm -rf "/etc/netns/$(host_ns "$i")"
  done
  ip netns del "$(outside_ns)" 2>/dev/null || true
  ip netns del "$CLUSTER_TAG-u" 2>/dev/null || true
  rmdir /etc/netns 2>/dev/null || true
  # Not while another cluster (a concurrent run) still binds /etc/netns/HOST/cni over it.
  if ((_CLUSTER_MADE_ETC_CNI)) && ! compgen -G "/etc/netns/*/cni" >/dev/null; then
    rmdir /etc/cni 2>/dev/null || true
  fi
  _CLUSTER_MADE_ETC_CNI=0
  if [[ -n "$CLUSTER_DIR" && -z "${KEEP_LOGS:-}" ]]; then rm -rf "$CLUSTER_DIR"; fi
  CLUSTER_N=0
}

# An "outside" machine on the underlay, 172.31.250.200, that is not a node.
outside_up() {
  local ns
  ns=$(outside_ns)
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "${CLUSTER_TAG}o" type veth peer name eth0 netns "$ns"
  ip link set "${CLUSTER_TAG}o" netns "$CLUSTER_TAG-u"
  ip -n "$CLUSTER_TAG-u" link set "${CLUSTER_TAG}o" master br0 up
  ip -n "$ns" addr add "$CLUSTER_UNDERLAY.200/24" dev eth0
  ip -n "$ns" link set eth0 up
}

declare -A TASK_PIDS=()
task_servers() {
  local name="$1" ip="$2" ns
  ns=$(container_ns "$name")
  mkdir -p "$CLUSTER_DIR/www-$name"
  echo "$name" >"$CLUSTER_DIR/www-$name/index.html"
  ip netns exec "$ns" busybox httpd -f -p 80 -h "$CLUSTER_DIR/www-$name" </dev/null \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  TASK_PIDS[$name-http]=$!
  on_exit "kill_pid ${TASK_PIDS[$name-http]}"
  ip netns exec "$ns" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address="$ip" \
    --port 53 --address="/who.test/$ip" --user=root --pid-file= </dev/null >/dev/null 2>&1 \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  TASK_PIDS[$name-dns]=$!
  on_exit "kill_pid ${TASK_PIDS[$name-dns]}"
}

_cni() {  # _cni COMMAND HOST NAME NETWORK
  local cmd="$1" i="$2" name="$3" net="$4"
  # CNI_ARGS passes through (e.g. CNI_ARGS=SWARMNET_SERVICE=web container_add ...),
  # and CNI_RUNTIME_CONFIG (JSON) becomes the config's runtimeConfig, as a
  # runtime passes its capabilities (e.g. '{"portMappings": [...]}').
  local runtime=""
  if [[ -n "${CNI_RUNTIME_CONFIG:-}" ]]; then runtime=',"runtimeConfig":'"$CNI_RUNTIME_CONFIG"; fi
  ip netns exec "$(host_ns "$i")" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$name" CNI_ARGS="${CNI_ARGS:-}" \
    CNI_NETNS="/var/run/netns/$(container_ns "$name")" CNI_IFNAME=eth0 CNI_PATH="$SWARMNET_BIN_DIR" \
    "$SWARMNET_BIN_DIR/swarmnet" <<<'{"cniVersion":"1.1.0","name":"'"$net"'","type":"swarmnet","daemonSocket":"'"$(host_sock "$i")"'"'"$runtime"'}'
}

container_add() {
  local i="$1" name="$2" net="$3" out
  ip netns add "$(container_ns "$name")"
  ip -n "$(container_ns "$name")" link set lo up
  _CLUSTER_CONTAINERS+=("$name")
  out=$(_cni ADD "$i" "$name" "$net") || { echo "$out" >&2; return 1; }
  # The CNI result, kept for tests that look at more than the address (dns).
  mkdir -p "$CLUSTER_DIR/results"
  printf '%s\n' "$out" >"$CLUSTER_DIR/results/$name.json"
  jq -r '.ips[0].address | split("/")[0]' <<<"$out"
}

# container_resolv_conf NAME: a resolv.conf made from the container's CNI
# result (dns.nameservers, dns.search), as a runtime that honours it writes.
container_resolv_conf() {
  local r="$CLUSTER_DIR/results/$1.json"
  jq -r '(.dns.nameservers // [])[] | "nameserver " + .' "$r"
  jq -r 'if (.dns.search // []) | length > 0 then "search " + (.dns.search | join(" ")) else empty end' "$r"
}

container_del() {
  local i="$1" name="$2" net="$3"
  _cni DEL "$i" "$name" "$net" >/dev/null
  ip netns del "$(container_ns "$name")" 2>/dev/null || true
}

# cping NAME ADDRESS [COUNT]: ping from a container, quietly.
cping() { ip netns exec "$(container_ns "$1")" ping -c "${3:-1}" -W 1 "$2" >/dev/null 2>&1; }
