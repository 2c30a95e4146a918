#!/usr/bin/env bash
# Real containerd: two busybox containers started with `ctr run --cni` on a
# swarmnet network get addresses from its subnet, ping each other and their
# gateway, and when removed release their addresses and leave no veth behind.
#
# Runs as root. Starts containerd if none answers (and stops only that one),
# imports a busybox image built offline, runs its own swarmnetd (temp state dir
# and socket) in a host network namespace of its own (so the root namespace's
# firewall does not matter), and takes over /etc/cni/net.d and /opt/cni/bin for
# the duration: both are restored exactly on exit, also on failure.
#
# The first two containers take the two teardown paths a runtime can take:
#   c1: `ctr run --cni -d`; removed with a CNI DEL as libcni issues it (netns
#       still there), then task kill + delete. (ctr 1.6 never calls DEL for -d.)
#   c2: `ctr run --rm --cni` in the background; on task exit ctr itself calls
#       CNI DEL, with an empty CNI_NETNS since the netns is gone by then.
# Then c3 runs on examples/cni/10-swarmnet.conflist (swarmnet chained with the
# reference bandwidth and tuning plugins) and is removed the same way,
# and c4 on examples/cni/swarmnet-ipam-bridge.conflist (the reference bridge
# plugin with swarmnet-ipam).
#
# Env: SWARMNET_BIN_DIR (default build/bin), KEEP_LOGS=1 keeps the temp dir.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: integration/test_containerd.sh [--help]

Runs two busybox containers with `ctr run --cni` on a swarmnet network and
checks addresses, ping (container to container, container to gateway),
address release and veth removal. Prints PASS/FAIL lines; exits non-zero on
any failure. Needs root, containerd, runc, jq, busybox-static (scripts/install-deps)
and a build (scripts/build). Leaves nothing behind.
EOF
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/containerd.sh
source "$HERE/lib/containerd.sh"
# shellcheck source=lib/cni.sh
source "$HERE/lib/cni.sh"
# shellcheck source=lib/swarmnet.sh
source "$HERE/lib/swarmnet.sh"

require_root
for tool in ctr containerd runc ip jq; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps)"
done
need_bin swarmnetd >/dev/null
need_bin swarmnetctl >/dev/null
need_bin swarmnet >/dev/null

TAG="swn-it-$$"
HOSTNS="$TAG"
C1="$TAG-c1"
C2="$TAG-c2"
C3="$TAG-c3"
C4="$TAG-c4"
NET="itnet"
SUBNET="10.77.0.0/24"
CONF_FILE="10-swarmnet-it.conflist"

TMP=$(mktemp -d /tmp/swarmnet-it.XXXXXX)
SWARMNET_RUN_DIR="$TMP"
SOCK="$TMP/swarmnetd.sock"
finish() {
  if (($(failures) > 0)) || [[ "${1:-0}" != 0 ]]; then
    if [[ -n "$SWARMNETD_LOG" && -f "$SWARMNETD_LOG" ]]; then
      echo "---- last lines of the swarmnetd log ----"
      tail -n 40 "$SWARMNETD_LOG" || true
      echo "-----------------------------------------"
    fi
  fi
  if [[ "${KEEP_LOGS:-0}" == 1 ]]; then info "logs kept in $TMP"; else rm -rf "$TMP"; fi
}
on_exit 'finish $?'

