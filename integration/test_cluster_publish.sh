#!/usr/bin/env bash
# Host-mode publishing on a 3-host cluster, seen from an outside
# machine on the underlay: a service's host-mode port answers only on the
# nodes that run a task, straight to that node's task, TCP and UDP; a
# second task asking for a taken host port on the same node fails with an
# error naming the holder and leaves nothing behind; a port without a
# number gets one, shown in `service inspect`; the CNI portMappings
# capability publishes a container's port; nothing else reaches a
# container from outside; `service update --publish-rm`, `service rm` and a
# container's DEL close their ports.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_publish.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox dig jq dnsmasq curl; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done

cluster_up 3
outside_up
hctl 1 network create front --subnet 10.245.0.0/24 >/dev/null
for i in 2 3; do wait_for 10 hctl "$i" network inspect front || die "host $i lacks front"; done

say "service web publishes 8080->80/tcp and 5353->53/udp in host mode"
hctl 1 service create web --network front --publish mode=host,8080:80 --publish mode=host,5353:53/udp >/dev/null
for i in 2 3; do wait_for 10 hctl "$i" service inspect web || die "host $i lacks the service"; done

w1=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 w1 front)
w2=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 2 w2 front)
task_servers w1 "$w1"
task_servers w2 "$w2"
info "tasks w1 $w1 (host 1), w2 $w2 (host 2); host 3 runs no task of web"

outside() { ip netns exec "$(outside_ns)" "$@"; }
http_from_outside() { outside curl -sf -m 2 "http://$1/"; }
# (dig +short prints its ";; connection timed out" on stdout: only answers are kept.)
udp_from_outside() { outside dig +short +tries=1 +time=2 -p "$2" "@$1" who.test | grep -v '^;' || true; }
answers() { [[ "$(http_from_outside "$1")" == "$2" ]]; }
closed() { ! http_from_outside "$1" >/dev/null 2>&1; }

check "host 1's 8080 answers with its own task w1" wait_for 10 answers "$(host_ip 1):8080" w1
check "host 2's 8080 answers with its own task w2" wait_for 10 answers "$(host_ip 2):8080" w2
check "host 2's 8080 never reaches host 1's task (no balancing in host mode)" \
  bash -c "for k in 1 2 3 4 5 6; do [[ \$(ip netns exec $(outside_ns) curl -sf -m 2 http://$(host_ip 2):8080/) == w2 ]] || exit 1; done"
check "host 3 (no task) does not publish 8080" closed "$(host_ip 3):8080"
check "UDP: host 1's 5353 answers from w1" test "$(udp_from_outside "$(host_ip 1)" 5353)" == "$w1"
check "UDP: host 2's 5353 answers from w2" test "$(udp_from_outside "$(host_ip 2)" 5353)" == "$w2"
check "UDP: host 3's 5353 is closed" test -z "$(udp_from_outside "$(host_ip 3)" 5353)"

say "closed by default: a route to the containers' subnet through host 1 reaches nothing unpublished"
outside ip route add 10.245.0.0/24 via "$(host_ip 1)"
on_exit "ip -n $(outside_ns) route del 10.245.0.0/24 2>/dev/null || true"
check "the task's own address, port 80, is not reachable from outside" closed "$w1:80"

say "a second task of web on host 1 asks for the same host ports"
eps_before=$(hctl 1 network inspect front | jq .endpoints)
if out=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 w1b front 2>&1); then
  fail "the second task on host 1 got an address: $out"
else
  info "CNI error: $(jq -r .msg <<<"$out" 2>/dev/null || echo "$out")"
  check "it fails, naming the port and its holder" grep -q "host port tcp/8080 is taken on this node by container w1" <<<"$out"
fi
check "it left no endpoint on host 1" test "$(hctl 1 network inspect front | jq .endpoints)" == "$eps_before"
check "w1 still answers on 8080" answers "$(host_ip 1):8080" w1

say "service api publishes 80 in host mode without a number; its task runs on host 3"
hctl 1 service create api --network front --publish mode=host,:80 >/dev/null
wait_for 10 hctl 3 service inspect api || die "host 3 lacks api"
a3=$(CNI_ARGS=SWARMNET_SERVICE=api container_add 3 a3 front)
task_servers a3 "$a3"
api_port=$(hctl 3 service inspect api | jq -r '.tasks[0].host_ports[0].published')
range=$(ip netns exec "$(host_ns 3)" cat /proc/sys/net/ipv4/ip_local_port_range)
info "a3's port on host 3: $api_port (host range: $range)"
check "inspect shows the chosen port, in the host's ephemeral range" \
  awk -v p="$api_port" -v lo="${range%%[[:space:]]*}" -v hi="${range##*[[:space:]]}" 'BEGIN {exit !(p >= lo && p <= hi)}'
check "host 1 sees the same port in its inspect (replicated)" \
  wait_for 10 bash -c "[[ \$($SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) service inspect api | jq -r '.tasks[0].host_ports[0].published') == $api_port ]]"
check "host 3's chosen port answers with a3" wait_for 10 answers "$(host_ip 3):$api_port" a3

say "the CNI portMappings capability: container p2 on host 2 maps 9090->80"
p2=$(CNI_RUNTIME_CONFIG='{"portMappings":[{"hostPort":9090,"containerPort":80,"protocol":"tcp"}]}' container_add 2 p2 front)
task_servers p2 "$p2"
check "host 2's 9090 answers with p2" wait_for 10 answers "$(host_ip 2):9090" p2
check "host 1 does not publish 9090" closed "$(host_ip 1):9090"
if out=$(CNI_RUNTIME_CONFIG='{"portMappings":[{"hostPort":8080,"containerPort":80}]}' container_add 2 p2b front 2>&1); then
  fail "a mapping of host 2's taken 8080 was accepted"
else
  check "a mapping of a port a task holds fails, naming it" grep -q "tcp/8080 is taken on this node by container w2" <<<"$out"
fi
container_del 2 p2 front
check "DEL of p2 closes 9090" wait_for 10 closed "$(host_ip 2):9090"

say "service update web --publish-rm 80: 8080 closes on every node, 5353/udp stays"
hctl 1 service update web --publish-rm 80 >/dev/null
check "host 1's 8080 closed" wait_for 10 closed "$(host_ip 1):8080"
check "host 2's 8080 closed" wait_for 10 closed "$(host_ip 2):8080"
check "host 2's 5353/udp still answers" test "$(udp_from_outside "$(host_ip 2)" 5353)" == "$w2"
say "service update web --publish-add mode=host,8081:80: published again, on the new port"
hctl 1 service update web --publish-add mode=host,8081:80 >/dev/null
check "host 2's 8081 answers with w2" wait_for 10 answers "$(host_ip 2):8081" w2

say "service rm web and api: every port closes"
hctl 1 service rm web >/dev/null
hctl 1 service rm api >/dev/null
check "host 2's 8081 closed" wait_for 10 closed "$(host_ip 2):8081"
udp_closed() { [[ -z "$(udp_from_outside "$1" "$2")" ]]; }
check "host 1's 5353/udp closed" wait_for 10 udp_closed "$(host_ip 1)" 5353
check "host 3's $api_port closed" wait_for 10 closed "$(host_ip 3):$api_port"
for i in 1 2 3; do
  check "host $i holds no published-port rule" \
    test "$(ip netns exec "$(host_ns "$i")" nft list chain inet swarmnet published-dnat | grep -c 'comment "host:' || true)" == 0
done
exit "$(failures)"
