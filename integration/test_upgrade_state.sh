#!/usr/bin/env bash
# The state directories earlier releases left (tests/fixtures/upgrade/*/state,
# recorded by tests/fixtures/upgrade/record.sh from a real cluster, host 1
# killed with SIGKILL) run under this build's swarmnetd: it starts, rejoins its
# saved cluster (its peer is gone: seen as such, not forgotten), and serves
# the network, the service with its VIP and tasks, and the keys that
# the release held. The unit test test_upgrade_fixtures reads the same files
# and the release's gossip; this one runs the daemon itself.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_upgrade_state.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
watchdog "${SWARMNET_IT_TIMEOUT:-120}"
SWARMNETD=$(need_bin swarmnetd)
CTL=$(need_bin swarmnetctl)
NS="swup$$"
WORK=$(mktemp -d /tmp/swarmnet-upgrade.XXXXXX)
on_exit rm -rf "$WORK"

for release in "$HERE"/../tests/fixtures/upgrade/*/; do
  name=$(basename "$release")
  expect="$release/expect.json"
  say "the state of release $name under this build"
  addr=$(jq -r .advertise "$expect")
  # The host the state was recorded on: its advertise address on eth0.
  ip netns add "$NS"
  on_exit "ip netns del $NS 2>/dev/null"
  ip -n "$NS" link set lo up
  ip -n "$NS" link add eth0 type veth peer name eth0-peer
  ip -n "$NS" link set eth0-peer up
  ip -n "$NS" addr add "$addr/24" dev eth0
  ip -n "$NS" link set eth0 up
  rm -rf "$WORK/state" && cp -a "$release/state" "$WORK/state"
  ip netns exec "$NS" "$SWARMNETD" --state-dir "$WORK/state" --api-socket "$WORK/api.sock" \
    --log-level debug >"$WORK/swarmnetd-$name.log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  pid=$!
  on_exit kill_pid "$pid" swarmnetd
  ctl() { "$CTL" --socket "$WORK/api.sock" "$@"; }
  wait_for 20 ctl status || { tail -20 "$WORK/swarmnetd-$name.log" >&2; die "swarmnetd did not start on the state of $name"; }

  net=$(jq -r .network.name "$expect")
  svc=$(jq -r .service.name "$expect")
  check "$name: network $net with its subnet" \
    test "$(ctl network inspect "$net" | jq -r .subnet)" == "$(jq -r .network.subnet "$expect")"
  check "$name: service $svc with the VIP it had" \
    test "$(ctl service inspect "$svc" | jq -c .vips)" == "$(jq -c .service.vips "$expect")"
  # The task on the other host (its endpoint is not this host's to reap).
  remote_ip=$(jq -r '.endpoints[] | select(.node != "host1") | .ip' "$expect")
  check "$name: the other host's task $remote_ip" \
    bash -c "'$CTL' --socket '$WORK/api.sock' service inspect '$svc' | jq -e --arg ip '$remote_ip' 'any(.tasks[]; .ip == \$ip)' >/dev/null"
  check "$name: the saved peer is listed" \
    bash -c "'$CTL' --socket '$WORK/api.sock' node ls --format json | jq -e 'any(.[]; .name == \"host2\")' >/dev/null"
  check "$name: in its cluster, with one key (after the recorded rotation)" \
    test "$(ctl cluster status | jq -r '.active, .keys' | tr '\n' ' ')" == "true 1 "
  kill_pid "$pid" swarmnetd
  ip netns del "$NS"
done
exit "$(failures)"
