#!/usr/bin/env bash
# Endpoints whose namespace is gone and that no DEL removed are reaped after
# --reap-after-s. One swarmnetd (--reap-after-s 4) in a
# host namespace; three containers added by the real swarmnet CNI plugin. The
# namespace of one is deleted without DEL (as after an ADD killed mid-way, or
# a runtime that lost track): its endpoint must go, and with it the hold on
# its address, after the delay (plus at most one sweep), not before. Controls: the
# endpoint whose namespace still exists stays, however long; the same delay
# with --reap-after-s 0 (off) leaves a gone namespace's endpoint alone; a
# Docker endpoint (made through the API, no namespace of its own) is never
# touched.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/swarmnet.sh"
require_root
command -v jq >/dev/null || die "jq is needed"
command -v curl >/dev/null || die "curl is needed"
watchdog "${SWARMNET_IT_TIMEOUT:-120}"

PLUGIN=$(need_bin swarmnet)
TMP=$(mktemp -d /tmp/swarmnet-reaper.XXXXXX)
on_exit "rm -rf '$TMP'"
export SWARMNET_RUN_DIR="$TMP"
SOCK="$TMP/swarmnetd.sock"
P="snrp$$"  # every namespace made here starts with this
HOSTNS="$P-host"
REAP=4

cleanup_namespaces() {
  local ns
  for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    ip netns del "$ns" 2>/dev/null || true
  done
}
on_exit cleanup_namespaces
ip netns add "$HOSTNS"
ip -n "$HOSTNS" link set lo up

NET=reapnet
CONF=$(jq -cn --arg n "$NET" --arg s "$SOCK" '{cniVersion: "1.1.0", name: $n, type: "swarmnet", daemonSocket: $s}')
cni() {  # cni COMMAND CONTAINER: stdout in $OUT, status in $RC
  set +e
  OUT=$(ip netns exec "$HOSTNS" env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
    CNI_NETNS="/var/run/netns/$P-$2" CNI_IFNAME=eth0 CNI_PATH="$SWARMNET_BIN_DIR" "$PLUGIN" <<<"$CONF" 2>>"$TMP/plugin.stderr")
  RC=$?
  set -e
}
add() {  # add NAME: prints the address
  ip netns add "$P-$1"
  cni ADD "$1"
  [[ "$RC" == 0 ]] || die "ADD $1 failed: $OUT"
  jq -r '.ips[0].address | split("/")[0]' <<<"$OUT"
}
eps() { snctl "$SOCK" endpoint ls "$NET" --format json; }
has_ep() { eps | jq -e --arg c "$1" 'any(.[]; .container_id == $c)' >/dev/null; }
no_ep() { ! has_ep "$1"; }

say "reaping off (--reap-after-s 0): a gone namespace's endpoint stays"
SWARMNETD_ARGS="--reap-after-s 0" swarmnetd_start "$TMP/state" "$SOCK" "$HOSTNS"
snctl "$SOCK" network create "$NET" --subnet 10.79.0.0/24 >/dev/null
add off >/dev/null
ip netns del "$P-off"
sleep $((REAP + 2))
check "with reaping off, 'off' is still there $((REAP + 2)) s after its namespace went" has_ep off
cni DEL off
swarmnetd_stop

say "reaping on (--reap-after-s $REAP)"
SWARMNETD_ARGS="--reap-after-s $REAP" swarmnetd_start "$TMP/state" "$SOCK" "$HOSTNS"
gone=$(add gone)
kept=$(add kept)
DOCKER_ID=$(printf 'e%.0s' {1..64})
curl -sf --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' "http://swarmnetd/v1/networks/$NET/endpoints" \
  --data '{"container_id": "'"$DOCKER_ID"'", "ifname": "eth0", "attach": false, "owner": "docker"}' >/dev/null
info "gone: $gone, kept: $kept, and a Docker endpoint"

say "the namespace of 'gone' is deleted without DEL"
ip netns del "$P-gone"
t=$SECONDS
check "gone's endpoint is still there right after (the delay is $REAP s)" has_ep gone
if wait_for $((REAP + 6)) no_ep gone; then
  pass "gone's endpoint was reaped after $((SECONDS - t)) s (delay $REAP s, one sweep a second)"
else
  fail "gone's endpoint was not reaped within $((REAP + 6)) s"
fi
check "at least the delay passed first ($((SECONDS - t)) s >= $REAP s)" test $((SECONDS - t)) -ge "$REAP"
check "the daemon's log says why" grep -q "reaper: released $gone of container gone eth0 .* namespace /var/run/netns/$P-gone has been gone" "$SWARMNETD_LOG"
check "the endpoint whose namespace exists stays" has_ep kept
check "the Docker endpoint stays" has_ep "$DOCKER_ID"
sleep $((REAP + 1))
check "... and still $((REAP + 1)) s later" has_ep kept
gw_ping() { ip netns exec "$P-kept" ping -c1 -W2 10.79.0.1 >/dev/null 2>&1; }
check "kept still reaches its gateway" gw_ping

cni DEL kept
check "DEL kept" test "$RC" == 0

if (($(failures) > 0)); then echo "test_cni_reaper: $(failures) check(s) failed"; exit 1; fi
echo "test_cni_reaper: all checks passed"
