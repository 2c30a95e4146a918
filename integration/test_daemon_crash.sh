#!/usr/bin/env bash
# swarmnetd killed with SIGKILL in the middle of a burst of 100 concurrent CNI
# ADDs, then restarted: no address is ever live twice, retried ADDs succeed,
# and GC frees what the burst leaked (addresses of containers the runtime
# gave up on). Real plugin, real daemon, real namespaces; everything it makes
# is removed on exit, also on failure.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_daemon_crash.sh (root; build first)"; exit 0 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
require_root

N=100
TAG="swncr$$"
HOST_NS="$TAG-host"  # swarmnetd's namespace: its bridge and tables go with it
TMP=$(mktemp -d /tmp/swarmnet-crash.XXXXXX)
SOCK="$TMP/swarmnetd.sock"
STATE="$TMP/state"
PLUGIN=$(need_bin swarmnet)
DAEMON=$(need_bin swarmnetd)
CTL=$(need_bin swarmnetctl)
DAEMON_PID=""

stop_daemon() { [[ -z "$DAEMON_PID" ]] || kill_pid "$DAEMON_PID" swarmnetd; DAEMON_PID=""; }
cleanup() {
  local i l
  stop_daemon
  for ((i = 0; i < N; i++)); do ip netns del "$TAG-$i" 2>/dev/null || true; done
  # The host ends, the bridge and the nftables tables go with it.
  ip netns del "$HOST_NS" 2>/dev/null || true
  [[ -n "${KEEP_LOGS:-}" ]] || rm -rf "$TMP"
}
on_exit cleanup

start_daemon() {
  ip netns exec "$HOST_NS" "$DAEMON" --state-dir "$STATE" --api-socket "$SOCK" --log-level info \
    >>"$TMP/daemon.log" 2>&1 </dev/null \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  DAEMON_PID=$!
  wait_for 20 "$CTL" --socket "$SOCK" status || die "swarmnetd did not start"
}

CONF='{"cniVersion":"1.1.0","name":"crash","type":"swarmnet","daemonSocket":"'"$SOCK"'"}'
cni() {  # cni COMMAND INDEX: the runtime calls the plugin from the daemon's (host) namespace
  CNI_COMMAND=$1 CNI_CONTAINERID="crash$2" CNI_NETNS="/var/run/netns/$TAG-$2" CNI_IFNAME=eth0 \
    CNI_PATH="$(dirname "$PLUGIN")" ip netns exec "$HOST_NS" "$PLUGIN" <<<"$CONF"
}
endpoints() { "$CTL" --socket "$SOCK" endpoint ls crash --format json; }

say "starting swarmnetd in a namespace of its own and making $N namespaces"
ip netns add "$HOST_NS"
ip -n "$HOST_NS" link set lo up
start_daemon
"$CTL" --socket "$SOCK" network create crash --subnet 10.123.0.0/16 >/dev/null
for ((i = 0; i < N; i++)); do ip netns add "$TAG-$i"; done

say "burst of $N concurrent ADDs; SIGKILL to swarmnetd after about 10 allocations"
mkdir -p "$TMP/add"
for ((i = 0; i < N; i++)); do
  (rc=0; cni ADD "$i" >"$TMP/add/$i.out" 2>"$TMP/add/$i.err" || rc=$?; echo "$rc" >"$TMP/add/$i.rc") &
done
# The journal grows by a line per allocation: the cheapest progress signal.
deadline=$((SECONDS + 60))
until (($(wc -l <"$STATE/journal") >= 12)); do
  ((SECONDS < deadline)) || die "the burst did not start"
done
kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
info "killed swarmnetd (pid $DAEMON_PID) with $(ls "$TMP"/add/*.rc 2>/dev/null | wc -l) of $N ADDs finished"
DAEMON_PID=""
wait_for 60 bash -c "[[ \$(ls $TMP/add/*.rc | wc -l) == $N ]]" || die "ADDs did not finish"

failed=(); ok=()
for ((i = 0; i < N; i++)); do
  if [[ "$(cat "$TMP/add/$i.rc")" == 0 ]]; then ok+=("$i"); else failed+=("$i"); fi
