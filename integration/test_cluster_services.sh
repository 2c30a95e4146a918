#!/usr/bin/env bash
# Services on a 3-host cluster (nftables balancer, as this kernel
# has no IPVS — the IPVS balancer's own test runs in a VM): a client's TCP
# and UDP requests to a service's VIP (by name, through swarmnet's DNS)
# reach all replicas on all hosts roughly evenly; a replica whose health
# check fails leaves the balancers and DNS within interval x retries plus
# convergence, and comes back; dnsrr answers rotate; SRV; removing the
# service closes the VIP and leaves nothing in the kernel.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_services.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox dig jq dnsmasq; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done

cluster_up 3
GW=10.243.0.1
hctl 1 network create front --subnet 10.243.0.0/24 >/dev/null
for i in 2 3; do wait_for 10 hctl "$i" network inspect front || die "host $i lacks front"; done

say "service web: VIP mode, TCP health check on port 80 every second, 2 retries"
hctl 1 service create web --network front --port 80/tcp --health tcp:80 --health-interval 1 --health-retries 2 >/dev/null
VIP=$(hctl 1 service inspect web | jq -r '.vips.front')
info "web's VIP on front: $VIP"
for i in 2 3; do wait_for 10 hctl "$i" service inspect web || die "host $i lacks the service"; done

# start_task NAME IP: busybox httpd (port 80, page = NAME) and dnsmasq (UDP
# port 53, who.test = IP) in the task's namespace; pids in SERVERS[NAME].
declare -A HTTPD=() DNSMASQ=()
start_httpd() {
  local name="$1"
  mkdir -p "$CLUSTER_DIR/www-$name"
  echo "$name" >"$CLUSTER_DIR/www-$name/index.html"
  ip netns exec "$(container_ns "$name")" busybox httpd -f -p 80 -h "$CLUSTER_DIR/www-$name" </dev/null \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  HTTPD[$name]=$!
  on_exit "kill_pid ${HTTPD[$name]}"
}
start_task() {
  local name="$1" ip="$2"
  start_httpd "$name"
  ip netns exec "$(container_ns "$name")" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
    --listen-address="$ip" --port 53 --address="/who.test/$ip" --user=root --pid-file= </dev/null \
    >/dev/null 2>&1 {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  DNSMASQ[$name]=$!
  on_exit "kill_pid ${DNSMASQ[$name]}"
}
w1=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 w1 front)
w2=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 2 w2 front)
w3=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 3 w3 front)
start_task w1 "$w1"
start_task w2 "$w2"
start_task w3 "$w3"
client=$(container_add 1 client front)
info "tasks w1 $w1 (host 1), w2 $w2 (host 2), w3 $w3 (host 3); client $client (host 1)"

in_client() { ip netns exec "$(container_ns client)" "$@"; }
healthy_tasks() { hctl "$1" service inspect web | jq '[.tasks[] | select(.healthy)] | length'; }
check "every host sees the 3 tasks healthy" wait_for 15 bash -c \
  "for i in 1 2 3; do [[ \$(SWARMNET_BIN_DIR=$SWARMNET_BIN_DIR; $SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) service inspect web | jq '[.tasks[] | select(.healthy)] | length') == 3 ]] || exit 1; done"
check "the name web resolves to the VIP" test "$(in_client dig +short "@$GW" web)" == "$VIP"
BRIDGE=$(hctl 1 network inspect front | jq -r .bridge)
check "host 1 holds the VIP as a local route through front's bridge, not as an address" bash -c \
  "ip -n $(host_ns 1) -4 route show table local proto 83 | grep -qx 'local $VIP dev $BRIDGE scope host *' && ! ip -n $(host_ns 1) -4 addr show | grep -q ' $VIP/32'"

# tally N CMD...: runs CMD N times, prints "name count" lines of its outputs.
tally() {
  local n="$1"; shift
  for ((k = 0; k < n; k++)); do "$@" 2>/dev/null || echo failed; done | sort | uniq -c | awk '{print $2, $1}'
}
# (curl, not busybox wget: the static busybox's resolver crashes on the
# host's NSS setup when run outside a container's own root.)
http_get() { in_client curl -sf -m 2 "http://$1/"; }
udp_who() { in_client dig +short +tries=1 +time=2 "@$1" who.test; }
# The same from a fixed source port, as a resolver or syslog client keeps:
# every query renews its conntrack entry, and with it the backend it got.
pinned_who() { in_client dig +short +tries=1 +time=2 -b "0.0.0.0#$1" "@$VIP" who.test; }
spread_ok() {  # spread_ok "TALLY" MIN NAMES...: every name got at least MIN
  local t="$1" min="$2"; shift 2
  for name in "$@"; do
    local c
    c=$(awk -v n="$name" '$1 == n {print $2}' <<<"$t")
    [[ "${c:-0}" -ge "$min" ]] || return 1
  done
}

say "TCP: 60 requests to http://VIP/ from the client"
t=$(tally 60 http_get "$VIP")
info "$(tr '\n' ' ' <<<"$t")"
check "all three replicas answered, each at least 8 of 60 times" spread_ok "$t" 8 w1 w2 w3
check "no request failed" bash -c "! grep -q failed <<<'$t'"

