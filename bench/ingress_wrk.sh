#!/usr/bin/env bash
# The cost of the routing mesh, seen from an outside client: wrk against a
# service's ingress port (through the mesh) and against the same task
# published in host mode (straight to it), in one run, and the ratio of
# requests per second.
#
# A 2-host swarmnet cluster in namespaces, an "outside" machine on the
# underlay, a network, a service "web" with one task (a container attached
# by the real CNI plugin running a web server on port 80) on host 2,
# published twice: ingress 8080:80 and host mode 9080:80. Three wrk runs
# from the outside namespace, one after the other:
#     wrk http://HOST2:9080/   host mode: one DNAT, straight to the task
#     wrk http://HOST2:8080/   the mesh, answered by the task's own node
#     wrk http://HOST1:8080/   the mesh, host 1 has no task: over the
#                              ingress overlay (VXLAN) to host 2's sandbox
# SERVER=nginx (default; one worker, keep-alive: wrk reuses its connections,
# so the figures are the forwarding cost of each path per request) or
# SERVER=busybox (busybox httpd forks per connection and answers one request
# on each: the server sets the pace, and every request is a new flow through
# the NATs).
# Env: SERVER (nginx), CONNECTIONS (32), DURATION (10), SWARMNET_BIN_DIR.
# Needs root, wrk, curl, nginx (nginx-light) or busybox; removes everything
# it made on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVER="${SERVER:-nginx}"
[[ "$SERVER" == nginx || "$SERVER" == busybox ]] || die "SERVER: nginx or busybox"
bench_needs "$SERVER" curl jq wrk
bench_needs_cluster
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10}"
CLUSTER_LOG_LEVEL=info

cluster_up 2
outside_up
HTTPD_PID=""
stop_httpd() { if [[ -n "$HTTPD_PID" ]]; then kill_pid "$HTTPD_PID" httpd >/dev/null; fi; }
on_exit stop_httpd  # before cluster_down: a listener keeps its namespace alive
WWW="$CLUSTER_DIR/www"
mkdir -p "$WWW"
printf 'hello from swarmnet\n' >"$WWW/index.html"

say "service web on network bench: one task on host 2, ingress 8080:80 and host mode 9080:80"
hctl 1 network create bench --subnet 10.247.0.0/24 >/dev/null
hctl 1 service create web --network bench --publish 8080:80 --publish mode=host,9080:80 >/dev/null
wait_for 10 hctl 2 network inspect bench >/dev/null || die "host 2 lacks the network"
wait_for 10 hctl 2 service inspect web >/dev/null || die "host 2 lacks the service"
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
for target in "$(host_ip 2):9080" "$(host_ip 2):8080" "$(host_ip 1):8080"; do
  wait_for 20 fetch "$target" || die "$target does not answer from outside"
done

run_wrk() { ip netns exec "$(outside_ns)" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$1/" 2>&1; }
rps() { awk '/^Requests\/sec:/ {print $2}' <<<"$1"; }
p50() { awk '$1 == "50%" {print $2}' <<<"$1"; }
errors() { awk '/Socket errors|Non-2xx/ {print}' <<<"$1" | tr '\n' ' '; }

say "wrk -t1 -c$CONNECTIONS -d${DURATION}s from outside: host mode, the mesh on the task's node, the mesh from the other node"
host_out=$(run_wrk "$(host_ip 2):9080")
local_out=$(run_wrk "$(host_ip 2):8080")
remote_out=$(run_wrk "$(host_ip 1):8080")
direct=$(rps "$host_out") local=$(rps "$local_out") remote=$(rps "$remote_out")
[[ -n "$direct" && -n "$local" && -n "$remote" ]] ||
  { printf '%s\n' "$host_out" "$local_out" "$remote_out"; die "wrk printed no Requests/sec"; }

printf '\nwrk -t1 -c%s -d%ss from outside, server %s, one task on host 2\n' "$CONNECTIONS" "$DURATION" "$SERVER"
line() { printf '  %-40s %10.1f requests/s   p50 %-9s %s\n' "$1" "$2" "$(p50 "$3")" "$(errors "$3")"; }
line "host mode, host 2:9080 (straight)" "$direct" "$host_out"
line "mesh, host 2:8080 (task's node)" "$local" "$local_out"
line "mesh, host 1:8080 (over the overlay)" "$remote" "$remote_out"
awk -v d="$direct" -v l="$local" -v r="$remote" 'BEGIN {
  printf "  ratio mesh/straight, task on the node:   %.3f\n", l / d
  printf "  ratio mesh/straight, task on another:    %.3f\n", r / d }'
