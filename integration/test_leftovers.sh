#!/usr/bin/env bash
# A daemon started on an empty state directory removes what swarmnet left in
# the host's kernel and no network of its own owns. Seen
# before: a new network's gateway was unreachable because stale bridges of a
# wiped state held its address. Here: a host with a network and a container,
# its daemon SIGKILLed and its state directory wiped, plus a stale VXLAN
# device and a stale balancer table made by hand; the daemon starts again:
#   - every swarmnet-named link and table that nothing owns is gone, and the
#     log says so for each;
#   - links and tables whose names are not swarmnet's are untouched (control);
#   - a new network with the same subnet works: its container reaches the
#     gateway (with the stale bridge in place, the host's route to the subnet
#     leads to the stale bridge and the gateway does not answer);
#   - a service VIP's local route goes with its stale bridge, and a daemon
#     restarted without a balancer (--lb-backend none) removes the VIP
#     routes of its own networks, which nothing would balance any more.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_leftovers.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
watchdog 180

cluster_up 1
NS=$(host_ns 1)
links() { ip -n "$NS" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1; }
# Not `| grep -q`: under pipefail, the writer's SIGPIPE after an early match fails the test.
has_link() { local all; all=$(links); grep -qx "$1" <<<"$all"; }
has_table() { local all; all=$(ip netns exec "$NS" nft list tables); grep -qx "table $1" <<<"$all"; }
no_link() { ! ip -n "$NS" link show "$1" >/dev/null 2>&1; }
no_table() { ! has_table "$1"; }

vip_routes() { ip -n "$NS" -4 route show table local proto 83; }
has_vip_route() { local all; all=$(vip_routes); grep -q "^local $1 " <<<"$all"; }

say "an earlier life: network web with a container and a service, then SIGKILL and a wiped state"
hctl 1 network create web --subnet 10.243.0.0/24 >/dev/null
c1=$(container_add 1 c1 web)
hctl 1 service create old --network web --port 80/tcp >/dev/null
old_vip=$(hctl 1 service inspect old | jq -r '.vips.web')
check "control: the service's VIP $old_vip is a local route on host 1" wait_for 10 has_vip_route "$old_vip"
old_bridge=$(ip -n "$NS" -o addr show | awk '$4 == "10.243.0.1/24" {print $2}')
info "c1 $c1 on bridge $old_bridge, which holds the gateway 10.243.0.1"
[[ "$old_bridge" == swn-* ]] || die "no swarmnet bridge holds 10.243.0.1"
host_daemon_stop 1 KILL
rm -rf "$CLUSTER_DIR/h1/state"
ip -n "$NS" link add swx-0123456789a type vxlan id 4242 dstport 4789 local "$(host_ip 1)"
ip netns exec "$NS" nft add table ip swarmnet-ipvs
# Not swarmnet's names: must stay.
ip -n "$NS" link add keep-br0 type bridge
ip -n "$NS" link add swnkeep type bridge
ip netns exec "$NS" nft add table inet keepme
# The ingress sandbox was a namespace only the killed daemon held: the kernel frees it on its own,
# some time after the kill, and the host ends of its veths (swn-gwsbox, swi-sandbox) go with it.
# Wait for that, or the restart races the kernel for them and may find nothing to remove.
sandbox_gone() { ! has_link swn-gwsbox && ! has_link swi-sandbox; }
wait_for 10 sandbox_gone || die "the killed daemon's sandbox links are still there after 10 s"
before=$(links | grep -E '^(swn-|swx-|swi-|swv|swc)' | sort | tr '\n' ' ')
info "swarmnet links before the restart: $before"

say "the daemon starts on the empty state directory"
: >"$CLUSTER_DIR/h1/swarmnetd.log"
host_daemon_start 1
for l in $before; do
  check "link $l is gone" no_link "$l"
  check "the log names link $l" grep -q "leftovers: removed link $l:" "$CLUSTER_DIR/h1/swarmnetd.log"
done
check "table ip swarmnet-ipvs is gone (this kernel has no IPVS: the nftables balancer runs)" \
  no_table "ip swarmnet-ipvs"
check "the log names table ip swarmnet-ipvs" \
  grep -q "leftovers: removed nftables table ip swarmnet-ipvs" "$CLUSTER_DIR/h1/swarmnetd.log"
check "control: link keep-br0 is untouched" has_link keep-br0
check "control: link swnkeep is untouched" has_link swnkeep
check "control: table inet keepme is untouched" has_table "inet keepme"
check "control: swarmnet's own table inet swarmnet is there" has_table "inet swarmnet"
check "the VIP route of the earlier life is gone with its bridge" bash -c "[[ -z \"\$(ip -n $NS -4 route show table local $old_vip)\" ]]"

say "a new network with the same subnet works"
hctl 1 network create web2 --subnet 10.243.0.0/24 >/dev/null
c2=$(container_add 1 c2 web2)
info "c2 $c2"
check "c2 reaches its gateway 10.243.0.1" wait_for 10 cping c2 10.243.0.1
one_route() { [[ $(ip -n "$NS" route show 10.243.0.0/24 | wc -l) == 1 ]]; }
check "the host has one route to 10.243.0.0/24" one_route

say "a crash, then a restart without a balancer: the VIP routes of live networks go"
hctl 1 service create new --network web2 --port 80/tcp >/dev/null
new_vip=$(hctl 1 service inspect new | jq -r '.vips.web2')
check "control: the service's VIP $new_vip is a local route on host 1" wait_for 10 has_vip_route "$new_vip"
bridge2=$(hctl 1 network inspect web2 | jq -r .bridge)
host_daemon_stop 1 KILL
: >"$CLUSTER_DIR/h1/swarmnetd.log"
CLUSTER_DAEMON_ARGS="--lb-backend none" host_daemon_start 1
check "no VIP route is left" bash -c "[[ -z \"\$(ip -n $NS -4 route show table local proto 83)\" ]]"
check "the log names VIP $new_vip" \
  grep -q "leftovers: removed the local route of VIP $new_vip on $bridge2:" "$CLUSTER_DIR/h1/swarmnetd.log"
check "control: web2's bridge $bridge2 stays" has_link "$bridge2"

if (($(failures) > 0)); then echo "test_leftovers: $(failures) check(s) failed"; exit 1; fi
echo "test_leftovers: all checks passed"
