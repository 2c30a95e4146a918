#!/usr/bin/env bash
# Hairpin on a 2-host cluster: a task calling its own
# service's VIP, and its own service's ingress port on its node, gets an
# answer 100 times out of 100, with 1 replica (every request balanced back
# to the caller itself) and with 2 replicas (on two hosts; some requests go
# to the caller, some to the other task, and the test checks both happened,
# so the hairpin path really was taken).
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_hairpin.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox jq dnsmasq curl; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done
watchdog 420

cluster_up 2
hctl 1 network create front --subnet 10.247.0.0/24 >/dev/null
wait_for 10 hctl 2 network inspect front || die "host 2 lacks front"
hctl 1 service create solo --network front --publish 8081:80 >/dev/null
hctl 1 service create web --network front --publish 8080:80 >/dev/null
wait_for 10 hctl 2 service inspect web || die "host 2 lacks the services"
SOLO_VIP=$(hctl 1 service inspect solo | jq -r '.vips.front')
WEB_VIP=$(hctl 1 service inspect web | jq -r '.vips.front')

s1=$(CNI_ARGS=SWARMNET_SERVICE=solo container_add 1 s1 front)
w1=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 w1 front)
w2=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 2 w2 front)
task_servers s1 "$s1"
task_servers w1 "$w1"
task_servers w2 "$w2"
info "solo: VIP $SOLO_VIP, task s1 $s1 (host 1); web: VIP $WEB_VIP, tasks w1 $w1 (host 1), w2 $w2 (host 2)"

# get FROM URL: one request from task FROM's namespace; the page names the task that answered.
get() { ip netns exec "$(container_ns "$1")" curl -sf -m 1 "$2" 2>/dev/null || echo failed; }
tally() {  # tally N FROM URL: "name count" lines of N requests' answers
  local k
  for ((k = 0; k < $1; k++)); do get "$2" "$3"; done | sort | uniq -c | awk '{print $2, $1}'
}
count_of() { awk -v n="$2" '$1 == n {c = $2} END {print c + 0}' <<<"$1"; }
two_tasks() { [[ $(hctl 1 service inspect web | jq '[.tasks[] | select(.healthy)] | length') == 2 ]]; }
wait_for 15 two_tasks || die "host 1 does not see web's 2 tasks"
# The ingress ports answer from outside the tasks first (w2 asks host 2's),
# so a failure below is the hairpin's, not a mesh still being built.
wait_for 20 bash -c "[[ \$(ip netns exec $(container_ns w2) curl -sf -m 1 http://$(host_ip 1):8081/) == s1 ]]" ||
  die "host 1's ingress port 8081 never answered w2"
wait_for 20 bash -c "ip netns exec $(container_ns w2) curl -sf -m 1 http://$(host_ip 1):8080/ >/dev/null" ||
  die "host 1's ingress port 8080 never answered w2"

say "1 replica: s1 calls its own service"
t=$(tally 100 s1 "http://$SOLO_VIP/")
info "100 requests from s1 to solo's VIP: $(tr '\n' ' ' <<<"$t")"
check "s1 -> solo's VIP: 100 of 100 answered (by s1 itself)" test "$(count_of "$t" s1)" == 100
t=$(tally 100 s1 "http://$(host_ip 1):8081/")
info "100 requests from s1 to its node's ingress port 8081: $(tr '\n' ' ' <<<"$t")"
check "s1 -> host 1:8081 (ingress): 100 of 100 answered (by s1 itself)" test "$(count_of "$t" s1)" == 100

say "2 replicas: w1 calls its own service"
t=$(tally 100 w1 "http://$WEB_VIP/")
info "100 requests from w1 to web's VIP: $(tr '\n' ' ' <<<"$t")"
check "w1 -> web's VIP: 100 of 100 answered" test "$(( $(count_of "$t" w1) + $(count_of "$t" w2) ))" == 100
check "w1 answered some itself (the hairpin) and w2 the others" \
  test "$(count_of "$t" w1)" -ge 1 -a "$(count_of "$t" w2)" -ge 1
t=$(tally 100 w1 "http://$(host_ip 1):8080/")
info "100 requests from w1 to its node's ingress port 8080: $(tr '\n' ' ' <<<"$t")"
check "w1 -> host 1:8080 (ingress): 100 of 100 answered" test "$(( $(count_of "$t" w1) + $(count_of "$t" w2) ))" == 100
check "w1 answered some itself and w2 the others" test "$(count_of "$t" w1)" -ge 1 -a "$(count_of "$t" w2)" -ge 1

for i in 1 2; do check "lb check on host $i" hctl "$i" lb check; done

say "the hairpin elements follow the tasks"
check "host 1 masquerades exactly the flows of s1, w1 and w2 back to themselves" \
  bash -c "[[ \$(ip netns exec $(host_ns 1) nft -j list set ip swarmnet-lb hairpin | jq -r '[.nftables[].set.elem // empty | .[] | .concat | join(\".\")] | sort | join(\" \")') == \
'$(printf '%s\n' "$s1.$s1" "$w1.$w1" "$w2.$w2" | sort | tr '\n' ' ' | sed 's/ $//')' ]]"
container_del 2 w2 front
check "w2's element goes with it" wait_for 10 bash -c "! ip netns exec $(host_ns 1) nft list set ip swarmnet-lb hairpin | grep -q '$w2 . $w2'"
check "w1's stays" bash -c "ip netns exec $(host_ns 1) nft list set ip swarmnet-lb hairpin | grep -q '$w1 . $w1'"

exit "$(failures)"
