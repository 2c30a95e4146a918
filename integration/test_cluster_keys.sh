#!/usr/bin/env bash
# Cluster key rotation with traffic flowing, and joins with a wrong key.
#
# 3 hosts; a container on host 1 pings one on host 2 (every 0.2 s) while
# `cluster rotate-key` runs on host 1 (new key distributed, made primary, old
# one retired: two 5 s steps). After it: one key on every host, no gossip
# packet failed authentication during it, gossip still flows under the new key
# (a network created on host 3 is known on hosts 1 and 2, and a new endpoint on
# host 3 becomes pingable from host 1), and the ping lost at most 2 packets.
#
# Then a 4th host tries to join with (a) a token whose key is another valid
# random 32-byte key and (b) the token printed before the rotation (the
# retired key): each join fails with a clear error, host 1 does not list the
# node, and host 1 counts the refused packets (stats.auth_failures). Finally
# the current token joins it, so the refusals were about the key.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_keys.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
T0=$SECONDS
watchdog "${SWARMNET_IT_TIMEOUT:-170}"

cluster_up 3
[[ -n "${KEEP_LOGS:-}" ]] && info "logs kept in $CLUSTER_DIR"

stat_of() { hctl "$1" cluster status | jq -r ".$2"; }
keys_of() { stat_of "$1" keys; }
keys_is() { [[ "$(keys_of "$1")" == "$2" ]]; }
auth_failures() { stat_of "$1" stats.auth_failures; }
node_listed() { hctl "$1" node ls --format json | jq -e --arg n "$2" 'any(.[]; .name == $n)' >/dev/null; }
not_listed() { ! node_listed "$@"; }
is_state() { [[ "$(node_status "$1" "$2")" == "$3" ]]; }

say "network keys on host 1; k1 on host 1, k2 on host 2"
hctl 1 network create keys --subnet 10.254.0.0/24 >/dev/null
check "host 2 knows network keys" wait_for 10 hctl 2 network inspect keys
ip1=$(container_add 1 k1 keys)
ip2=$(container_add 2 k2 keys)
check "k1 (host 1) pings k2 (host 2)" wait_for 10 cping k1 "$ip2"

old_token=$(hctl 1 cluster token)
declare -A af0
for i in 1 2 3; do af0[$i]=$(auth_failures "$i"); done
check "one key on every host before the rotation" \
  test "$(keys_of 1) $(keys_of 2) $(keys_of 3)" == "1 1 1"

say "rotate-key on host 1 while k1 pings k2 every 0.2 s"
COUNT=90   # 18 s
ip netns exec "$(container_ns k1)" ping -i 0.2 -c "$COUNT" -W 1 "$ip2" >"$CLUSTER_DIR/ping.txt" 2>&1 &
ping_pid=$!
on_exit 'kill "$ping_pid" 2>/dev/null || true'
sleep 2
check "cluster rotate-key" hctl 1 cluster rotate-key
sleep 1
info "1 s into the rotation: keys per host $(keys_of 1) $(keys_of 2) $(keys_of 3)"
check "host 3 learnt the new key (2 keys) during the rotation" wait_for 4 keys_is 3 2
sleep 11
for i in 1 2 3; do check "host $i holds one key after the rotation" wait_for 10 keys_is "$i" 1; done
new_token=$(hctl 1 cluster token)
check "the join token carries the new key" test "${new_token%-*}" != "${old_token%-*}"
for i in 2 3; do check "host $i's token carries the same new key" test "$(hctl "$i" cluster token | sed 's/-[^-]*$//')" == "${new_token%-*}"; done
for i in 1 2 3; do
  af=$(auth_failures "$i")
  check "host $i: no gossip packet failed authentication during the rotation (${af0[$i]} -> $af)" \
    test "$af" == "${af0[$i]}"
done

say "gossip flows under the new key"
hctl 3 network create keys2 --subnet 10.254.1.0/24 >/dev/null
for i in 1 2; do check "host $i knows network keys2 (created on host 3 after the rotation)" wait_for 10 hctl "$i" network inspect keys2; done
ip3=$(container_add 3 k3 keys)
check "k1 (host 1) pings k3, new on host 3" wait_for 10 cping k1 "$ip3"
ip3b=$(container_add 3 k3b keys2)
container_add 1 k1b keys2 >/dev/null
check "k1b (host 1) pings k3b, new on host 3's new network" wait_for 10 cping k1b "$ip3b"
for i in 1 2 3; do check "host $i sees 3 nodes alive" test "$(alive_count "$i")" == 3; done

wait "$ping_pid" || true
rcv=$(grep -oE '[0-9]+ (packets )?received' "$CLUSTER_DIR/ping.txt" | grep -oE '^[0-9]+' || echo 0)
info "k1 -> k2: $rcv of $COUNT received across the rotation"
check "the ping lost at most 2 packets across the rotation ($((COUNT - rcv)) lost)" test "$rcv" -ge $((COUNT - 2))

say "a 4th host joins with a wrong key"
host_add 4
bad_key=$(head -c32 /dev/urandom | base64)
seed=${new_token##*-}
bad_token="SWMTKN-1-$bad_key-$seed"
# try_join TOKEN: prints "rc seconds" then the output.
try_join() {
  local t=$SECONDS rc=0 out
  out=$(timeout 60 "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$(host_sock 4)" cluster join --token "$1" \
    --advertise-addr "$(host_ip 4)" 2>&1) || rc=$?
  echo "$rc $((SECONDS - t))"
  echo "$out"
}
for case_ in "random key" "retired key"; do
  if [[ "$case_" == "random key" ]]; then tok=$bad_token; else tok=$old_token; fi
  a0=$(auth_failures 1)
  res=$(try_join "$tok")
  read -r rc secs <<<"$(head -n1 <<<"$res")"
  msg=$(tail -n +2 <<<"$res")
  info "join with a $case_: exit $rc after ${secs} s: $msg"
  check "join with a $case_ fails (exit non-zero)" test "$rc" -ne 0
  check "join with a $case_ fails within 35 s" test "$secs" -le 35
  check "join with a $case_: the error names the seed" grep -qF "${seed%:*}" <<<"$msg"
  check "join with a $case_: the error points at the key (auth/key)" grep -qiE 'key|auth' <<<"$msg"
  check "join with a $case_: host 4 is not in a cluster after it" test "$(stat_of 4 active)" == false
  sleep 2
  check "join with a $case_: host 1 does not list host4" not_listed 1 host4
  a1=$(auth_failures 1)
  check "join with a $case_: host 1 counted the refused packets (auth_failures $a0 -> $a1)" test "$a1" -gt "$a0"
  for i in 2 3; do check "join with a $case_: host $i does not list host4" not_listed "$i" host4; done
done

say "the current token joins host 4"
# (from the environment, as a script or a secret store hands it over)
check "host 4 joins with the current token" env SWARMNET_JOIN_TOKEN="$new_token" \
  "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$(host_sock 4)" cluster join --advertise-addr "$(host_ip 4)"
check "host 1 sees host4 alive" wait_for 15 is_state 1 host4 alive
check "host 4 holds the one current key" test "$(keys_of 4)" == 1

info "took $((SECONDS - T0)) s"
if (($(failures) > 0)); then echo "test_cluster_keys: $(failures) check(s) failed"; exit 1; fi
echo "test_cluster_keys: all checks passed"