done
info "${#ok[@]} ADDs succeeded, ${#failed[@]} failed while the daemon was down"
check "the kill hit the burst (some ADDs failed, some succeeded)" \
  test "${#failed[@]}" -gt 0 -a "${#ok[@]}" -gt 0
codes=$(for i in "${failed[@]}"; do jq -r '.code' "$TMP/add/$i.out" 2>/dev/null || echo none; done | sort | uniq -c | tr '\n' ' ')
info "error codes of the failed ADDs: $codes"
check "every failed ADD reports 'try again later' (code 11)" \
  test -z "$(for i in "${failed[@]}"; do jq -e '.code == 11' "$TMP/add/$i.out" >/dev/null 2>&1 || echo "$i"; done)"
for i in "${failed[@]}"; do
  jq -e '.code == 11' "$TMP/add/$i.out" >/dev/null 2>&1 || info "crash$i: $(cat "$TMP/add/$i.out")"
done

say "restarting swarmnetd; the runtime retries half of the failed ADDs"
stop_daemon
start_daemon
leaked=$(( $(endpoints | jq length) - ${#ok[@]} ))
info "$leaked endpoint(s) were journaled but never answered (in flight at the kill)"
retried=(); abandoned=()
for ((k = 0; k < ${#failed[@]}; k++)); do
  if ((k % 2 == 0)); then retried+=("${failed[k]}"); else abandoned+=("${failed[k]}"); fi
done
for i in "${retried[@]}"; do
  cni ADD "$i" >"$TMP/add/$i.out" || fail "retried ADD of crash$i: $(cat "$TMP/add/$i.out")"
done

addr_of() { ip netns exec "$TAG-$1" ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}'; }
live=("${ok[@]}" "${retried[@]}")
for i in "${live[@]}"; do addr_of "$i"; done | sort >"$TMP/kernel-addrs"
check "each of the ${#live[@]} live containers has an address" \
  test "$(grep -c . "$TMP/kernel-addrs")" -eq "${#live[@]}"
check "no address is live in two containers" test -z "$(uniq -d "$TMP/kernel-addrs")"
endpoints | jq -r '.[].address' | sort >"$TMP/daemon-addrs"
check "the daemon holds no duplicate address" test -z "$(uniq -d "$TMP/daemon-addrs")"

say "GC with the ${#live[@]} attachments the runtime knows"
valid=$(for i in "${live[@]}"; do printf '{"containerID":"crash%s","ifname":"eth0"},' "$i"; done)
GC_CONF='{"cniVersion":"1.1.0","name":"crash","type":"swarmnet","daemonSocket":"'"$SOCK"'","cni.dev/valid-attachments":['"${valid%,}"']}'
CNI_COMMAND=GC CNI_PATH="$(dirname "$PLUGIN")" ip netns exec "$HOST_NS" "$PLUGIN" <<<"$GC_CONF" >"$TMP/gc.out" ||
  fail "GC failed: $(cat "$TMP/gc.out")"
check "after GC the daemon holds exactly the live attachments" \
  test "$(endpoints | jq length)" -eq "${#live[@]}"
endpoints | jq -r '.[].address' | sort >"$TMP/daemon-addrs"
check "and their addresses are the ones in the containers" diff -q "$TMP/daemon-addrs" "$TMP/kernel-addrs"
check "GC left no host veth of an abandoned container" \
  test "$(ip -n "$HOST_NS" -o link show | grep -c ' swv' || true)" -eq "${#live[@]}"

say "DEL everything"
for i in "${live[@]}" "${abandoned[@]}"; do cni DEL "$i" >/dev/null || fail "DEL crash$i"; done
check "no endpoint left" test "$(endpoints | jq length)" -eq 0
check "no host veth left" test "$(ip -n "$HOST_NS" -o link show | grep -c ' swv' || true)" -eq 0

echo "$(( $(failures) == 0 ? 1 : 0 )) passed, $(failures) failed" >/dev/null
if (($(failures) > 0)); then echo "test_daemon_crash: $(failures) check(s) failed"; exit 1; fi
echo "test_daemon_crash: all checks passed"
