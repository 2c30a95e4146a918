#!/usr/bin/env bash
# The allocation lease survives a restart. 3 hosts with a
# short --reclaim-after-s (lease: half of it). Host 3 owns an address block
# (its container there was deleted again, so nothing of it is live in it).
# Host 3 is cut off on the underlay and restarted twice while cut off:
#   - inside its lease: an ADD succeeds (a reboot inside a partition is not
#     an outage);
#   - past its lease: every ADD is refused, with an error that says why, and
#     its log says so too (before the fix the restart made it a "majority of
#     one" and it went on allocating from its block).
# Meanwhile the majority reclaims host 3's block and hands out addresses from
# it (static IPs: exactly those host 3 would hand out next). Heal: host 3
# hands out addresses again, and no address is live twice, in any host's
# endpoint list or among the containers' namespaces.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_lease.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
command -v nft >/dev/null || die "nft is needed (apt-get install nftables)"
T0=$SECONDS
watchdog "${SWARMNET_IT_TIMEOUT:-240}"

RECLAIM=30
LEASE=$((RECLAIM / 2))
export CLUSTER_DAEMON_ARGS="--reclaim-after-s $RECLAIM ${CLUSTER_DAEMON_ARGS:-}"
NET=lease
cluster_up 3
[[ -n "${KEEP_LOGS:-}" ]] && info "logs kept in $CLUSTER_DIR"

eps() { hctl "$1" endpoint ls "$NET" --format json | jq -r '.[] | "\(.container_id) \(.address | split("/")[0])"' | sort; }
live() {
  local ns
  for ns in $(ip netns list | awk -v p="$CLUSTER_TAG-c-" 'index($1, p) == 1 {print $1}'); do
    ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null |
      awk -v n="${ns#"$CLUSTER_TAG-c-"}" '{split($4, a, "/"); print n, a[1]}'
  done | sort
}
converged() {
  local want i
  want=$(live)
  for i in 1 2 3; do [[ "$(eps "$i")" == "$want" ]] || return 1; done
}
dups() { awk '{print $2}' | sort | uniq -d; }
log_of() { echo "$CLUSTER_DIR/h$1/swarmnetd.log"; }
# next_ip A [N]: address A plus N (default 1).
next_ip() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  echo "$a.$b.$c.$((d + ${2:-1}))"
}
# attempt I NAME [IP]: an ADD on host I (IP: a static address); its address
# on stdout, its error in $CLUSTER_DIR/NAME.err; a refused container's namespace goes.
attempt() {
  local i="$1" name="$2" ip="${3:-}"
  if CNI_ARGS="${ip:+IP=$ip}" container_add "$i" "$name" "$NET" 2>"$CLUSTER_DIR/$name.err"; then return 0; fi
  ip netns del "$(container_ns "$name")" 2>/dev/null || true
  return 1
}

say "network $NET (10.252.0.0/24, /29 blocks) on host 1; host 3 takes a block, then empties it"
hctl 1 network create "$NET" --subnet 10.252.0.0/24 >/dev/null
for i in 2 3; do check "host $i knows $NET" wait_for 10 hctl "$i" network inspect "$NET"; done
pre1=$(container_add 1 pre1 "$NET") || die "ADD on host 1 failed"
pre3=$(container_add 3 pre3 "$NET") || die "ADD on host 3 failed"
container_del 3 pre3 "$NET"
info "pre1 on host 1: $pre1; pre3 on host 3 had $pre3 (deleted: host 3 keeps the block, nothing live in it)"
check "all hosts agree before the partition" wait_for 15 converged

say "partition: host 3 cut off on the underlay"
U="$CLUSTER_TAG-u"
P="${CLUSTER_TAG}h3"
ip netns exec "$U" nft -f - <<EOF
table bridge swnlease {
  chain cut {
    type filter hook forward priority 0; policy accept;
    iifname "$P" drop
    oifname "$P" drop
  }
}
EOF
heal() { ip netns exec "$U" nft delete table bridge swnlease 2>/dev/null || true; }
on_exit heal
tcut=$SECONDS
check "the underlay drops host 3 <-> host 1" bash -c "! ip netns exec $(host_ns 3) ping -c 1 -W 1 $(host_ip 1) >/dev/null 2>&1"

say "host 3 restarted inside its lease ($LEASE s): it goes on allocating from its own block"
host_daemon_stop 3 KILL
host_daemon_start 3
in_lease=""
if in_lease=$(attempt 3 in-lease); then
  pass "ADD on host 3 after a restart $((SECONDS - tcut)) s into the partition: $in_lease"
else
  fail "ADD on host 3 inside its lease refused: $(cat "$CLUSTER_DIR/in-lease.err")"
fi
# Deleted again: a container that lives on a cut-off node past the reclaim
# time loses its address to the cluster (as swarm reschedules its tasks).
[[ -z "$in_lease" ]] || container_del 3 in-lease "$NET"

is_state() { [[ "$(node_status "$1" "$2")" == "$3" ]]; }
check "host 1 sees host3 dead" wait_for 30 is_state 1 host3 dead
check "host 3 sees host1 dead" wait_for 30 is_state 3 host1 dead

