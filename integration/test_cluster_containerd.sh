#!/usr/bin/env bash
# Real containerd containers on two different hosts of a 3-host cluster:
# `ip netns exec HOST ctr run --cni -d ...` runs the swarmnet CNI plugin inside
# host 1's and host 3's namespaces (reading /etc/netns/HOST/cni/net.d, which
# names that host's daemon). The two busybox containers ping each other across
# hosts over VXLAN; every host lists both endpoints; removing them (CNI DEL as
# libcni does it, in the host's namespace, then task and container delete)
# releases their addresses in every host's view.
#
# Takes over /opt/cni/bin and /etc/cni/net.d for the duration (ctr searches
# plugins in /opt/cni/bin) and restores both exactly on exit. Starts containerd
# only if none answers. Everything is removed on exit, also on failure.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_containerd.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/containerd.sh"
source "$HERE/lib/cni.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in ctr containerd runc ip jq; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps)"
done
need_bin swarmnet >/dev/null
T0=$SECONDS
watchdog "${SWARMNET_IT_TIMEOUT:-170}"

NET="${CLUSTER_CNI_NETWORK:-overlay}"
CA="${CLUSTER_TAG}-a"   # on host 1
CB="${CLUSTER_TAG}-b"   # on host 3
SWARMNET_RUN_DIR=$(mktemp -d /tmp/swarmnet-ctr.XXXXXX)
on_exit 'rm -rf "$SWARMNET_RUN_DIR"'

# Before containerd starts: its CRI plugin creates /etc/cni/net.d, and the
# restore must know that directory was not there before us.
cni_take_over
install -m 0755 "$(need_bin swarmnet)" "$CNI_BIN_DIR/swarmnet"   # ctr searches /opt/cni/bin
containerd_ensure
busybox_image_ensure
# Containers of an earlier run of this test that was SIGKILLed.
for id in $(ctr_ container ls -q 2>/dev/null | grep -E '^swc[0-9]+-[ab]$' || true); do
  pid=${id#swc}; pid=${pid%-*}
  kill -0 "$pid" 2>/dev/null && continue
  info "removing container $id left by an earlier run"
  ctr_remove "$id" || true
done

cluster_up 3
[[ -n "${KEEP_LOGS:-}" ]] && info "logs kept in $CLUSTER_DIR"

# ctr_del I ID: CNI DEL as libcni does it, in host I's namespace (netns still
# there), then the task and container go.
ctr_del() {
  local i="$1" id="$2" pid netns=""
  pid=$(ctr_task_pid "$id")
  [[ -n "$pid" && "$pid" != 0 ]] && netns="/proc/$pid/ns/net"
  cni_conflist_del "/etc/netns/$(host_ns "$i")/cni/net.d/10-swarmnet.conflist" "$(ctr_cni_id "$id")" \
    "$netns" eth0 "$(host_ns "$i")"
  local rc=$?
  ctr_remove "$id" || rc=1
  return "$rc"
}
# Registered after cluster_up: runs before cluster_down (the daemons still answer).
on_exit 'ctr_has container "$CA" && ctr_del 1 "$CA"; ctr_has container "$CB" && ctr_del 3 "$CB"; true'

# veths I: host I's veths other than its underlay eth0 (the containers' host ends).
veths() { ip -n "$(host_ns "$1")" -o link show type veth | awk -F': ' '$2 ~ /^swv/ {print $2}'; }  # containers' (the routing mesh's swi-sandbox and swn-gwsbox stay)
# ctr_ip ID: the container's IPv4 address on eth0, as the container sees it.
ctr_ip() { ctr_exec "$1" ip -4 -o addr show dev eth0 | awk '{split($4, a, "/"); print a[1]; exit}'; }
# eps I: host I's endpoints of $NET as "container_id address" lines, sorted.
eps() { hctl "$1" endpoint ls "$NET" --format json | jq -r '.[] | "\(.container_id) \(.address | split("/")[0])"' | sort; }
has_ep() { eps "$1" | grep -qxF -- "$2 $3"; }
no_ep() { ! eps "$1" | grep -qF -- "$2"; }
no_eps() { [[ -z "$(eps "$1")" ]]; }

say "network $NET created on host 2 (the network named in every host's CNI config)"
hctl 2 network create "$NET" --subnet 10.252.0.0/24 >/dev/null
for i in 1 3; do check "host $i knows $NET" wait_for 10 hctl "$i" network inspect "$NET"; done

say "busybox containers: $CA on host 1, $CB on host 3 (ctr run --cni inside the host namespace)"
check "ctr run --cni on host 1" ctr_run_detached "$CA" "$(host_ns 1)"
check "ctr run --cni on host 3" ctr_run_detached "$CB" "$(host_ns 3)"
ipa=$(ctr_ip "$CA" || true)
ipb=$(ctr_ip "$CB" || true)
info "$CA $ipa (host 1), $CB $ipb (host 3)"
check "both have addresses in 10.252.0.0/24" bash -c "[[ '$ipa' == 10.252.0.* && '$ipb' == 10.252.0.* && '$ipa' != '$ipb' ]]"
check "$CA's veth host end is in host 1's namespace" test -n "$(veths 1)"
check "$CB's veth host end is in host 3's namespace" test -n "$(veths 3)"
for i in 1 2 3; do
  check "host $i lists $CA at $ipa" wait_for 10 has_ep "$i" "$(ctr_cni_id "$CA")" "$ipa"
  check "host $i lists $CB at $ipb" wait_for 10 has_ep "$i" "$(ctr_cni_id "$CB")" "$ipb"
done

say "cross-host ping between the containerd containers"
check "$CA (host 1) pings $CB (host 3)" wait_for 15 ctr_exec "$CA" ping -c 1 -W 1 "$ipb"
quiet() { "$@" >/dev/null 2>&1; }
check "$CB (host 3) pings $CA (host 1)" quiet ctr_exec "$CB" ping -c 3 -W 1 "$ipa"
check "$CA pings its gateway 10.252.0.1" quiet ctr_exec "$CA" ping -c 1 -W 1 10.252.0.1

say "removal: CNI DEL (libcni's way, in the host namespace), then task and container delete"
check "$CA removed" ctr_del 1 "$CA"
check "$CB removed" ctr_del 3 "$CB"
for i in 1 2 3; do
  check "host $i no longer lists $CA" wait_for 10 no_ep "$i" "$(ctr_cni_id "$CA")"
  check "host $i no longer lists $CB" wait_for 10 no_ep "$i" "$(ctr_cni_id "$CB")"
  check "host $i has no endpoint left on $NET" wait_for 10 no_eps "$i"
done
check "no CNI result cache left for $CA/$CB" \
  bash -c "! ls /var/lib/cni/results/ 2>/dev/null | grep -qE -- '-$CLUSTER_TAG-[ab]-'"
check "host 1 has no container veth left" test -z "$(veths 1)"
check "host 3 has no container veth left" test -z "$(veths 3)"
check "network $NET removed (no endpoint holds it)" quiet hctl 2 network rm "$NET"

info "took $((SECONDS - T0)) s"
if (($(failures) > 0)); then echo "test_cluster_containerd: $(failures) check(s) failed"; exit 1; fi
echo "test_cluster_containerd: all checks passed"
