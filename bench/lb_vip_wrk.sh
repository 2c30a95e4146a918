#!/usr/bin/env bash
# The cost of balancing, seen from a client: wrk against a service's VIP and
# against one of its backends' own address, in one run, and the ratio of
# requests per second.
#
# A swarmnet cluster of HOSTS hosts (default 1) in namespaces, a network, a
# vip-mode service "web" with 3 tasks (containers attached by the real CNI
# plugin) each running `busybox httpd` on port 80, and a client container on
# host 1. With HOSTS=2 the tasks run on host 2, so every target is reached
# across the overlay (VXLAN) and they differ only by the VIP's DNAT. Three
# wrk runs from the client's namespace, one after the other:
#     wrk -t1 -c$CONNECTIONS -d${DURATION}s http://VIP/        3 backends
#     (web2 and web3 detached: the VIP balances to web1 alone)
#     wrk ... http://VIP/                                      1 backend
#     wrk ... http://WEB1/                                     web1 directly
# busybox httpd forks for every connection and answers one request per
# connection (about 2 ms of CPU each here), so the server is the bottleneck:
# the VIP over 3 servers can beat one server, and the cost of balancing
# itself is the ratio VIP-to-web1-alone / web1-directly (same server, same
# flows, only the balancer's per-flow work added: a verdict-map lookup, a
# hash and a DNAT, or IPVS).
# Env: HOSTS (1|2), CONNECTIONS (32), DURATION (10), SWARMNET_BIN_DIR.
# Needs root, wrk, curl and busybox; removes everything it made on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_needs busybox curl jq wrk
HOSTS="${HOSTS:-1}"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10}"
[[ "$HOSTS" == 1 || "$HOSTS" == 2 ]] || die "HOSTS: 1 or 2"
CLUSTER_LOG_LEVEL=info
TASK_HOST="$HOSTS"

cluster_up "$HOSTS"
declare -a HTTPD_PIDS=()
stop_httpds() {
  local pid
  for pid in "${HTTPD_PIDS[@]}"; do kill_pid "$pid" httpd >/dev/null; done
  HTTPD_PIDS=()
}
on_exit stop_httpds  # before cluster_down: a listener keeps its namespace alive
WWW="$CLUSTER_DIR/www"
mkdir -p "$WWW"
printf 'hello from swarmnet\n' >"$WWW/index.html"

say "network bench, service web (vip), 3 tasks with busybox httpd on host $TASK_HOST, a client on host 1"
hctl 1 network create bench --subnet 10.245.0.0/24 >/dev/null
hctl 1 service create web --network bench --port 80/tcp >/dev/null
VIP=$(hctl 1 service inspect web | jq -r '.vips.bench')
BACKENDS=()
for t in 1 2 3; do
  ip=$(CNI_ARGS=SWARMNET_SERVICE=web container_add "$TASK_HOST" "web$t" bench) || die "CNI ADD of web$t failed"
  BACKENDS+=("$ip")
  ip netns exec "$(container_ns "web$t")" busybox httpd -f -p 80 -h "$WWW" </dev/null >/dev/null 2>&1 \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  HTTPD_PIDS+=($!)
done
container_add 1 client bench >/dev/null || die "CNI ADD of the client failed"
fetch() { ip netns exec "$(container_ns client)" curl -s --max-time 2 "http://$1/" 2>/dev/null | grep -q hello; }
wait_for 20 fetch "$VIP" || die "the VIP $VIP does not answer from the client"
for b in "${BACKENDS[@]}"; do wait_for 10 fetch "$b" || die "backend $b does not answer"; done
backend="${BACKENDS[0]}"
info "VIP $VIP, backends ${BACKENDS[*]}; balancer: $(hctl 1 lb check | head -1)"

# wrk's report for http://TARGET/ from the client.
run_wrk() {
  ip netns exec "$(container_ns client)" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$1/" 2>&1
}
rps() { awk '/^Requests\/sec:/ {print $2}' <<<"$1"; }
p50() { awk '$1 == "50%" {print $2}' <<<"$1"; }
errors() { awk '/Socket errors|Non-2xx/ {print}' <<<"$1" | tr '\n' ' '; }
vip_is_web1_alone() { [[ "$(hctl 1 service inspect web | jq -c '[.tasks[] | .ip]')" == "[\"$backend\"]" ]] && hctl 1 lb check; }

say "wrk -t1 -c$CONNECTIONS -d${DURATION}s: the VIP (3 backends), the VIP (web1 alone), web1 directly"
vip3_out=$(run_wrk "$VIP")
hctl "$TASK_HOST" service detach --network bench --container web2 >/dev/null
hctl "$TASK_HOST" service detach --network bench --container web3 >/dev/null
wait_for 10 vip_is_web1_alone || die "the VIP did not come down to web1 alone"
vip1_out=$(run_wrk "$VIP")
direct_out=$(run_wrk "$backend")
vip3=$(rps "$vip3_out") vip1=$(rps "$vip1_out") direct=$(rps "$direct_out")
[[ -n "$vip3" && -n "$vip1" && -n "$direct" ]] ||
  { printf '%s\n' "$vip3_out" "$vip1_out" "$direct_out"; die "wrk printed no Requests/sec"; }

printf '\nwrk -t1 -c%s -d%ss, busybox httpd (one request per connection), %s host(s), balancer %s\n' \
  "$CONNECTIONS" "$DURATION" "$HOSTS" "$(hctl 1 lb check | awk '{print $3}')"
line() { printf '  %-34s %10.1f requests/s   p50 %-9s %s\n' "$1" "$2" "$(p50 "$3")" "$(errors "$3")"; }
line "VIP $VIP (3 backends)" "$vip3" "$vip3_out"
line "VIP $VIP (web1 alone)" "$vip1" "$vip1_out"
line "web1 $backend directly" "$direct" "$direct_out"
awk -v v3="$vip3" -v v1="$vip1" -v d="$direct" 'BEGIN {
  printf "  ratio VIP/web1, same server:  %.3f (cost of balancing %.1f%%)\n", v1 / d, (1 - v1 / d) * 100
  printf "  ratio VIP over 3 / web1:      %.3f\n", v3 / d }'