say "host 3 restarted past its lease: it must refuse, and say why"
while ((SECONDS - tcut <= LEASE + 1)); do sleep 1; done
host_daemon_stop 3 KILL
host_daemon_start 3
refused=0 got=()
for k in 1 2 3; do
  if a=$(attempt 3 "late$k"); then got+=("$a"); else refused=$((refused + 1)); fi
done
check "host 3 refused all 3 ADDs $((SECONDS - tcut)) s into the partition${got[*]:+ (it handed out ${got[*]})}" test "$refused" == 3
err=$(grep -h -m1 . "$CLUSTER_DIR/late1.err" 2>/dev/null || true)
info "host 3's refusal: $err"
check "the refusal says why (cut off longer than its lease)" grep -q "cut off from most of the cluster for longer than its lease" <<<"$err"
check "host 3's log says why" grep -qE "longer than its lease|lease lost" "$(log_of 3)"

say "the majority reclaims host 3's block and hands out its addresses"
# Host 3 handed out $pre3 and then the next one inside its lease: the next
# addresses of its block are the ones it would hand out now.
want=("$(next_ip "$pre3" 2)" "$(next_ip "$pre3" 3)")
placed=() slow=""
deadline=$((SECONDS + RECLAIM + 30))
# timed_attempt I NAME IP: attempt, noting an ADD that took over 5 s.
timed_attempt() {
  local t=$SECONDS rc=0
  attempt "$@" >/dev/null || rc=$?
  ((SECONDS - t <= 5)) || slow+="${slow:+, }host $1 $((SECONDS - t)) s at $((t - tcut)) s"
  return "$rc"
}
for ip in "${want[@]}"; do
  while ((SECONDS < deadline)); do
    if timed_attempt 1 "maj-${ip##*.}-1" "$ip"; then placed+=("host 1: $ip"); break; fi
    if timed_attempt 2 "maj-${ip##*.}-2" "$ip"; then placed+=("host 2: $ip"); break; fi
    sleep 1
  done
done
info "reclaimed $((SECONDS - tcut)) s after the cut: ${placed[*]:-nothing}"
if ((${#placed[@]} == 2)); then
  pass "the majority handed out host 3's next addresses (${want[*]})"
else
  fail "the majority handed out host 3's next addresses (${want[*]})${slow:+; slow ADDs: $slow}"
  # What the majority said, and when it saw host 3 go and took its blocks.
  for ip in "${want[@]}"; do
    for i in 1 2; do info "last refusal of $ip on host $i: $(grep -h -m1 . "$CLUSTER_DIR/maj-${ip##*.}-$i.err" 2>/dev/null)"; done
  done
  for i in 1 2; do
    { grep -hE "host3|reclaim|majority|lease|address block" "$(log_of "$i")" || true; } | tail -n 15 | sed "s/^/    host $i: /"
  done
fi
check "the reclaim is in the majority's logs" grep -q "reclaimed .* address block" "$(log_of 1)" "$(log_of 2)"
# Host 3, still cut off, keeps refusing (its attempt is the one that would collide).
if a=$(attempt 3 late4); then
  fail "host 3 handed out $a while cut off past its lease"
else
  pass "host 3 still refuses while cut off"
fi

say "node rm is refused where it could free addresses still in use"
if out=$(hctl 3 node rm host1 2>&1); then
  fail "host 3, cut off, removed host1: $out"
else
  check "host 3, cut off, may not remove host1: it sees no majority ($out)" grep -q "does not see a majority" <<<"$out"
fi
if out=$(hctl 1 node rm host2 2>&1); then
  fail "host 1 removed host2, which is alive: $out"
else
  check "host 1 may not remove host2: it is alive ($out)" grep -q "is alive" <<<"$out"
fi

say "heal"
heal
th=$SECONDS
for i in 1 2 3; do check "host $i sees 3 nodes alive after the heal" wait_for 40 alive_is "$i" 3; done
if wait_for 60 converged; then
  pass "every host's endpoint list is the set of live container addresses ($(live | wc -l)), $((SECONDS - th)) s after the heal"
else
  fail "endpoint lists did not converge to the live addresses"
  want_live=$(live)
  for i in 1 2 3; do diff <(echo "$want_live") <(eps "$i") | sed "s/^/    host $i: /" | head -20 || true; done
fi
d=$(live | dups)
check "no address live in two container namespaces${d:+ (duplicates: $d)}" test -z "$d"
for i in 1 2 3; do
  d=$(eps "$i" | dups)
  check "no address twice in host $i's endpoint list${d:+ (duplicates: $d)}" test -z "$d"
done

say "after the heal host 3 sees a majority: it hands out addresses again"
lease_ok() { hctl 3 cluster status | jq -e '.lease.valid' >/dev/null; }
check "host 3's lease is valid again" wait_for 20 lease_ok
if a=$(attempt 3 after-heal); then pass "ADD on host 3 after the heal: $a"; else fail "ADD on host 3 after the heal: $(cat "$CLUSTER_DIR/after-heal.err")"; fi
check "still no address twice among the live containers" test -z "$(live | dups)"

info "took $((SECONDS - T0)) s"
if (($(failures) > 0)); then echo "test_cluster_lease: $(failures) check(s) failed"; exit 1; fi
echo "test_cluster_lease: all checks passed"
