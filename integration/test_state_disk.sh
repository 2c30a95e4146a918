#!/usr/bin/env bash
# swarmnetd with its state directory on a small tmpfs that fills up: a CNI ADD
# gets a clear error (code 11, the reason in the message) and leaves nothing
# behind; once space is freed the same ADD works; killed with SIGKILL on a
# full disk, the daemon starts again with every acknowledged address. Real
# daemon, real IPAM plugin, real tmpfs; the daemon runs in a throw-away
# network namespace. Everything is removed on exit, also on failure.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_state_disk.sh (root; build first)"; exit 0 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
require_root
watchdog 150

NS="swndisk$$"
TMP=$(mktemp -d /tmp/swarmnet-disk.XXXXXX)
DISK="$TMP/disk"
STATE="$DISK/state"
SOCK="$TMP/swarmnetd.sock"
DAEMON=$(need_bin swarmnetd)
CTL=$(need_bin swarmnetctl)
IPAM=$(need_bin swarmnet-ipam)
DAEMON_PID=""

stop_daemon() { [[ -z "$DAEMON_PID" ]] || kill_pid "$DAEMON_PID" swarmnetd; DAEMON_PID=""; }
cleanup() {
  stop_daemon
  ip netns del "$NS" 2>/dev/null || true
  mountpoint -q "$DISK" && umount -l "$DISK"
  [[ -n "${KEEP_LOGS:-}" ]] || rm -rf "$TMP"
}
on_exit cleanup

start_daemon() {
  ip netns exec "$NS" "$DAEMON" --state-dir "$STATE" --api-socket "$SOCK" --log-level info \
    >>"$TMP/daemon.log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  DAEMON_PID=$!
  wait_for 20 "$CTL" --socket "$SOCK" status || { tail -20 "$TMP/daemon.log" >&2; die "swarmnetd did not start"; }
}
ctl() { timeout 30 "$CTL" --socket "$SOCK" "$@"; }
# ipam COMMAND CONTAINER: swarmnet-ipam as a runtime calls it (an address only).
ipam() {
  CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS="/var/run/netns/$NS" CNI_IFNAME=eth0 \
    CNI_PATH="$(dirname "$IPAM")" timeout 30 "$IPAM" <<<'{"cniVersion":"1.1.0","name":"disk","type":"bridge","ipam":{"type":"swarmnet-ipam","daemonSocket":"'"$SOCK"'"}}'
}
has_endpoint() { ctl endpoint ls disk --format json | jq -e --arg c "$1" 'any(.[]; .container_id == $c)' >/dev/null; }
code_is_11() { jq -e '.code == 11' "$1" >/dev/null; }
answers() { ctl status >/dev/null; }
no_endpoint() { ! has_endpoint "$1"; }
journal_whole() { [[ -z "$(tail -c1 "$STATE/journal" | tr -d '\n')" ]]; }
fill_disk() { cat /dev/zero >"$DISK/ballast" 2>/dev/null || true; }

say "swarmnetd on a 512 KiB tmpfs"
mkdir -p "$DISK"
mount -t tmpfs -o size=512k,mode=0700 tmpfs "$DISK"
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
start_daemon
ctl network create disk --subnet 10.125.0.0/22 >/dev/null
ipam ADD c0 >"$TMP/c0.out" || die "first ADD failed: $(cat "$TMP/c0.out")"
check "control: an acknowledged ADD shows as an endpoint" has_endpoint c0
acknowledged=(c0)

say "the disk fills up"
fill_disk
info "free on the tmpfs: $(df --output=avail -B1 "$DISK" | tail -1) bytes"
refused=""
# The journal's last page may still take a few records.
for ((i = 1; i <= 40; i++)); do
  if ipam ADD "c$i" >"$TMP/c$i.out" 2>"$TMP/c$i.err"; then
    acknowledged+=("c$i")
  else
    refused="c$i"
    break
  fi
done
[[ -n "$refused" ]] || die "40 ADDs fit on a full disk"
info "${#acknowledged[@]} ADD(s) acknowledged, then $refused refused: $(cat "$TMP/$refused.out")"
check "the refused ADD reports code 11 (try again later)" code_is_11 "$TMP/$refused.out"
check "its message gives the reason" grep -q "No space left on device" "$TMP/$refused.out"
check "its message names the state directory" grep -qF "$STATE" "$TMP/$refused.out"
check "the refused ADD left no endpoint" no_endpoint "$refused"
check "the daemon still answers" answers
check "the journal ends on a whole line" journal_whole

say "space is freed: the same ADD works"
rm -f "$DISK/ballast"
if ipam ADD "$refused" >"$TMP/retry.out"; then
  pass "the retried ADD succeeded: $(jq -r '.ips[0].address' "$TMP/retry.out")"
  acknowledged+=("$refused")
else
  fail "the retried ADD failed: $(cat "$TMP/retry.out")"
fi

say "SIGKILL while the disk is full, then a restart on the full disk"
fill_disk
kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""
ctl endpoint ls disk --format json >/dev/null 2>&1 && die "the killed daemon still answers"
start_daemon
pass "swarmnetd started on the full disk"
check "the log says why it could not compact" grep -q "cannot compact .*No space left on device" "$TMP/daemon.log"
missing=$(for c in "${acknowledged[@]}"; do has_endpoint "$c" || echo "$c"; done)
check "every acknowledged ADD (${#acknowledged[@]}) is still there" test -z "$missing"
ctl endpoint ls disk --format json | jq -r '.[].address' | sort >"$TMP/addrs"
check "no address is held twice" test -z "$(uniq -d "$TMP/addrs")"
rm -f "$DISK/ballast"
ipam ADD after >"$TMP/after.out" || fail "ADD after the restart: $(cat "$TMP/after.out")"
check "an ADD after the restart works" has_endpoint after

if (($(failures) > 0)); then echo "test_state_disk: $(failures) check(s) failed"; exit 1; fi
echo "test_state_disk: all checks passed"
