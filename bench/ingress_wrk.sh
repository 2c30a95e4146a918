#!/usr/bin/env bash
# The cost of the routing mesh, seen from an outside client: wrk against a
# service's ingress port (through the mesh) and against the same task
# published in host mode (straight to it), and the cost of keeping the
# client's address against the mesh that masquerades it (swarm's, and
# swarmnetd --ingress-client-address masquerade), all in one run.
#
# A 3-host swarmnet cluster in namespaces, an "outside" machine on the
# underlay, a network, a service "web" with one task (a container attached
# by the real CNI plugin running a web server on port 80) on host 2,
# published twice: ingress 8080:80 and host mode 9080:80. Host 1 keeps the
# client's address (the default), host 3 runs with --ingress-client-address
# masquerade. Each round, wrk from the outside namespace, one after the other:
#     wrk http://HOST2:9080/   host mode: one DNAT, straight to the task
#     wrk http://HOST1:8080/   the mesh over the ingress overlay, client kept
#     wrk http://HOST3:8080/   the same, masqueraded
#     wrk http://HOST2:8080/   the mesh on the task's own node, once with
#                              host 2 restarted with masquerade, once with
#                              it restarted keeping (LOCAL=0 skips these)
# The figures are the medians over the rounds.
# SERVER=nginx (default; one worker, keep-alive: wrk reuses its connections,
# so the figures are the forwarding cost of each path per request) or
# SERVER=busybox (busybox httpd forks per connection and answers one request
# on each: the server sets the pace, and every request is a new flow through
# the NATs).
# Env: SERVER (nginx), CONNECTIONS (32), DURATION (10), ROUNDS (3), LOCAL (1),
# SWARMNET_BIN_DIR. Needs root, wrk, curl, nginx (nginx-light) or busybox;
# removes everything it made on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVER="${SERVER:-nginx}"
[[ "$SERVER" == nginx || "$SERVER" == busybox ]] || die "SERVER: nginx or busybox"
bench_needs "$SERVER" curl jq wrk
bench_needs_cluster
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
LOCAL="${LOCAL:-1}"
CLUSTER_LOG_LEVEL=info
MASQUERADE="--ingress-client-address masquerade"

say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cluster_up 3
outside_up
host_daemon_stop 3
CLUSTER_DAEMON_ARGS="${CLUSTER_DAEMON_ARGS:-} $MASQUERADE" host_daemon_start 3
HTTPD_PID=""
stop_httpd() { if [[ -n "$HTTPD_PID" ]]; then kill_pid "$HTTPD_PID" httpd >/dev/null; fi; }
on_exit stop_httpd  # before cluster_down: a listener keeps its namespace alive
WWW="$CLUSTER_DIR/www"
mkdir -p "$WWW"
printf 'hello from swarmnet\n' >"$WWW/index.html"

say "service web on network bench: one task on host 2, ingress 8080:80 and host mode 9080:80"
hctl 1 network create bench --subnet 10.247.0.0/24 >/dev/null
hctl 1 service create web --network bench --publish 8080:80 --publish mode=host,9080:80 >/dev/null
for i in 2 3; do
  wait_for 10 hctl "$i" network inspect bench >/dev/null || die "host $i lacks the network"
  wait_for 10 hctl "$i" service inspect web >/dev/null || die "host $i lacks the service"
done
container_add 2 web1 bench >/dev/null || die "CNI ADD of web1 failed"
hctl 2 service attach web --network bench --container web1 >/dev/null
if [[ "$SERVER" == nginx ]]; then
  cat >"$CLUSTER_DIR/nginx.conf" <<CONF
user root;  # the files live in the cluster's 0700 directory
worker_processes 1;
pid $CLUSTER_DIR/nginx.pid;
error_log $CLUSTER_DIR/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $CLUSTER_DIR/nginx-tmp;
  server { listen 80; root $WWW; }
}
CONF
  ip netns exec "$(container_ns web1)" nginx -c "$CLUSTER_DIR/nginx.conf" -g 'daemon off;' </dev/null >/dev/null 2>&1 \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
else
  ip netns exec "$(container_ns web1)" busybox httpd -f -p 80 -h "$WWW" </dev/null >/dev/null 2>&1 \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
