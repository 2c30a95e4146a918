#!/usr/bin/env bash
# Node-local access (issue 16, item 3) on a 2-host cluster, with a
# neighbour machine on the underlay:
#   - a process on a node reaches published ports through localhost:PORT and
#     through the node's own address, in ingress mode (the task on the other
#     node, and on this one) and in host mode;
#   - and the service VIPs of its networks, with the VIP's only task on the
#     other node: each node has an address of its own on the network, from
#     the cluster IPAM, released when the network leaves the node;
#   - packets to 127.0.0.0/8 that arrive from outside are dropped (the
#     route_localnet trap, CVE-2020-8558), from the neighbour machine and
#     from a container; controls: the same packets to the node's address
#     arrive, and without swarmnet's drop rule the ones to 127.0.0.1 do too.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_node_local.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox jq dnsmasq curl python3; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done
watchdog 240

cluster_up 2
outside_up
GW=10.248.0.1
hctl 1 network create front --subnet 10.248.0.0/24 >/dev/null
wait_for 10 hctl 2 network inspect front || die "host 2 lacks front"
hctl 1 service create web --network front --publish 8080:80 >/dev/null
hctl 1 service create mon --network front --publish mode=host,9100:80 >/dev/null
wait_for 10 hctl 2 service inspect mon || die "host 2 lacks the services"
w2=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 2 w2 front)
m1=$(CNI_ARGS=SWARMNET_SERVICE=mon container_add 1 m1 front)
task_servers w2 "$w2"
task_servers m1 "$m1"
info "web (ingress 8080): its only task w2 $w2 on host 2; mon (host mode 9100): m1 $m1 on host 1"

on_host() { local i="$1"; shift; ip netns exec "$(host_ns "$i")" "$@"; }
get() { on_host "$1" curl -sf -m 1 "$2" 2>/dev/null || echo failed; }
tally() {  # tally N HOST URL: "name count" lines of N requests' answers
  local k
  for ((k = 0; k < $1; k++)); do get "$2" "$3"; done | sort | uniq -c | awk '{print $2, $1}'
}
count_of() { awk -v n="$2" '$1 == n {c = $2} END {print c + 0}' <<<"$1"; }
# From outside first: a failure below is node-local access's, not a mesh still being built.
wait_for 20 bash -c "[[ \$(ip netns exec $(outside_ns) curl -sf -m 1 http://$(host_ip 1):8080/) == w2 ]]" ||
  die "host 1's ingress port 8080 never answered the outside machine"
wait_for 20 bash -c "[[ \$(ip netns exec $(outside_ns) curl -sf -m 1 http://$(host_ip 1):9100/) == m1 ]]" ||
  die "host 1's host-mode port 9100 never answered the outside machine"

say "published ports from the node itself"
expect_20() {  # expect_20 HOST URL TASK
  local t
  t=$(tally 20 "$1" "$2")
  info "20 requests from host $1 to $2: $(tr '\n' ' ' <<<"$t")"
  check "host $1 -> $2: 20 of 20 answered by $3" test "$(count_of "$t" "$3")" == 20
}
expect_20 1 "http://127.0.0.1:8080/" w2
expect_20 1 "http://$(host_ip 1):8080/" w2
expect_20 2 "http://127.0.0.1:8080/" w2
expect_20 1 "http://127.0.0.1:9100/" m1
expect_20 1 "http://$(host_ip 1):9100/" m1

say "service VIPs from the node itself: web's only task runs on host 2"
WEB_VIP=$(hctl 1 service inspect web | jq -r '.vips.front')
expect_20 1 "http://$WEB_VIP/" w2
expect_20 2 "http://$WEB_VIP/" w2
MON_VIP=$(hctl 1 service inspect mon | jq -r '.vips.front')
expect_20 2 "http://$MON_VIP/" m1
# node_address I: host I's own address on front, as its bridge holds it: a
# /32 that is no VIP.
node_address() {
  ip -n "$(host_ns "$1")" -j -4 addr show dev "$(hctl "$1" network inspect front | jq -r .bridge)" |
    jq -r --arg a "$WEB_VIP" --arg b "$MON_VIP" '.[].addr_info[] | select(.prefixlen == 32 and .local != $a and .local != $b) | .local'
}
a1=$(node_address 1)
a2=$(node_address 2)
info "the nodes' own addresses on front: host 1 ${a1:-none}, host 2 ${a2:-none}"
check "each node has one address of its own on front, distinct, in the subnet, no container's" bash -c \
  "[[ '$a1' == 10.248.0.* && '$a2' == 10.248.0.* && '$a1' != '$a2' && ! ' $w2 $m1 $GW ' =~ ' $a1 ' && ! ' $w2 $m1 $GW ' =~ ' $a2 ' ]]"
