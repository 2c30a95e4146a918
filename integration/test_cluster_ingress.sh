#!/usr/bin/env bash
# The ingress routing mesh on a 3-host cluster, seen from an
# outside machine on the underlay: `cluster init` made the ingress network
# and every node joined it; a service's ingress port answers on all 3 nodes,
# including the one with no task, spreading requests over the tasks of
# every node, TCP and UDP; a port without a number gets one of 30000-32767;
# a task whose health check fails stops getting traffic; a host-mode port
# cannot take an ingress port; update and removal close the port on every
# node; the kernel keeps nothing of it.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_ingress.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox dig jq dnsmasq curl haproxy; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done

cluster_up 3
outside_up
check "cluster init made the ingress network, seen by every node" \
  wait_for 10 bash -c "for i in 1 2 3; do $SWARMNET_BIN_DIR/swarmnetctl --socket $CLUSTER_DIR/h\$i/swarmnetd.sock network inspect ingress >/dev/null || exit 1; done"
hctl 1 network create front --subnet 10.246.0.0/24 >/dev/null
for i in 2 3; do wait_for 10 hctl "$i" network inspect front || die "host $i lacks front"; done
out=$(CNI_ARGS= container_add 1 intruder ingress 2>&1 || true)
check "no container can join the ingress network" grep -q "routing mesh's: no container joins it" <<<"$out"

say "service web: 2 tasks (hosts 1 and 2), ingress 8080->80/tcp and 5353->53/udp, TCP health check"
hctl 1 service create web --network front --publish 8080:80 --publish 5353:53/udp \
  --health tcp:80 --health-interval 1 --health-retries 2 >/dev/null
for i in 2 3; do wait_for 10 hctl "$i" service inspect web || die "host $i lacks the service"; done
info "web's ingress VIP: $(hctl 1 service inspect web | jq -r .ingress_vip)"
hctl 1 service ls | sed 's/^/      /'
check "service ls shows the publications" bash -c "$SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) service ls | grep -q '\*:8080->80/tcp,\*:5353->53/udp'"

w1=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 w1 front)
w2=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 2 w2 front)
task_servers w1 "$w1"
task_servers w2 "$w2"
info "tasks w1 $w1 (host 1), w2 $w2 (host 2); host 3 runs none"

outside() { ip netns exec "$(outside_ns)" "$@"; }
http_get() { outside curl -sf -m 2 "http://$1/" 2>/dev/null || echo failed; }
udp_who() { outside dig +short +tries=1 +time=2 -p "$2" "@$1" who.test | grep -v '^;' || echo failed; }
tally() {  # tally N CMD...: "name count" lines of N runs' outputs
  local n="$1"; shift
  for ((k = 0; k < n; k++)); do "$@"; done | sort | uniq -c | awk '{print $2, $1}'
}
count_of() { awk -v n="$2" '$1 == n {print $2}' <<<"$1"; }
spread_ok() {  # spread_ok TALLY N MIN NAMES...: N answers in all, each name at least MIN
  local t="$1" total="$2" min="$3" sum=0 c; shift 3
  for name in "$@"; do
    c=$(count_of "$t" "$name"); c=${c:-0}
    ((c >= min)) || return 1
    sum=$((sum + c))
  done
  ((sum == total))
}
answers_some() { [[ "$(http_get "$1")" == w[12] ]]; }
check "every host sees both tasks healthy" wait_for 15 bash -c \
  "for i in 1 2 3; do [[ \$($SWARMNET_BIN_DIR/swarmnetctl --socket $CLUSTER_DIR/h\$i/swarmnetd.sock service inspect web | jq '[.tasks[] | select(.healthy)] | length') == 2 ]] || exit 1; done"
for i in 1 2 3; do
  check "host $i's 8080 answers" wait_for 10 answers_some "$(host_ip "$i"):8080"
done
for i in 3 1; do
  t=$(tally 30 http_get "$(host_ip "$i"):8080")
  info "30 TCP requests to host $i: $(tr '\n' ' ' <<<"$t")"
  check "host $i spreads TCP over the tasks of both other hosts (each >= 5 of 30, none failed)" spread_ok "$t" 30 5 w1 w2
