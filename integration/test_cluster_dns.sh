#!/usr/bin/env bash
# Service discovery on a 3-host cluster: containers resolve each
# other's names across hosts through their own host's swarmnetd, at their
# network's gateway address (from the CNI result's dns); names are scoped
# to the container's networks; PTR; NXDOMAIN vs NODATA; an answer too big for
# UDP is truncated and served whole over TCP; a real containerd container
# with that resolv.conf fetches http://NAME with busybox wget; a deleted
# container's name and a dead host's names stop resolving everywhere.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_dns.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
source "$HERE/lib/containerd.sh"
require_root
for tool in busybox dig jq ctr; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done

# Outside names go to an upstream server on the underlay: dnsmasq in the
# outside namespace (172.31.250.200, made by outside_up).
OUT=172.31.250.200
CLUSTER_DAEMON_ARGS="--dns-upstream $OUT"
cluster_up 3
outside_up
FRONT_GW=10.241.0.1
BACK_GW=10.242.0.1

# lookup CONTAINER NAME [TYPE]: the answer section's data, one per line
# (dig, as the container, against the resolver from its CNI result).
lookup() {
  local c="$1" name="$2" type="${3:-A}" server
  server=$(jq -r '.dns.nameservers[0]' "$CLUSTER_DIR/results/$c.json")
  # (dig +short prints ";; ..." notes, e.g. a timeout, on stdout too)
  ip netns exec "$(container_ns "$c")" dig +short +tries=1 +time=2 "@$server" "$name" "$type" 2>/dev/null |
    grep -v '^;' | sort || true
}
# status CONTAINER NAME [TYPE [WAIT]]: the rcode (NOERROR, NXDOMAIN,
# SERVFAIL...), "" when nothing came within WAIT seconds (default 2)
status() {
  local c="$1" name="$2" type="${3:-A}" wait="${4:-2}" server
  server=$(jq -r '.dns.nameservers[0]' "$CLUSTER_DIR/results/$c.json")
  { ip netns exec "$(container_ns "$c")" dig +tries=1 +time="$wait" "@$server" "$name" "$type" 2>/dev/null || true; } |
    sed -n 's/.*status: \([A-Z]*\),.*/\1/p'
}
resolves_to() { [[ "$(lookup "$1" "$2")" == "$3" ]]; }
resolves_not() { [[ -z "$(lookup "$1" "$2")" ]]; }

say "networks front and back; containers web (host 1), client (host 2) on front, db (host 3) on back"
hctl 1 network create front --subnet 10.241.0.0/24 >/dev/null
hctl 1 network create back --subnet 10.242.0.0/24 >/dev/null
for i in 2 3; do
  for n in front back; do wait_for 10 hctl "$i" network inspect "$n" || die "host $i lacks $n"; done
done
web=$(container_add 1 web front)
client=$(container_add 2 client front)
db=$(container_add 3 db back)
info "web $web, client $client, db $db"

check "the CNI result names the network's gateway as nameserver and the network as search domain" \
  test "$(container_resolv_conf client | tr '\n' ' ')" == "nameserver $FRONT_GW search front "
check "client (host 2) resolves web (host 1) across hosts" wait_for 10 resolves_to client web "$web"
check "web.front resolves too, in any letter case" resolves_to client WEB.Front "$web"
check "busybox nslookup in the container finds web" \
  bash -c "ip netns exec $(container_ns client) busybox nslookup web $FRONT_GW | grep -q 'Address: $web'"
check "PTR of web's address is web.front" \
  test "$(ip netns exec "$(container_ns client)" dig +short -x "$web" "@$FRONT_GW")" == "web.front."
check "AAAA of web: NODATA (NOERROR, no answer), not NXDOMAIN" test "$(status client web AAAA)" == NOERROR
check "AAAA of web: no answer" resolves_not client "web AAAA"
check "nothere.front: NXDOMAIN" test "$(status client nothere.front)" == NXDOMAIN

say "scope: names of another network are outside names"
check "db (back) resolves db itself" wait_for 10 resolves_to db db "$db"
check "client (front) does not resolve db (back)" resolves_not client db
check "db.back is no name for client either" resolves_not client db.back
check "db (back) does not resolve web (front)" resolves_not db web
# web's host has no endpoint of back, so only a host with one (host 3) has
# that gateway: ask host 3's swarmnetd from a front container there.
f3=$(container_add 3 f3 front)
check "f3 (front, host 3) asking back's gateway on its own host still gets no back names" \
  bash -c "[[ -z \$(ip netns exec $(container_ns f3) dig +short +tries=1 +time=2 @$BACK_GW db | grep -v '^;') ]]"
check "... while its own names resolve there too" \
  bash -c "[[ \$(ip netns exec $(container_ns f3) dig +short +tries=1 +time=2 @$BACK_GW web | grep -v '^;') == $web ]]"

