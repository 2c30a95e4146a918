#!/usr/bin/env bash
# Three hosts (network namespaces on one underlay bridge), a swarmnetd on
# each, one cluster: a network created on one host is known on all;
# containers on different hosts ping each other over VXLAN; a killed daemon's
# host is marked dead and its containers leave the other hosts' overlay, and
# come back with it; a daemon restart does not interrupt a running ping; a
# node that leaves is seen as "left". Everything is removed on exit.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"

cluster_up 3

say "a network created on host 2 is known on every host"
hctl 2 network create overlay --subnet 10.250.0.0/24 >/dev/null
for i in 1 3; do
  check "host $i knows network overlay" wait_for 10 hctl "$i" network inspect overlay
done
check "one VNI everywhere" test "$(for i in 1 2 3; do hctl "$i" network inspect overlay | jq .vni; done | sort -u | wc -l)" -eq 1

say "one container per host"
ip1=$(container_add 1 c1 overlay)
ip2=$(container_add 2 c2 overlay)
ip3=$(container_add 3 c3 overlay)
info "c1 $ip1 (host 1), c2 $ip2 (host 2), c3 $ip3 (host 3)"
check "three distinct addresses" test "$(printf '%s\n' "$ip1" "$ip2" "$ip3" | sort -u | wc -l)" -eq 3

check "c1 (host 1) pings c2 (host 2)" wait_for 10 cping c1 "$ip2"
check "c1 (host 1) pings c3 (host 3)" wait_for 10 cping c1 "$ip3"
check "c3 (host 3) pings c2 (host 2)" wait_for 10 cping c3 "$ip2"
check "c2 pings its gateway" cping c2 10.250.0.1

say "daemon restart on host 2 while c1 pings c2"
ip netns exec "$(container_ns c1)" ping -i 0.1 -c 80 -W 1 "$ip2" >"$CLUSTER_DIR/restart-ping.txt" 2>&1 &
ping_pid=$!
sleep 1
host_daemon_stop 2
host_daemon_start 2
wait "$ping_pid" || true
lost=$(grep -oE '[0-9]+ received' "$CLUSTER_DIR/restart-ping.txt" | grep -oE '[0-9]+')
info "received $lost of 80 during the restart"
check "at most 3 of 80 pings (every 0.1 s) lost across the restart" test "$lost" -ge 77
# Both directions matter: host 1 restarts too, with c2 pinging c1.
ip netns exec "$(container_ns c2)" ping -i 0.1 -c 80 -W 1 "$ip1" >"$CLUSTER_DIR/restart-ping1.txt" 2>&1 &
ping_pid=$!
sleep 1
host_daemon_stop 1
host_daemon_start 1
wait "$ping_pid" || true
lost=$(grep -oE '[0-9]+ received' "$CLUSTER_DIR/restart-ping1.txt" | grep -oE '[0-9]+')
info "received $lost of 80 during host 1's restart"
check "at most 3 of 80 pings lost across host 1's restart" test "$lost" -ge 77
check "no overlay entry was removed by the restarts" bash -c "! grep -h 'entries)' $CLUSTER_DIR/h1/swarmnetd.log $CLUSTER_DIR/h2/swarmnetd.log | grep -qv -- ' -0 entries'"

say "host 3's daemon is killed: the others mark it dead and drop its container"
host_daemon_stop 3 KILL
t0=$SECONDS
check "host 1 sees host 3 dead" wait_for 20 bash -c "[[ \$($SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) node ls --format json | jq -r '.[] | select(.name == \"host3\") | .status') == dead ]]"
info "detected after $((SECONDS - t0)) s"
# Host 3's kernel still forwards: only host 1 dropping its entries stops this.
check "c1 no longer reaches c3 (host 1 removed its overlay entries)" \
  wait_for 10 bash -c "! ip netns exec $(container_ns c1) ping -c 1 -W 1 $ip3"
say "host 3 comes back"
host_daemon_start 3
check "host 1 sees host 3 alive again" wait_for 20 bash -c "[[ \$($SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) node ls --format json | jq -r '.[] | select(.name == \"host3\") | .status') == alive ]]"
check "c1 reaches c3 again" wait_for 10 cping c1 "$ip3"

say "host 3 leaves"
hctl 3 cluster leave >/dev/null
check "host 1 sees host 3 as left" wait_for 10 bash -c "[[ \$($SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) node ls --format json | jq -r '.[] | select(.name == \"host3\") | .status') == left ]]"

# Host 2 refuses to remove a network while a live node still has an endpoint
# on it, and hears of c1's removal on host 1 only through gossip.
host2_lists_c1() {
  local addrs
  addrs=$(hctl 2 endpoint ls overlay --format json | jq -r '.[].address | split("/")[0]') && grep -qx "$ip1" <<<"$addrs"
}
host2_lists_no_c1() {
  local addrs
  addrs=$(hctl 2 endpoint ls overlay --format json | jq -r '.[].address | split("/")[0]') && ! grep -qx "$ip1" <<<"$addrs"
}

say "cleanup through the API"
check "host 2 lists c1 (host 1) before it goes" host2_lists_c1
container_del 1 c1 overlay
container_del 2 c2 overlay
container_del 3 c3 overlay
overlay_bridge="swn-$(hctl 1 network inspect overlay | jq -r .id | cut -c1-11)"
check "host 1 has no bridge of overlay left" bash -c "! ip -n $(host_ns 1) -o link show | grep -q $overlay_bridge"
ingress_bridge="swn-$(hctl 1 network inspect ingress | jq -r .id | cut -c1-11)"
check "host 1 keeps its ingress bridge (every node is in the routing mesh)" bash -c "ip -n $(host_ns 1) -o link show | grep -q $ingress_bridge"
check "host 2 hears that c1 (host 1) is gone" wait_for 10 host2_lists_no_c1
check "network removed" hctl 2 network rm overlay

if (($(failures) > 0)); then echo "test_cluster: $(failures) check(s) failed"; exit 1; fi
echo "test_cluster: all checks passed"