say "UDP: 60 DNS queries to the VIP, answered by the replica's own dnsmasq"
t=$(tally 60 udp_who "$VIP")
info "$(tr '\n' ' ' <<<"$t")"
check "all three replicas answered over UDP, each at least 8 of 60 times" spread_ok "$t" 8 "$w1" "$w2" "$w3"

check "SRV _80._tcp.web names the service" test "$(in_client dig +short "@$GW" _80._tcp.web SRV)" == "0 10 80 web.front."
for i in 1 2 3; do check "lb check on host $i: no difference" hctl "$i" lb check; done

say "a client on a fixed source port that reaches w3"
pin=$(first_port_reaching "$w3" 40001 40060 pinned_who) || pin=""
check "one of 60 fixed source ports reaches w3" test -n "$pin"
info "source port ${pin:-none} reaches w3"
check "and keeps reaching it (its flow holds its backend)" \
  bash -c "for k in 1 2 3; do [[ \$(ip netns exec $(container_ns client) dig +short +tries=1 +time=2 -b 0.0.0.0#$pin @$VIP who.test) == '$w3' ]] || exit 1; done"

say "failover: w3's web server dies; its host's check fails twice; every host drops it"
kill_pid "${HTTPD[w3]}"
start=$(date +%s.%N)
check "tasks.web loses w3 within interval x retries + convergence (10 s)" \
  wait_for 10 bash -c "[[ \$(ip netns exec $(container_ns client) dig +short @$GW tasks.web | sort | tr '\n' ' ') == \"$(printf '%s\n' "$w1" "$w2" | sort | tr '\n' ' ')\" ]]"
info "w3 out of DNS after $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s"
# Without the balancer forgetting w3's UDP flows, this one's entry (renewed
# seconds ago, alive 30 s after its last query) would keep it on w3. They
# are forgotten just after the VIP changes, by the balancer's thread.
check "the client that kept its source port fails over too (w1 or w2 answers it)" wait_for 3 \
  bash -c "a=\$(ip netns exec $(container_ns client) dig +short +tries=1 +time=1 -b 0.0.0.0#$pin @$VIP who.test); [[ \$a == '$w1' || \$a == '$w2' ]]"
info "source port $pin now reaches $(pinned_who "$pin")"
t=$(tally 30 http_get "$VIP")
info "$(tr '\n' ' ' <<<"$t")"
check "30 requests after the failure: none to w3, none failed" bash -c "! grep -qE '^(w3|failed) ' <<<'$t'"
t=$(tally 30 udp_who "$VIP")
check "UDP too: w3 (its dnsmasq still up) gets nothing while unhealthy" bash -c "! grep -q '^$w3 ' <<<'$t'"
for i in 1 2 3; do check "lb check on host $i after the failure" hctl "$i" lb check; done

say "recovery: w3's web server is back"
start_httpd w3
check "w3 is back in tasks.web" wait_for 10 bash -c "ip netns exec $(container_ns client) dig +short @$GW tasks.web | grep -qx '$w3'"
check "and gets requests again" wait_for 10 bash -c "for k in 1 2 3 4 5 6 7 8 9 10; do ip netns exec $(container_ns client) curl -sf -m 2 http://$VIP/; done | grep -qx w3"

say "dnsrr: service api, its name is its healthy tasks' addresses, rotated"
hctl 2 service create api --network front --endpoint-mode dnsrr >/dev/null
a1=$(CNI_ARGS=SWARMNET_SERVICE=api container_add 1 a1 front)
a2=$(CNI_ARGS=SWARMNET_SERVICE=api container_add 3 a2 front)
want=$(printf '%s\n' "$a1" "$a2" | sort | tr '\n' ' ')
check "api resolves to both tasks (no VIP)" wait_for 10 bash -c "[[ \$(ip netns exec $(container_ns client) dig +short @$GW api | sort | tr '\n' ' ') == '$want' ]]"
firsts=$(for k in 1 2 3 4 5 6; do in_client dig +short "@$GW" api | head -1; done | sort -u | wc -l)
check "the first address rotates between answers" test "$firsts" -eq 2
check "api has no VIP" test "$(hctl 1 service inspect api | jq '.vips | length')" -eq 0

say "removing web closes its VIP on every host and leaves nothing in the kernel"
hctl 3 service rm web >/dev/null
check "the VIP no longer answers" wait_for 10 bash -c "! ip netns exec $(container_ns client) curl -sf -m 1 http://$VIP/ >/dev/null 2>&1"
for i in 1 2 3; do
  check "host $i: no VIP element in the balancer's table" \
    wait_for 10 bash -c "! ip netns exec $(host_ns "$i") nft list table ip swarmnet-lb 2>/dev/null | grep -q '$VIP'"
  check "host $i: no VIP route left (nor an address)" bash -c "[[ -z \$(ip -n $(host_ns "$i") -4 route show table local $VIP) ]] && ! ip -n $(host_ns "$i") -4 addr show | grep -q ' $VIP/32'"
  check "host $i: lb check" hctl "$i" lb check
done
check "the name web is gone" bash -c "[[ -z \$(ip netns exec $(container_ns client) dig +short @$GW web | grep -v '^;') ]]"

exit "$(failures)"