done
t=$(tally 30 udp_who "$(host_ip 3)" 5353)
info "30 UDP queries to host 3: $(tr '\n' ' ' <<<"$t")"
check "host 3 spreads UDP over both tasks (each >= 5 of 30, none failed)" spread_ok "$t" 30 5 "$w1" "$w2"

say "an external load balancer in front of the nodes: examples/external-lb/haproxy.cfg in the outside machine"
ip netns exec "$(outside_ns)" ip link set lo up
ip netns exec "$(outside_ns)" haproxy -db -f "$HERE/../examples/external-lb/haproxy.cfg" </dev/null >/dev/null 2>&1 \
  {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
HAPROXY_PID=$!
on_exit "kill_pid $HAPROXY_PID"
check "haproxy on the outside machine answers" wait_for 10 answers_some 127.0.0.1:80
t=$(tally 30 http_get 127.0.0.1:80)
info "30 requests through haproxy (then the mesh): $(tr '\n' ' ' <<<"$t")"
check "through haproxy and the nodes, both tasks serve (each >= 5 of 30, none failed)" spread_ok "$t" 30 5 w1 w2
kill_pid "$HAPROXY_PID"

say "swarmnetd on host 3 restarts: its ingress sandbox is made anew, and host 3 answers again"
host_daemon_stop 3
host_daemon_start 3
check "host 3's 8080 answers after the restart" wait_for 20 answers_some "$(host_ip 3):8080"
t=$(tally 20 http_get "$(host_ip 3):8080")
info "20 TCP requests to host 3: $(tr '\n' ' ' <<<"$t")"
check "and spreads over both tasks again (each >= 3 of 20)" spread_ok "$t" 20 3 w1 w2

say "w1's server stops: its health check fails, and the mesh stops sending to it"
kill_pid "${TASK_PIDS[w1-http]}"
only_w2() { [[ $(hctl 3 service inspect web | jq '[.tasks[] | select(.healthy)] | length') == 1 ]]; }
check "host 3 sees w1 unhealthy" wait_for 15 only_w2
t=$(tally 20 http_get "$(host_ip 3):8080")
info "20 TCP requests to host 3: $(tr '\n' ' ' <<<"$t")"
check "every request went to w2" test "$(count_of "$t" w2)" == 20

say "ports: chosen from 30000-32767, and not for host mode"
hctl 1 service create api --network front --publish :80 >/dev/null
api_port=$(hctl 1 service inspect api | jq -r '.ports[0].published')
check "api's ingress port $api_port is in 30000-32767" test "$api_port" -ge 30000 -a "$api_port" -le 32767
out=$(hctl 1 service create other --network front --publish mode=host,8080:80 2>&1 || true)
check "a host-mode port on web's ingress port is refused" grep -q "8080 is already published by service web (ingress mode)" <<<"$out"
out=$(hctl 1 service create dup --network front --publish 8080:81 2>&1 || true)
check "a second service on the same ingress port is refused" grep -q "already published by service web" <<<"$out"

say "update and removal close the ports on every node"
hctl 1 service update web --publish-rm 80 >/dev/null
for i in 1 2 3; do check "host $i's 8080 closed" wait_for 10 bash -c "! ip netns exec $(outside_ns) curl -sf -m 1 http://$(host_ip "$i"):8080/ >/dev/null 2>&1"; done
check "5353/udp still answers on host 1" test "$(udp_who "$(host_ip 1)" 5353)" == "$w2"
hctl 1 service rm web >/dev/null
hctl 1 service rm api >/dev/null
udp_closed() { [[ "$(udp_who "$1" 5353)" == failed ]]; }
for i in 1 2 3; do check "host $i's 5353/udp closed" wait_for 10 udp_closed "$(host_ip "$i")"; done
for i in 1 2 3; do
  check "host $i holds no ingress port rule" wait_for 10 bash -c \
    "[[ \$(ip netns exec $(host_ns "$i") nft list chain inet swarmnet published-dnat | grep -c 'comment \"ingress:' || true) == 0 ]]"
done
check "the VIPs went back to the ingress network's addresses" \
  test "$(hctl 1 network inspect ingress | jq -r .endpoints)" == 1

exit "$(failures)"
