#!/usr/bin/env bash
# What the kernel holds outlives the daemon: while a node's swarmnetd is
# stopped, a container on it still reaches a service's VIP whose only task
# runs on another node (the daemon's shutdown used to reprogram every
# balancer as if all other nodes had died, leaving the VIP without
# backends until the next start). And a node restarted right after joining,
# before its first address block of the ingress network arrived, joins the
# routing mesh as soon as the block does (it used to wait for an unrelated
# change, 20 s or more, with its published ports closed meanwhile).
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_restart_dataplane.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox curl jq; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done
watchdog 150

cluster_up 3
outside_up
fetch() { ip netns exec "$(outside_ns)" curl -s --max-time 2 "http://$1/" 2>/dev/null | grep -q w2; }

say "host 3 restarts at once after joining: its published port opens as soon as it has an ingress address"
# Right after cluster_up, host 3 may not yet hold a block of the ingress
# network; its next start then needs one from another node.
host_daemon_stop 3
host_daemon_start 3

hctl 1 network create front --subnet 10.246.0.0/24 >/dev/null
hctl 1 service create web --network front --publish 8080:80 >/dev/null
for i in 2 3; do
  wait_for 10 hctl "$i" network inspect front >/dev/null || die "host $i lacks front"
  wait_for 10 hctl "$i" service inspect web >/dev/null || die "host $i lacks the service"
done
w2=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 2 w2 front)
task_servers w2 "$w2"
c1=$(container_add 1 c1 front)
vip=$(hctl 1 service inspect web | jq -r '.vips.front')
info "task w2 $w2 on host 2, client c1 $c1 on host 1, VIP $vip"
check "host 3's 8080 answers within 10 s" wait_for 10 fetch "$(host_ip 3):8080"

vip_get() { ip netns exec "$(container_ns c1)" curl -s --max-time 2 "http://$vip/" 2>/dev/null | grep -q w2; }
tally_vip() {
  local ok=0
  for _ in 1 2 3 4 5 6 7 8 9 10; do if vip_get; then ok=$((ok + 1)); fi; done
  echo "$ok"
}
check "c1 reaches the VIP (its only task is on host 2) while host 1's daemon runs" wait_for 10 vip_get

say "host 1's swarmnetd stops (SIGTERM): the VIP keeps its backend in the kernel"
host_daemon_stop 1
n=$(tally_vip)
info "$n of 10 requests to the VIP answered while host 1's daemon was stopped"
check "all 10 answered while the daemon is stopped" test "$n" -eq 10
host_daemon_start 1
check "and after it started again" wait_for 10 vip_get

say "the daemon is killed (SIGKILL) the same way: the control, no shutdown code runs"
host_daemon_stop 1 KILL
n=$(tally_vip)
check "all 10 answered after a SIGKILL ($n)" test "$n" -eq 10
host_daemon_start 1
check "and after it started again" wait_for 10 vip_get
exit "$(failures)"
