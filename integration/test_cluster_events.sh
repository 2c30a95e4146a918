#!/usr/bin/env bash
# `swarmnetctl events` on a 2-host cluster: host 1's
# stream shows, as they happen, what is done on host 2: a network created, a
# container attached (its endpoint), a service created and removed, a key
# rotation, and host 2 dying (its daemon killed by pid). Each asserted by
# content. A second stream filtered to type=node shows the death and none of
# the rest, which the unfiltered stream (the control) saw.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_events.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq missing (scripts/install-deps)"
watchdog 120

cluster_up 2
CTL="$(need_bin swarmnetctl)"
ALL="$CLUSTER_DIR/events-all.json"
NODES="$CLUSTER_DIR/events-nodes.json"
TEXT="$CLUSTER_DIR/events.txt"
"$CTL" --socket "$(host_sock 1)" events --format json --filter type=node >"$NODES" 2>&1 &
NODES_PID=$!
on_exit "kill_pid $NODES_PID 'events (type=node)'"
"$CTL" --socket "$(host_sock 1)" events --format json >"$ALL" 2>&1 &
ALL_PID=$!
on_exit "kill_pid $ALL_PID 'events (all)'"
"$CTL" --socket "$(host_sock 1)" events >"$TEXT" 2>&1 &
TEXT_PID=$!
on_exit "kill_pid $TEXT_PID 'events (text)'"

# seen FILE JQ_CONDITION: an event of FILE satisfies the condition.
seen() { [[ -n "$(jq -c "select($2)" "$1" 2>/dev/null)" ]]; }
# The daemon logs each subscription (at debug, the level cluster.sh runs it at).
subscriptions() { [[ "$(grep -c 'events: a client subscribed' "$CLUSTER_DIR/h1/swarmnetd.log")" == 3 ]]; }
wait_for 10 subscriptions || die "host 1 does not have the 3 event streams"
hctl 1 network create marker --subnet 10.246.0.0/24 >/dev/null
check "host 1's stream shows a network created on host 1" \
  wait_for 10 seen "$ALL" '.type == "network" and .action == "create" and .attributes.name == "marker"'
check "so does the text stream" wait_for 10 grep -q ' network create [0-9a-f]* (name=marker, subnet=10.246.0.0/24, vni=[0-9]*)$' "$TEXT"

say "host 2: network create evnet"
hctl 2 network create evnet --subnet 10.245.0.0/24 >/dev/null
check "host 1 sees network evnet created on host 2 (name, subnet)" \
  wait_for 10 seen "$ALL" '.type == "network" and .action == "create" and .attributes.name == "evnet" and .attributes.subnet == "10.245.0.0/24"'

say "host 2: container c2 attached to evnet"
ip2=$(container_add 2 c2 evnet)
info "c2 has $ip2"
check "host 1 sees c2's endpoint created on host2 (container, network, address, node)" \
  wait_for 10 seen "$ALL" ".type == \"endpoint\" and .action == \"create\" and .attributes.container == \"c2\" and .attributes.network == \"evnet\" and .attributes.ip == \"$ip2\" and .attributes.node == \"host2\""

say "host 2: service evsvc created, then removed"
vip=$(hctl 2 service create evsvc --network evnet --port 80/tcp | awk '{print $3}' | cut -d= -f2)
info "evsvc's VIP: $vip"
check "host 1 sees service evsvc created (its VIP on evnet)" \
  wait_for 10 seen "$ALL" ".type == \"service\" and .action == \"create\" and .attributes.name == \"evsvc\" and .attributes.vips == \"evnet=$vip\""
hctl 2 service rm evsvc >/dev/null
check "host 1 sees service evsvc removed" \
  wait_for 10 seen "$ALL" '.type == "service" and .action == "remove" and .attributes.name == "evsvc"'

say "host 2: cluster rotate-key"
hctl 2 cluster rotate-key >/dev/null
check "host 1 sees the new key distributed" \
  wait_for 10 seen "$ALL" '.type == "cluster" and .action == "key_rotate" and .attributes.step == "distribute"'

say "host 2's daemon killed (SIGKILL, by pid)"
host_daemon_stop 2 KILL
check "host 1 sees host2 die" \
  wait_for 30 seen "$ALL" '.type == "node" and .action == "die" and .attributes.name == "host2" and .attributes.address == "172.31.250.12"'
check "the type=node stream sees host2 die too" \
  wait_for 10 seen "$NODES" '.type == "node" and .action == "die" and .attributes.name == "host2"'
check "the type=node stream has only node events (the unfiltered one had networks, endpoints, services)" \
  bash -c "jq -e -s 'length > 0 and all(.type == \"node\")' '$NODES' >/dev/null && jq -e -s 'any(.type == \"network\") and any(.type == \"endpoint\") and any(.type == \"service\")' '$ALL' >/dev/null"
check "the text stream shows the death as docker events would" \
  wait_for 10 grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z node die [0-9a-f]+ \(address=172\.31\.250\.12, name=host2, status=dead\)$' "$TEXT"
check "the streams are still open (not ended, not cut off)" \
  bash -c "kill -0 $ALL_PID && kill -0 $NODES_PID && kill -0 $TEXT_PID && ! grep -q '\"lost\"' '$ALL'"

info "host 1's stream:"
jq -c '[.type, .action, .attributes.name // .attributes.container // .attributes.step]' "$ALL" | sed 's/^/      /'
exit "$(($(failures) > 0))"