check "host 2's overlay reaches host 1's address (as a container's)" bash -c "grep -qx '$a1' <<<\"\$(ip -n $(host_ns 2) neigh show | awk '{print \$1}')\""
listed_as_endpoints() {
  hctl 1 endpoint ls front --format json |
    jq --arg a "$a1/" --arg b "$a2/" '[.[] | select((.address // "") | startswith($a) or startswith($b))] | length'
}
check "the API lists no endpoint for them (they are no containers)" test "$(listed_as_endpoints)" == 0

say "packets to 127.0.0.0/8 from outside the node are dropped"
# A UDP listener on host 1, on every address (127.0.0.1, the underlay, the
# gateway): one line per datagram received.
RECEIVED="$CLUSTER_DIR/received"
: >"$RECEIVED"
# Started by `ip netns exec` itself (which execs python), so $! is the
# listener's own pid and the cleanup stops it.
ip netns exec "$(host_ns 1)" python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5999))
with open(sys.argv[1], "a") as out:
    while True:
        data, peer = s.recvfrom(256)
        out.write(data.decode(errors="replace").strip() + "\n")
        out.flush()
' "$RECEIVED" </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
LISTENER=$!
on_exit "kill_pid $LISTENER"
wait_for 5 bash -c "ip netns exec $(host_ns 1) ss -Hlun 'sport = 5999' | grep -q 5999" || die "no UDP listener on host 1"

# A sender that routes 127.0.0.0/8 to host 1: its own loopback addresses go,
# and route_localnet lets its link carry them.
c1=$(container_add 1 c1 front)
ip -n "$(outside_ns)" addr flush dev lo
ip netns exec "$(outside_ns)" sysctl -qw net.ipv4.conf.eth0.route_localnet=1
ip -n "$(outside_ns)" route add 127.0.0.0/8 via "$(host_ip 1)" dev eth0
ip -n "$(container_ns c1)" addr flush dev lo
ip netns exec "$(container_ns c1)" sysctl -qw net.ipv4.conf.eth0.route_localnet=1
ip -n "$(container_ns c1)" route add 127.0.0.0/8 via "$GW" dev eth0
# The trap as kube-proxy sets it (route_localnet on every link): without
# it the kernel itself drops what the neighbour sends to 127.0.0.1.
on_host 1 sysctl -qw net.ipv4.conf.eth0.route_localnet=1
send() { ip netns exec "$1" bash -c "echo $3 >/dev/udp/$2/5999"; }
received() { grep -qx "$1" "$RECEIVED"; }
send "$(outside_ns)" 127.0.0.1 neighbour-to-localhost
send "$(outside_ns)" "$(host_ip 1)" neighbour-to-node
send "$(container_ns c1)" 127.0.0.1 container-to-localhost
send "$(container_ns c1)" "$GW" container-to-gateway
check "control: the neighbour's datagram to host 1's address arrives" wait_for 5 received neighbour-to-node
check "control: the container's datagram to its gateway arrives" wait_for 5 received container-to-gateway
check "the neighbour's datagram to 127.0.0.1 does not" bash -c "! grep -qx neighbour-to-localhost $RECEIVED"
check "the container's datagram to 127.0.0.1 does not" bash -c "! grep -qx container-to-localhost $RECEIVED"
drops=$(on_host 1 nft list chain inet swarmnet localnet 2>/dev/null | grep -o 'packets [0-9]*' | awk '{print $2}' || true)
check "swarmnet's localnet rule counted both drops" test "${drops:-0}" -ge 2
say "control: without that rule, both reach 127.0.0.1 on host 1"
handle=$(on_host 1 nft -a list chain inet swarmnet localnet 2>/dev/null | awk '/127.0.0.0\/8/ {print $NF}' || true)
[[ -z "$handle" ]] || on_host 1 nft delete rule inet swarmnet localnet handle "$handle"
send "$(outside_ns)" 127.0.0.1 neighbour-to-localhost-unprotected
send "$(container_ns c1)" 127.0.0.1 container-to-localhost-unprotected
check "the neighbour's datagram to 127.0.0.1 arrives" wait_for 5 received neighbour-to-localhost-unprotected
check "the container's datagram to 127.0.0.1 arrives" wait_for 5 received container-to-localhost-unprotected


say "the network leaves host 1: its own address there is released"
container_del 1 c1 front
container_del 1 m1 front
a1_gone() { ! ip -n "$(host_ns 2)" neigh show | awk '{print $1}' | grep -qx "$a1"; }
check "host 2's overlay no longer reaches host 1's address" wait_for 10 a1_gone
check "and host 1 no longer holds it" bash -c "! ip -n $(host_ns 1) -4 addr show | grep -q ' $a1/32'"

exit "$(failures)"
