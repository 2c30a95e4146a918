#!/usr/bin/env bash
# A node whose daemon is down across a cluster key rotation.
#
# 3 hosts, each swarmnetd with --key-rotation-wait-s 25. Host 3's daemon is
# stopped, `cluster rotate-key` runs on host 1, and host 3 stays down for
# 12 s: longer than a rotation took when its steps were timed (5 s + 5 s),
# after which host 3 came back holding only the retired key and could not
# gossip any more. Now the rotation waits for host 3 (host 1 still holds two
# keys and names host3 as awaited), host 3 comes back and rejoins gossip
# (alive on host 1, a network made on host 3 known on host 1), and the
# rotation then ends: one key on every host, the same one.
#
# Then host 3 is down for longer than the rotation waits: the rotation ends
# without it (the rotator's log names it), host 3 comes back locked out (not
# alive on host 1 within the 15 s the first part saw it come back in), its
# log gives the way back, and that way works: `cluster leave` and `cluster
# join` with a current token.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_key_rotation_down.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
T0=$SECONDS
watchdog "${SWARMNET_IT_TIMEOUT:-200}"

WAIT=25
CLUSTER_DAEMON_ARGS="${CLUSTER_DAEMON_ARGS:-} --key-rotation-wait-s $WAIT"
cluster_up 3
[[ -n "${KEEP_LOGS:-}" ]] && info "logs kept in $CLUSTER_DIR"

keys_of() { hctl "$1" cluster status | jq -r .keys; }
keys_is() { [[ "$(keys_of "$1")" == "$2" ]]; }
token_key() { hctl "$1" cluster token | sed 's/-[^-]*$//'; }
is_state() { [[ "$(node_status "$1" "$2")" == "$3" ]]; }
waiting_for() { hctl "$1" cluster status | jq -r '.key_rotation.waiting_for // [] | join(",")'; }
# Whichever of hosts 1 and 2 has the smaller node id takes the steps.
# (No `| grep -q` under pipefail: the writer may die of SIGPIPE.)
rotator_says() { grep -h "$1" "$CLUSTER_DIR"/h{1,2}/swarmnetd.log | grep "$2" >/dev/null; }
awaits_host3() { [[ "$(waiting_for 1)" == *host3* ]]; }
way_back_logged() {
  grep 'cluster: rejoin' "$CLUSTER_DIR/h3/swarmnetd.log" | grep 'cluster token' | grep 'cluster leave' |
    grep 'cluster join' >/dev/null
}
rotate_refused() {
  local out
  out=$(hctl 1 cluster rotate-key 2>&1) && return 1
  grep -q 'under way' <<<"$out"
}
stays_out() { ! wait_for 15 is_state 1 host3 alive; }
one_key_everywhere() {
  keys_is 1 1 && keys_is 2 1 && keys_is 3 1 &&
    [[ "$(token_key 1)" == "$(token_key 3)" && "$(token_key 2)" == "$(token_key 3)" ]]
}

say "host 3 down for 12 s from the start of a rotation"
key_before=$(token_key 1)
host_daemon_stop 3
check "cluster rotate-key on host 1" hctl 1 cluster rotate-key
sleep 12
info "host 1: $(keys_of 1) key(s), waiting for: $(waiting_for 1)"
check "the rotation waits: host 1 still holds two keys" keys_is 1 2
check "host 1's status names host 3 as awaited" awaits_host3
check "rotate-key is refused while one is under way" rotate_refused
host_daemon_start 3
check "host 3 is back: alive on host 1 within 15 s" wait_for 15 is_state 1 host3 alive
check "the rotation ends: one key on every host, the same (within 30 s)" wait_for 30 one_key_everywhere
check "and it is a new key" test "$(token_key 1)" != "$key_before"
hctl 3 network create after-rotation --subnet 10.254.7.0/24 >/dev/null
check "gossip flows from host 3: host 1 knows the network it made" wait_for 10 hctl 1 network inspect after-rotation
hctl 1 network create after-rotation-1 --subnet 10.254.8.0/24 >/dev/null
check "and to host 3: it knows the network host 1 made" wait_for 10 hctl 3 network inspect after-rotation-1

say "host 3 down for longer than the rotation waits ($WAIT s)"
host_daemon_stop 3
hctl 1 cluster rotate-key >/dev/null
check "the rotation ends without host 3 (within $((WAIT + 30)) s)" wait_for $((WAIT + 30)) keys_is 1 1
check "the rotator's log names host 3 as not confirming" rotator_says 'did not confirm keyring version' host3
host_daemon_start 3
check "host 3 comes back locked out: not alive on host 1 within 15 s" stays_out
check "host 3's log tells the way back (a current token, leave, join)" way_back_logged
token=$(hctl 1 cluster token)
check "the way back: cluster leave on host 3" hctl 3 cluster leave
check "and cluster join with a current token" env SWARMNET_JOIN_TOKEN="$token" \
  "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$(host_sock 3)" cluster join --advertise-addr "$(host_ip 3)"
check "host 3 alive on host 1 again" wait_for 15 is_state 1 host3 alive
check "one key on every host, the same" wait_for 15 one_key_everywhere
hctl 3 network create after-rejoin --subnet 10.254.9.0/24 >/dev/null
check "gossip flows from host 3 again" wait_for 10 hctl 1 network inspect after-rejoin

info "took $((SECONDS - T0)) s"
if (($(failures) > 0)); then echo "test_cluster_key_rotation_down: $(failures) check(s) failed"; exit 1; fi
echo "test_cluster_key_rotation_down: all checks passed"