say "outside names: forwarded to the upstream (dnsmasq on the underlay) and relayed"
ip netns exec "$(outside_ns)" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
  --listen-address="$OUT" --port 53 --address=/outside.test/192.0.2.10 --user=root --pid-file= </dev/null \
  >/dev/null 2>&1 {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
UPSTREAM=$!
on_exit "kill_pid $UPSTREAM"
check "outside.test resolves through the upstream" wait_for 10 resolves_to client outside.test 192.0.2.10
check "db (another network's name) is an outside name for client: the upstream's answer, not ours" \
  bash -c "[[ \$(ip netns exec $(container_ns client) dig +tries=1 +time=3 @$FRONT_GW db | sed -n 's/.*status: \\([A-Z]*\\),.*/\\1/p') =~ ^(REFUSED|NXDOMAIN)$ ]]"
kill_pid "$UPSTREAM"
t0=$(date +%s%N)
# (dig waits 5 s: swarmnetd's SERVFAIL comes after the upstream's timeout
# x tries, 2 s, which a 2 s dig could miss by a hair)
st=$(status client outside.test A 5)
t1=$(date +%s%N)
info "with the upstream gone: $st after $(((t1 - t0) / 1000000)) ms"
check "an unreachable upstream gives SERVFAIL" test "$st" == SERVFAIL
check "... within a bounded time (timeout 1 s x 2 tries, under 4 s)" test $(((t1 - t0) / 1000000)) -lt 4000
check "swarmnet's own names still answer meanwhile" resolves_to client web "$web"

say "an answer too big for UDP: truncated, then whole over TCP"
for n in $(seq 1 40); do
  curl -sf --unix-socket "$(host_sock 1)" -X POST -H 'Content-Type: application/json' \
    -d '{"container_id":"many-'"$n"'","ifname":"eth0","attach":false,"name":"many"}' \
    http://swarmnetd/v1/networks/front/endpoints >/dev/null || die "creating many-$n"
done
check "40 addresses reach host 2" wait_for 10 bash -c "[[ \$(ip netns exec $(container_ns client) dig +tcp +short @$FRONT_GW many | wc -l) == 40 ]]"
check "over UDP (512 bytes) the answer is cut and TC is set" \
  bash -c "ip netns exec $(container_ns client) dig +notcp +ignore +noedns +tries=1 @$FRONT_GW many | grep 'flags:' | grep -q ' tc'"
check "dig retries over TCP by itself and gets all 40" \
  test "$(ip netns exec "$(container_ns client)" dig +short "@$FRONT_GW" many | wc -l)" == 40

say "a real containerd container with the CNI result's resolv.conf fetches http://web"
containerd_ensure
busybox_image_ensure
mkdir -p "$CLUSTER_DIR/www"
echo "hello from web" >"$CLUSTER_DIR/www/index.html"
ip netns exec "$(container_ns web)" busybox httpd -f -p 80 -h "$CLUSTER_DIR/www" </dev/null \
  {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
HTTPD=$!
on_exit "kill_pid $HTTPD"
container_resolv_conf client >"$CLUSTER_DIR/client-resolv.conf"
CID="swdns-$$"
on_exit "ctr_ task kill -s KILL $CID >/dev/null 2>&1; ctr_ container rm $CID >/dev/null 2>&1; true"
got=$(ctr_ run --rm --with-ns "network:/var/run/netns/$(container_ns client)" \
  --mount "type=bind,src=$CLUSTER_DIR/client-resolv.conf,dst=/etc/resolv.conf,options=rbind:ro" \
  "$SWARMNET_IMAGE" "$CID" wget -q -O - http://web/ 2>&1 || true)
check "busybox wget http://web inside the container got the page" test "$got" == "hello from web"
got=$(ctr_ run --rm --with-ns "network:/var/run/netns/$(container_ns client)" \
  --mount "type=bind,src=$CLUSTER_DIR/client-resolv.conf,dst=/etc/resolv.conf,options=rbind:ro" \
  "$SWARMNET_IMAGE" "$CID" nslookup web 2>&1 || true)
check "busybox nslookup web inside the container (resolv.conf only)" grep -q "Address: $web" <<<"$got"

# The per-container limit and a flood: integration/test_dns_limit.sh.

say "consistency: a deleted container stops resolving on every host; so do a dead host's"
container_del 2 client front
check "client's name is gone for web (host 1)" wait_for 10 resolves_not web client
client=$(container_add 2 client front)
check "client is back" wait_for 10 resolves_to web client "$client"
host_daemon_stop 1
check "web (on dead host 1) no longer resolves on host 2" wait_for 20 resolves_not client web
check "client itself still resolves on host 2" resolves_to client client "$client"

exit "$(failures)"