# ip_in_cidr IP CIDR
ip_to_int() { local IFS=.; local a b c d; read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
ip_in_cidr() {
  local ip="$1" net="${2%/*}" len="${2#*/}"
  local mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
  (($(($(ip_to_int "$ip") & mask)) == $(($(ip_to_int "$net") & mask))))
}

# Leftovers of an earlier run that was killed before its traps ran.
sweep_stale() {
  local id ns
  for id in $(ctr_ container ls -q 2>/dev/null | grep '^swn-it-[0-9]*-c[1-4]$' || true); do
    local pid=${id#swn-it-}; pid=${pid%-c*}
    kill -0 "$pid" 2>/dev/null && continue
    info "removing container $id left by an earlier run"
    ctr_remove "$id" || true
  done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^swn-it-[0-9]*$' || true); do
    kill -0 "${ns#swn-it-}" 2>/dev/null && continue
    info "removing network namespace $ns left by an earlier run"
    ip netns del "$ns" || true
  done
}

say "swarmnet + containerd integration test ($TAG)"
# ctest gives 600 s and then SIGKILLs; stop before that so the cleanups run.
watchdog "${SWARMNET_IT_TIMEOUT:-420}"
containerd_ensure
busybox_image_ensure
sweep_stale

say "creating host network namespace $HOSTNS (its own bridge and firewall; a veth pair as a dead-end underlay)"
ip netns add "$HOSTNS"
on_exit "ip netns del '$HOSTNS' 2>/dev/null || true"
ip -n "$HOSTNS" link set lo up
ip -n "$HOSTNS" link add underlay0 type veth peer name underlay1
ip -n "$HOSTNS" addr add 192.0.2.10/24 dev underlay0
ip -n "$HOSTNS" link set underlay1 up
ip -n "$HOSTNS" link set underlay0 up
ip -n "$HOSTNS" route add default via 192.0.2.1 dev underlay0

swarmnetd_start "$TMP/state" "$SOCK" "$HOSTNS"

say "creating network $NET with subnet $SUBNET"
snctl "$SOCK" network create "$NET" --subnet "$SUBNET" >/dev/null
on_exit "snctl '$SOCK' network rm '$NET' >/dev/null 2>&1 || true"
GATEWAY=$(sn_network_field "$SOCK" "$NET" '.gateway')
info "gateway: $GATEWAY"
check "network $NET has gateway $GATEWAY inside $SUBNET" ip_in_cidr "${GATEWAY%/*}" "$SUBNET"
GATEWAY="${GATEWAY%/*}"

cni_take_over
cni_install_plugins
cni_write_conflist "$CONF_FILE" "$NET" "$SOCK"
CONFLIST="$CNI_CONF_DIR/$CONF_FILE"

remove_containers() {
  local pid
  pid=$(ctr_task_pid "$C1")
  if [[ -n "$pid" ]] && ctr_task_running "$C1"; then
    cni_conflist_del "$CONFLIST" "$(ctr_cni_id "$C1")" "/proc/$pid/ns/net" eth0 "$HOSTNS" || true
  fi
  ctr_remove "$C1" || true
  ctr_remove "$C2" || true
  ctr_remove "$C3" || true
  ctr_remove "$C4" || true
  rm -f "$CNI_CACHE_DIR/results/$NET-$(ctr_cni_id "$C1")-eth0" "$CNI_CACHE_DIR/results/$NET-$(ctr_cni_id "$C2")-eth0"
}
on_exit remove_containers

say "running two containers with ctr run --cni"
check "container $C1 starts (ctr run --cni -d)" ctr_run_detached "$C1" "$HOSTNS"
check "container $C2 starts (ctr run --rm --cni, foreground in the background)" ctr_run_foreground "$C2" "$HOSTNS"
if (($(failures) > 0)); then die "containers did not start"; fi

container_ip() { ctr_exec "$1" ip -4 addr show dev eth0 | awk '$1 == "inet" && !n++ {print $2}'; }
IP1=$(container_ip "$C1" || true)
IP2=$(container_ip "$C2" || true)
info "$C1 eth0: ${IP1:-none}"
info "$C2 eth0: ${IP2:-none}"
check "$C1 got an address from $SUBNET ($IP1)" ip_in_cidr "${IP1%/*}" "$SUBNET"
check "$C2 got an address from $SUBNET ($IP2)" ip_in_cidr "${IP2%/*}" "$SUBNET"
check "the two addresses differ" test "${IP1%/*}" != "${IP2%/*}"
IP1="${IP1%/*}"
IP2="${IP2%/*}"
check "the daemon records 2 endpoints on $NET" test "$(sn_endpoint_count "$SOCK" "$NET")" = 2
default_route() { ctr_exec "$1" ip route show | awk '$1 == "default" && !n++ {print $3}'; }
check "$C1 default route via the gateway" test "$(default_route "$C1")" = "$GATEWAY"

host_veths() { ip -n "$HOSTNS" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1 | { grep -v '^underlay[01]$' || true; } | tr '\n' ' '; }
VETHS=$(host_veths)
info "host ends of the veths: $VETHS"
check "two container veths exist in $HOSTNS" test "$(wc -w <<<"$VETHS")" = 2

say "pinging"
ping_from() { ctr_exec "$1" ping -c 2 -W 2 "$2" >/dev/null; }
check "$C1 -> $C2 ($IP2)" ping_from "$C1" "$IP2"
check "$C2 -> $C1 ($IP1)" ping_from "$C2" "$IP1"
check "$C1 -> gateway ($GATEWAY)" ping_from "$C1" "$GATEWAY"
check "$C2 -> gateway ($GATEWAY)" ping_from "$C2" "$GATEWAY"

say "removing the containers"
PID1=$(ctr_task_pid "$C1")
check "CNI DEL of $C1 (netns /proc/$PID1/ns/net)" cni_conflist_del "$CONFLIST" "$(ctr_cni_id "$C1")" "/proc/$PID1/ns/net" eth0 "$HOSTNS"
check "$C1 removed" ctr_remove "$C1"
check "$C2 removed (ctr calls CNI DEL itself)" ctr_remove "$C2"

say "checking that nothing is left"
check "no endpoint left on $NET" test "$(sn_endpoint_count "$SOCK" "$NET")" = 0
LEFT=$(host_veths)
check "no host veth left (had: $VETHS)" test -z "${LEFT// /}"
for v in $VETHS; do
  check "veth $v gone" bash -c "! ip -n '$HOSTNS' link show dev '$v' >/dev/null 2>&1"
done
check "no CNI result cache left" bash -c "! ls '$CNI_CACHE_DIR'/results/$NET-* >/dev/null 2>&1"

say "chaining: the example conflist (swarmnet, then bandwidth, tuning)"
jq --arg n "$NET" --arg s "$SOCK" '.name = $n | .plugins[0].daemonSocket = $s' \
  "$SWARMNET_SOURCE_DIR/examples/cni/10-swarmnet.conflist" >"$CONFLIST"
info "$CONFLIST is now examples/cni/10-swarmnet.conflist for network $NET"
if ctr_run_foreground "$C3" "$HOSTNS"; then
  pass "container $C3 starts on the chained conflist"
  IP3=$(container_ip "$C3" || true)
  check "$C3 got an address from $SUBNET ($IP3)" ip_in_cidr "${IP3%/*}" "$SUBNET"
  check "$C3 -> gateway ($GATEWAY)" ping_from "$C3" "$GATEWAY"
  check "tuning ran after swarmnet (eth0 accept_redirects = 0)" \
    test "$(ctr_exec "$C3" cat /proc/sys/net/ipv4/conf/eth0/accept_redirects)" = 0
else
  fail "container $C3 starts on the chained conflist"
fi
check "$C3 removed (ctr calls DEL on the whole chain)" ctr_remove "$C3"
check "no endpoint left on $NET after the chain's DEL" test "$(sn_endpoint_count "$SOCK" "$NET")" = 0
LEFT=$(host_veths)
check "no host veth left after the chain's DEL" test -z "${LEFT// /}"

say "swarmnet-ipam under the reference bridge plugin (examples/cni/swarmnet-ipam-bridge.conflist)"
jq --arg n "$NET" --arg s "$SOCK" '.name = $n | .plugins[0].ipam.daemonSocket = $s' \
  "$SWARMNET_SOURCE_DIR/examples/cni/swarmnet-ipam-bridge.conflist" >"$CONFLIST"
if ctr_run_foreground "$C4" "$HOSTNS"; then
  pass "container $C4 starts on bridge + swarmnet-ipam"
  IP4=$(container_ip "$C4" || true)
  check "$C4 got an address from $SUBNET through swarmnet-ipam ($IP4)" ip_in_cidr "${IP4%/*}" "$SUBNET"
  check "the daemon records $C4's address" test "$(sn_endpoint_count "$SOCK" "$NET")" = 1
  check "$C4 -> gateway on the bridge plugin's bridge ($GATEWAY)" ping_from "$C4" "$GATEWAY"
else
  fail "container $C4 starts on bridge + swarmnet-ipam"
fi
check "$C4 removed (ctr calls DEL: bridge, then swarmnet-ipam)" ctr_remove "$C4"
check "swarmnet-ipam released $C4's address" test "$(sn_endpoint_count "$SOCK" "$NET")" = 0

net_rm() { snctl "$SOCK" network rm "$NET" >/dev/null; }
check "network $NET can be removed" net_rm

if (($(failures) > 0)); then
  echo "FAIL: $(failures) check(s) failed"
  exit 1
fi
echo "PASS: all checks passed"
