#!/usr/bin/env bash
# Egress and isolation on a 3-host cluster: containers of
# one network reach each other across hosts; containers of different
# networks cannot, on one host or across hosts, even with a route added by
# hand; a container reaches an outside machine through its host, masqueraded;
# an --internal network cannot; the outside cannot reach a container address
# even with a route to it. Removing a network removes its rules.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_isolation.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root

cluster_up 3
outside_up
OUT=172.31.250.200
# no_ping NAME ADDRESS: true when two pings from the container all go unanswered.
no_ping() { ! cping "$1" "$2" 2; }

say "networks front, back and private (--internal), made on different hosts"
hctl 1 network create front --subnet 10.251.0.0/24 >/dev/null
hctl 2 network create back --subnet 10.252.0.0/24 >/dev/null
hctl 3 network create private --subnet 10.253.0.0/24 --internal >/dev/null
for i in 1 2 3; do
  for n in front back private; do wait_for 10 hctl "$i" network inspect "$n" || die "host $i lacks $n"; done
done

f1=$(container_add 1 f1 front)
f2=$(container_add 2 f2 front)
b1=$(container_add 1 b1 back)
b2=$(container_add 2 b2 back)
p1=$(container_add 1 p1 private)
p3=$(container_add 3 p3 private)
info "front: f1 $f1 (host 1), f2 $f2 (host 2); back: b1 $b1, b2 $b2; private: p1 $p1, p3 $p3"

check "front: f1 reaches f2 across hosts" wait_for 10 cping f1 "$f2"
check "private: p1 reaches p3 across hosts" wait_for 10 cping p1 "$p3"
check "front cannot reach back on the same host (f1 -> b1)" no_ping f1 $b1
check "front cannot reach back across hosts (f1 -> b2)" no_ping f1 $b2
check "back cannot reach front (b2 -> f2, same host)" no_ping b2 $f2
# A route by hand: b1 sends straight onto its own link for front's subnet.
ip -n "$(container_ns b1)" route add 10.251.0.0/24 dev eth0
check "not even with a route added by hand in the container" no_ping b1 $f1

say "egress"
check "f1 reaches the outside machine (masqueraded: the outside has no route back to 10.251/24)" \
  wait_for 10 cping f1 "$OUT"
check "p1 (internal network) does not reach the outside" no_ping p1 $OUT

say "ingress from the underlay is closed"
ip -n "$(outside_ns)" route add 10.251.0.0/24 via "$(host_ip 1)"
check "the outside cannot reach f1 even with a route to it" \
  bash -c "! ip netns exec $(outside_ns) ping -c 2 -W 1 $f1 >/dev/null 2>&1"

say "removing a network removes its rules on every host"
container_del 1 p1 private
container_del 3 p3 private
# p1 was deleted on host 1: host 3 refuses the removal until it has heard so.
no_endpoints() { [[ "$(hctl 3 endpoint ls private --format json | jq length)" == 0 ]]; }
check "host 3 hears that p1 is gone" wait_for 10 no_endpoints
hctl 3 network rm private >/dev/null
for i in 1 2 3; do
  check "host $i's filter forgot 10.253.0.0/24" wait_for 10 bash -c \
    "! ip netns exec $(host_ns "$i") nft list table inet swarmnet | grep -q 10.253.0.0/24"
done

if (($(failures) > 0)); then echo "test_cluster_isolation: $(failures) check(s) failed"; exit 1; fi
echo "test_cluster_isolation: all checks passed"
