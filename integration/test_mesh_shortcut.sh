#!/usr/bin/env bash
# The routing mesh's shortcut on a 2-host cluster: web has 3 tasks, w1 on
# host 1 and w2, w3 on host 2. From an outside machine, a request to a
# node's ingress port that the hash gives to a task of that node is DNATed
# by the host straight to it: served with the client's own address, and
# never seen by that node's ingress sandbox (its conntrack holds no entry of
# the flow), while the requests given to the other node's tasks are (the
# control: the same check sees the flows the sandbox balanced). The spread
# stays even over the 3 tasks from both nodes (a third each: the VIP
# balances over the other node's tasks only). Clients inside the cluster
# still get answers: a task through its own node (hairpin), a container
# beside it, the node's own processes (localhost and its address), the
# other node. A failed health check takes w1 out of the host's DNAT and puts
# it back when it passes; a UDP client that keeps its source port, which
# the host sent straight to w1, fails over with it (the host forgets the
# flow's conntrack entry). After a restart the host's rules are found again
# (one per port); with --ingress-client-address masquerade every request
# goes through the sandbox, as before; the service's removal leaves nothing.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_mesh_shortcut.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox curl dig dnsmasq jq nsenter; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done
watchdog 400

cluster_up 2
outside_up
OUTSIDE_IP="$CLUSTER_UNDERLAY.200"
outside() { ip netns exec "$(outside_ns)" "$@"; }

hctl 1 network create front --subnet 10.245.0.0/24 >/dev/null
hctl 1 service create web --network front --publish 8080:80 --publish 5353:53/udp \
  --health tcp:80 --health-interval 1 --health-retries 2 >/dev/null
wait_for 10 hctl 2 network inspect front || die "host 2 lacks front"
wait_for 10 hctl 2 service inspect web || die "host 2 lacks the service"

