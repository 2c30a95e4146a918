#!/usr/bin/env bash
# `swarmnetctl network inspect NAME --verbose` on a
# 2-host cluster with a task of one service on each host: host 1 lists the
# service with its VIP, both tasks (host 2's with its address, node, node
# address and health) and both peers with their underlay addresses; a
# network with no container on host 2 lists host 1 alone as its peer.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_network_inspect_verbose.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq missing (scripts/install-deps)"
watchdog 120

cluster_up 2
hctl 1 network create front --subnet 10.247.0.0/24 >/dev/null
hctl 1 network create solo --subnet 10.248.0.0/24 >/dev/null
wait_for 10 hctl 2 network inspect front || die "host 2 lacks front"
hctl 1 service create web --network front --port 80/tcp >/dev/null
wait_for 10 hctl 2 service inspect web || die "host 2 lacks web"
VIP=$(hctl 1 service inspect web | jq -r '.vips.front')
w1=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 w1 front)
w2=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 2 w2 front)
container_add 1 s1 solo >/dev/null
info "web's VIP $VIP; tasks w1 $w1 (host 1), w2 $w2 (host 2)"

V="$CLUSTER_DIR/front.json"
# What host 1 says once host 2's task has reached it by gossip.
has_w2() { hctl 1 network inspect front --verbose >"$V" && jq -e '.services[0].tasks | length == 2' "$V" >/dev/null; }
wait_for 10 has_w2 || { cat "$V"; die "host 1 never listed 2 tasks"; }
jqv() { jq -e "$1" "$V" >/dev/null; }
check "the service web with its VIP on front" jqv ".services | length == 1 and .[0].name == \"web\" and .[0].vip == \"$VIP\" and .[0].endpoint_mode == \"vip\""
check "host 2's task: its address, node, node address, health" \
  jqv ".services[0].tasks[] | select(.container_id == \"w2\") | .ip == \"$w2\" and .node_name == \"host2\" and .node_address == \"172.31.250.12\" and .node_alive and .healthy"
check "host 1's task" jqv ".services[0].tasks[] | select(.container_id == \"w1\") | .ip == \"$w1\" and .node_name == \"host1\" and .node_address == \"172.31.250.11\""
check "both peers with their underlay addresses" \
  jqv '[.peers | sort_by(.name)[] | [.name, .address, .alive, .containers]] == [["host1", "172.31.250.11", true, 1], ["host2", "172.31.250.12", true, 1]]'
check "a network only host 1 carries has host 1 alone as peer, and no service" \
  bash -c "hctl() { \"$SWARMNET_BIN_DIR/swarmnetctl\" --socket \"$(host_sock 1)\" \"\$@\"; }; hctl network inspect solo --verbose | jq -e '[.peers[].name] == [\"host1\"] and .services == []' >/dev/null"
check "plain inspect stays as it was (no services, no peers)" \
  bash -c "\"$SWARMNET_BIN_DIR/swarmnetctl\" --socket \"$(host_sock 1)\" network inspect front | jq -e 'has(\"services\") or has(\"peers\") | not' >/dev/null"
check "an unknown network is an error" bash -c "! \"$SWARMNET_BIN_DIR/swarmnetctl\" --socket \"$(host_sock 1)\" network inspect nosuch --verbose 2>/dev/null"
exit "$(($(failures) > 0))"