fi
HTTPD_PID=$!
fetch() { ip netns exec "$(outside_ns)" curl -s --max-time 2 "http://$1/" 2>/dev/null | grep -q hello; }
for target in "$(host_ip 2):9080" "$(host_ip 2):8080" "$(host_ip 1):8080" "$(host_ip 3):8080"; do
  wait_for 20 fetch "$target" || die "$target does not answer from outside"
done

# restart_host2 ARGS: host 2's swarmnetd again with ARGS (its sandbox is made anew).
restart_host2() {
  host_daemon_stop 2
  CLUSTER_DAEMON_ARGS="${CLUSTER_DAEMON_ARGS:-} $1" host_daemon_start 2
  wait_for 30 fetch "$(host_ip 2):8080" || die "host 2's 8080 does not answer after a restart"
}
run_wrk() { ip netns exec "$(outside_ns)" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$1/" 2>&1; }
rps() { awk '/^Requests\/sec:/ {print $2}' <<<"$1"; }
p50() { awk '$1 == "50%" {print $2}' <<<"$1"; }
errors() { awk '/Socket errors|Non-2xx/ {print}' <<<"$1" | tr '\n' ' '; }
declare -A RPS=() P50=()
measure() {  # measure NAME TARGET
  local out r
  out=$(run_wrk "$2")
  r=$(rps "$out")
  [[ -n "$r" ]] || { printf '%s\n' "$out"; die "wrk printed no Requests/sec for $1"; }
  RPS[$1]+="$r "
  P50[$1]+="$(p50 "$out") "
  info "$(printf '%-16s %10.1f requests/s  p50 %-9s %s' "$1" "$r" "$(p50 "$out")" "$(errors "$out")")"
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

for ((round = 1; round <= ROUNDS; round++)); do
  say "round $round of $ROUNDS: wrk -t1 -c$CONNECTIONS -d${DURATION}s from outside (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  # Odd rounds measure masquerading first, even rounds keeping first, so that
  # a drift of the machine's speed within a round does not favour one.
  measure host-mode "$(host_ip 2):9080"
  if ((round % 2)); then
    measure masq-overlay "$(host_ip 3):8080"
    measure keep-overlay "$(host_ip 1):8080"
  else
    measure keep-overlay "$(host_ip 1):8080"
    measure masq-overlay "$(host_ip 3):8080"
  fi
  if ((LOCAL)); then
    if ((round % 2)); then
      restart_host2 "$MASQUERADE"
      measure masq-local "$(host_ip 2):8080"
      restart_host2 ""
      measure keep-local "$(host_ip 2):8080"
    else
      measure keep-local "$(host_ip 2):8080"
      restart_host2 "$MASQUERADE"
      measure masq-local "$(host_ip 2):8080"
      restart_host2 ""  # the next round's overlay runs expect host 2 keeping
    fi
  fi
done

printf '\nwrk -t1 -c%s -d%ss from outside, server %s, one task on host 2, median of %s round(s), load average %s\n' \
  "$CONNECTIONS" "$DURATION" "$SERVER" "$ROUNDS" "$(cut -d' ' -f1-3 /proc/loadavg)"
names=(host-mode keep-overlay masq-overlay)
if ((LOCAL)); then names+=(keep-local masq-local); fi
for n in "${names[@]}"; do
  printf '  %-14s %10.1f requests/s   (rounds: %s)  p50s: %s\n' "$n" "$(median "${RPS[$n]}")" "${RPS[$n]}" "${P50[$n]}"
done
ratio() { awk -v a="$(median "${RPS[$1]}")" -v b="$(median "${RPS[$2]}")" 'BEGIN {printf "%.3f", a / b}'; }
echo "  client kept / masqueraded, over the overlay:  $(ratio keep-overlay masq-overlay)"
if ((LOCAL)); then echo "  client kept / masqueraded, on the task's node: $(ratio keep-local masq-local)"; fi
echo "  mesh (client kept) / host mode, over the overlay: $(ratio keep-overlay host-mode)"
if ((LOCAL)); then echo "  mesh (client kept) / host mode, on the task's node: $(ratio keep-local host-mode)"; fi