# A task's web server: a CGI answering "NAME CLIENT-ADDRESS" (REMOTE_ADDR,
# the TCP peer busybox httpd accepted).
declare -A ADDR=() HTTPD=()
httpd_up() {  # httpd_up NAME
  ip netns exec "$(container_ns "$1")" busybox httpd -f -p 80 -h "$CLUSTER_DIR/www-$1" </dev/null >/dev/null 2>&1 \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  HTTPD[$1]=$!
  on_exit "kill_pid $!"
}
task_up() {  # task_up HOST NAME
  local host="$1" name="$2" www
  ADDR[$name]=$(CNI_ARGS=SWARMNET_SERVICE=web container_add "$host" "$name" front)
  www="$CLUSTER_DIR/www-$name"
  mkdir -p "$www/cgi-bin"
  cat >"$www/cgi-bin/who" <<CGI
#!/bin/sh
client=\$(echo "\$REMOTE_ADDR" | sed 's/^\[::ffff:\(.*\)\]\$/\1/')
printf 'Content-Type: text/plain\r\n\r\n$name %s\n' "\$client"
CGI
  chmod +x "$www/cgi-bin/who"
  httpd_up "$name"
  # UDP: who.test answers the task's own address.
  ip netns exec "$(container_ns "$name")" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
    --listen-address="${ADDR[$name]}" --port 53 --address="/who.test/${ADDR[$name]}" --user=root --pid-file= \
    </dev/null >/dev/null 2>&1 {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  on_exit "kill_pid $!"
}
task_up 1 w1
task_up 2 w2
task_up 2 w3
info "tasks w1 ${ADDR[w1]} (host 1), w2 ${ADDR[w2]} and w3 ${ADDR[w3]} (host 2)"
healthy_is() { [[ $(hctl "$1" service inspect web | jq '[.tasks[] | select(.healthy)] | length') == "$2" ]]; }
for i in 1 2; do wait_for 15 healthy_is "$i" 3 || die "host $i does not see the 3 tasks healthy"; done

# The ingress sandbox of host I: a network namespace swarmnetd holds by a
# descriptor (no name); its path under /proc.
sandbox_netns() {
  local pid="${_CLUSTER_PIDS[$1]}" own fd link
  own=$(readlink "/proc/$pid/ns/net")
  for fd in /proc/"$pid"/fd/*; do
    link=$(readlink "$fd" 2>/dev/null) || continue
    if [[ "$link" == net:* && "$link" != "$own" ]]; then echo "$fd"; return 0; fi
  done
  return 1
}
# The client ports of the outside's flows that host I's sandbox tracked.
sandbox_ports() {
  nsenter --net="$(sandbox_netns "$1")" cat /proc/net/nf_conntrack |
    awk -v c="src=$OUTSIDE_IP" '$0 ~ c" " {for (i = 1; i <= NF; i++) if ($i ~ /^sport=/) {sub("sport=", "", $i); print $i; break}}' |
    sort -u
}

# from_outside HOST N FIRST_PORT: N requests to HOST:8080, each from its own
# client port (FIRST_PORT, +1, ...); lines "PORT NAME CLIENT".
from_outside() {
  local host="$1" n="$2" port="$3" k out
  for ((k = 0; k < n; k++)); do
    out=$(outside curl -sf -m 2 --local-port "$((port + k))" "http://$(host_ip "$host"):8080/cgi-bin/who" 2>/dev/null) ||
      out="failed -"
    echo "$((port + k)) $out"
  done
}
count() { awk -v n="$2" '$2 == n {c++} END {print c + 0}' <<<"$1"; }
answers() { [[ "$(outside curl -sf -m 2 "http://$(host_ip "$1"):8080/cgi-bin/who")" == w[123]\ * ]]; }
for i in 1 2; do wait_for 15 answers "$i" || die "host $i's 8080 does not answer"; done

say "the host's DNAT: host 1 spreads by a hash, a third of the slots straight to w1"
rule=$(ip netns exec "$(host_ns 1)" nft list chain inet swarmnet published-dnat | grep 'comment "ingress:')
info "$rule"
check "host 1's rule hashes over w1 and the VIP" grep -q "jhash ip saddr . tcp sport mod 3 .*${ADDR[w1]} . 80" <<<"$rule"
check "and so does the UDP port's" grep -q "jhash ip saddr . udp sport mod 3 .*${ADDR[w1]} . 53" <<<"$rule"

# (Every flow through the mesh: the tally is of 120 requests, with a third
# each expected; a VIP still balancing over all 3 behind the shortcut would
# give the node's own tasks 5/9 from host 1, 8/9 from host 2.)
even_from() {  # even_from HOST FIRST_PORT: the tally, checked; the lines in $OUT
  local host="$1" t
  OUT=$(from_outside "$host" 120 "$2")
  t="w1 $(count "$OUT" w1), w2 $(count "$OUT" w2), w3 $(count "$OUT" w3), failed $(count "$OUT" failed)"
  info "120 requests from the outside to host $host: $t"
  check "host $host: all 120 answered" test "$(count "$OUT" failed)" == 0
  check "host $host: even over the 3 tasks (each 22..58 of 120)" \
    bash -c "for n in $(count "$OUT" w1) $(count "$OUT" w2) $(count "$OUT" w3); do ((n >= 22 && n <= 58)) || exit 1; done"
  check "host $host: every task saw the outside client's own address" \
    test "$(awk -v a="$OUTSIDE_IP" '$3 == a' <<<"$OUT" | wc -l)" == 120
}
even_from 1 41000
tracked=$(sandbox_ports 1)
direct=$(awk '$2 == "w1" {print $1}' <<<"$OUT" | sort -u)
balanced=$(awk '$2 == "w2" || $2 == "w3" {print $1}' <<<"$OUT" | sort -u)
n_direct_seen=$(comm -12 <(echo "$direct") <(echo "$tracked") | grep -c . || true)
n_balanced_seen=$(comm -12 <(echo "$balanced") <(echo "$tracked") | grep -c . || true)
info "host 1's sandbox tracked $n_direct_seen of the $(grep -c . <<<"$direct") flows w1 served, $n_balanced_seen of the $(grep -c . <<<"$balanced") w2 and w3 served"
check "the flows w1 served did not pass through host 1's sandbox" test "$n_direct_seen" == 0
check "control: every flow w2 and w3 served did (the check sees a balanced flow)" \
  test "$n_balanced_seen" == "$(grep -c . <<<"$balanced")" -a "$n_balanced_seen" -gt 0

say "host 2 (2 of the 3 tasks): two thirds straight, a third to the VIP, which takes w1 alone"
even_from 2 42000
tracked=$(sandbox_ports 2)
local_ports=$(awk '$2 == "w2" || $2 == "w3" {print $1}' <<<"$OUT" | sort -u)
remote_ports=$(awk '$2 == "w1" {print $1}' <<<"$OUT" | sort -u)
check "the flows w2 and w3 served did not pass through host 2's sandbox" \
  test "$(comm -12 <(echo "$local_ports") <(echo "$tracked") | grep -c . || true)" == 0
check "control: those w1 served did" \
  test "$(comm -12 <(echo "$remote_ports") <(echo "$tracked") | grep -c . || true)" == "$(grep -c . <<<"$remote_ports")"

say "UDP: host 1's 5353 spreads the same way"
udp_who() { outside dig +short +tries=1 +time=2 -p 5353 "@$(host_ip 1)" who.test | grep -v '^;' || echo failed; }
U=$(for ((k = 0; k < 60; k++)); do udp_who; done)
info "60 queries: $(sort <<<"$U" | uniq -c | tr -s ' \n' ' ')"
check "host 1: 60 of 60 UDP queries answered by the tasks" \
  test "$(grep -cxF -e "${ADDR[w1]}" -e "${ADDR[w2]}" -e "${ADDR[w3]}" <<<"$U" || true)" == 60
check "w1 (straight) and the other node's tasks (through the VIP) answered some" \
  bash -c "grep -qx '${ADDR[w1]}' <<<'$U' && grep -qxE '${ADDR[w2]}|${ADDR[w3]}' <<<'$U'"

say "clients inside the cluster"
inside_ok() {  # inside_ok N WHAT CMD...: N requests, all answered by a task; the names in $T
  local n="$1" what="$2" k; shift 2
  T=$(for ((k = 0; k < n; k++)); do "$@" 2>/dev/null | awk '{print $1}' || echo failed; done)
  info "$what: $(sort <<<"$T" | uniq -c | tr -s ' \n' ' ')"
  [[ $(grep -c '^w[123]$' <<<"$T" || true) == "$n" ]]
}
check "w1 -> its own node's 8080: 30 of 30 answered" \
  inside_ok 30 "w1 -> host 1" ip netns exec "$(container_ns w1)" curl -sf -m 2 "http://$(host_ip 1):8080/cgi-bin/who"
check "w1 answered some itself (the hairpin, straight from the host)" grep -q '^w1$' <<<"$T"
check "w2 -> its own node's 8080: 30 of 30 answered" \
  inside_ok 30 "w2 -> host 2" ip netns exec "$(container_ns w2)" curl -sf -m 2 "http://$(host_ip 2):8080/cgi-bin/who"
c1=$(container_add 1 c1 front)
check "container c1 ($c1, beside w1 on host 1) -> host 1:8080" \
  inside_ok 15 "c1 -> host 1" ip netns exec "$(container_ns c1)" curl -sf -m 2 "http://$(host_ip 1):8080/cgi-bin/who"
check "host 1 itself -> localhost:8080" \
  inside_ok 15 "host 1 -> 127.0.0.1" ip netns exec "$(host_ns 1)" curl -sf -m 2 "http://127.0.0.1:8080/cgi-bin/who"
check "host 1 itself -> its own address:8080" \
  inside_ok 15 "host 1 -> host 1" ip netns exec "$(host_ns 1)" curl -sf -m 2 "http://$(host_ip 1):8080/cgi-bin/who"
check "host 2 -> host 1:8080" \
  inside_ok 15 "host 2 -> host 1" ip netns exec "$(host_ns 2)" curl -sf -m 2 "http://$(host_ip 1):8080/cgi-bin/who"
hairpin_set() {  # host I's hairpin elements, "A.A B.B"
  ip netns exec "$(host_ns "$1")" nft -j list set inet swarmnet-mesh hairpin |
    jq -r '[.nftables[].set.elem // empty | .[] | .concat | join(".")] | sort | join(" ")'
}
check "host 1 masquerades exactly w1's flows to itself" test "$(hairpin_set 1)" == "${ADDR[w1]}.${ADDR[w1]}"
ingress_rules() { ip netns exec "$(host_ns "$1")" nft list chain inet swarmnet published-dnat | grep 'comment "ingress:' || true; }
# one_rule I plain|spread: host I holds one rule per port (2), of that kind.
one_rule() {
  local r
  r=$(ingress_rules "$1")
  [[ $(grep -c . <<<"$r") == 2 ]] || return 1
  if [[ "$2" == spread ]]; then [[ $(grep -c jhash <<<"$r") == 2 ]]; else ! grep -q jhash <<<"$r"; fi
}

say "a UDP client on a fixed source port that host 1 sends straight to w1"
# As a resolver or syslog client does: every query renews its flow's
# conntrack entry on host 1, and with it the DNAT straight to w1.
pinned_who() {  # pinned_who PORT: who.test from the outside's source port PORT
  outside dig +short +tries=1 +time=2 -p 5353 -b "0.0.0.0#$1" "@$(host_ip 1)" who.test | grep -v '^;' || echo failed
}
pin=$(first_port_reaching "${ADDR[w1]}" 46001 46060 pinned_who) || pin=""
check "one of 60 fixed source ports reaches w1" test -n "$pin"
info "source port ${pin:-none} reaches w1"
stays_on_w1() { local k; for k in 1 2 3; do [[ "$(pinned_who "$pin")" == "${ADDR[w1]}" ]] || return 1; done; }
check "and keeps reaching it (its flow holds its DNAT)" stays_on_w1

say "w1's health check fails: host 1 sends everything to the VIP, and w2, w3 serve"
kill_pid "${HTTPD[w1]}" "w1's httpd"
check "host 1 sees w1 unhealthy" wait_for 15 healthy_is 1 2
check "host 1's rule is the plain DNAT to the VIP" wait_for 5 one_rule 1 plain
check "and its hairpin set is empty" test -z "$(hairpin_set 1)"
# w1's DNS server still answers: without host 1 forgetting the flows it
# sent straight to w1, the pinned client's entry (renewed seconds ago,
# alive 30 s after its last query) would keep it there.
on_w2_or_w3() { local a; a=$(pinned_who "$pin"); [[ "$a" == "${ADDR[w2]}" || "$a" == "${ADDR[w3]}" ]]; }
check "the client that kept its source port fails over too (w2 or w3 answers it)" wait_for 5 on_w2_or_w3
info "source port ${pin:-none} now reaches $(pinned_who "${pin:-0}")"
OUT=$(from_outside 1 30 43000)
check "host 1: 30 of 30 answered by w2 and w3" test $(($(count "$OUT" w2) + $(count "$OUT" w3))) == 30
httpd_up w1
check "w1 healthy again" wait_for 15 healthy_is 1 3
check "host 1 spreads again" wait_for 5 one_rule 1 spread

say "swarmnetd on host 1 restarts: its rules are found again by their comments"
host_daemon_stop 1
host_daemon_start 1
check "host 1 sees the 3 tasks healthy" wait_for 20 healthy_is 1 3
check "host 1's 8080 answers after the restart" wait_for 20 answers 1
check "host 1 holds one rule for the port, spread" wait_for 10 one_rule 1 spread
info "$(ingress_rules 1)"
check "host 1's hairpin set holds w1 again" test "$(hairpin_set 1)" == "${ADDR[w1]}.${ADDR[w1]}"
OUT=$(from_outside 1 30 45000)
tracked=$(sandbox_ports 1)
direct=$(awk '$2 == "w1" {print $1}' <<<"$OUT" | sort -u)
info "w1 $(count "$OUT" w1), w2 $(count "$OUT" w2), w3 $(count "$OUT" w3), failed $(count "$OUT" failed)"
check "host 1: 30 of 30 answered, w1 some" test "$(count "$OUT" failed)" == 0 -a "$(count "$OUT" w1)" -gt 0
check "none of w1's through the new sandbox" test "$(comm -12 <(echo "$direct") <(echo "$tracked") | grep -c . || true)" == 0

say "host 2 restarted with --ingress-client-address masquerade: every flow through its sandbox"
host_daemon_stop 2
CLUSTER_DAEMON_ARGS="${CLUSTER_DAEMON_ARGS:-} --ingress-client-address masquerade" host_daemon_start 2
check "host 2's 8080 answers after the restart" wait_for 20 answers 2
check "host 2's rule is the plain DNAT to the VIP" wait_for 10 one_rule 2 plain
OUT=$(from_outside 2 30 44000)
tracked=$(sandbox_ports 2)
served=$(awk '$2 ~ /^w[123]$/ {print $1}' <<<"$OUT" | sort -u)
info "w1 $(count "$OUT" w1), w2 $(count "$OUT" w2), w3 $(count "$OUT" w3), failed $(count "$OUT" failed)"
check "host 2: 30 of 30 answered" test "$(grep -c . <<<"$served")" == 30
check "every one through host 2's sandbox" test "$(comm -12 <(echo "$served") <(echo "$tracked") | grep -c . || true)" == 30
check "the tasks saw the sandbox's address, not the client's" test "$(awk -v a="$OUTSIDE_IP" '$3 == a' <<<"$OUT" | wc -l)" == 0

say "the service's removal leaves nothing on the host"
hctl 1 service rm web >/dev/null
for i in 1 2; do
  check "host $i holds no ingress port rule" wait_for 10 bash -c \
    "! ip netns exec $(host_ns "$i") nft list ruleset | grep -q 'comment \"ingress:'"
  check "host $i's hairpin set is empty" test -z "$(hairpin_set "$i")"
done

exit "$(failures)"
