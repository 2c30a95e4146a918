#!/usr/bin/env bash
# CNI GC releases only what the CNI plugin made. One
# swarmnetd in a host namespace; on a /29 network (5 addresses): a service's
# VIP, a Docker endpoint made through the daemon's API as swarmnet-docker
# makes it, and three containers added by the real swarmnet CNI plugin fill
# the network. GC with an empty valid list must release the three CNI
# endpoints (the control: GC does release) and leave the VIP and the Docker
# endpoint; the next ADD must then get a CNI container's old address, never
# the VIP's (a released VIP would be the first address found on wrapping).
# The API refuses a client that claims to be the daemon's own VIP or sandbox.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/swarmnet.sh"
require_root
command -v jq >/dev/null || die "jq is needed"
command -v curl >/dev/null || die "curl is needed"
watchdog "${SWARMNET_IT_TIMEOUT:-120}"

PLUGIN=$(need_bin swarmnet)
TMP=$(mktemp -d /tmp/swarmnet-gc-owner.XXXXXX)
on_exit "rm -rf '$TMP'"
export SWARMNET_RUN_DIR="$TMP"
SOCK="$TMP/swarmnetd.sock"
P="sngc$$"  # every namespace made here starts with this
HOSTNS="$P-host"

cleanup_namespaces() {
  local ns
  for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    ip netns del "$ns" 2>/dev/null || true
  done
}
on_exit cleanup_namespaces
ip netns add "$HOSTNS"
ip -n "$HOSTNS" link set lo up
swarmnetd_start "$TMP/state" "$SOCK" "$HOSTNS"

NET=gcnet
CONF=$(jq -cn --arg n "$NET" --arg s "$SOCK" '{cniVersion: "1.1.0", name: $n, type: "swarmnet", daemonSocket: $s}')
# cni COMMAND CONTAINER [CONFIG]: the plugin run as a runtime runs it; stdout in $OUT, status in $RC.
cni() {
  local nspath=""
  [[ -z "$2" ]] || nspath="/var/run/netns/$P-$2"
  set +e
  OUT=$(ip netns exec "$HOSTNS" env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
    CNI_NETNS="$nspath" CNI_IFNAME="${2:+eth0}" CNI_PATH="$SWARMNET_BIN_DIR" "$PLUGIN" <<<"${3:-$CONF}" 2>>"$TMP/plugin.stderr")
  RC=$?
  set -e
}
add() {  # add NAME: a namespace and a CNI ADD into it; prints the address
  ip netns add "$P-$1"
  cni ADD "$1"
  [[ "$RC" == 0 ]] || die "ADD $1 failed: $OUT"
  jq -r '.ips[0].address | split("/")[0]' <<<"$OUT"
}
api() {  # api METHOD PATH [BODY]: the daemon's API, as swarmnet-docker calls it
  curl -s --unix-socket "$SOCK" -X "$1" -H 'Content-Type: application/json' ${3:+--data "$3"} "http://swarmnetd$2"
}
eps() { snctl "$SOCK" endpoint ls "$NET" --format json; }
has_ep() { eps | jq -e --arg c "$1" 'any(.[]; .container_id == $c)' >/dev/null; }
no_ep() { ! has_ep "$1"; }

say "network $NET (/29: 5 addresses): a VIP, a Docker endpoint, 3 CNI containers"
snctl "$SOCK" network create "$NET" --subnet 10.78.0.0/29 >/dev/null
snctl "$SOCK" service create web --network "$NET" --port 80/tcp >/dev/null
VIP=$(snctl "$SOCK" service inspect web | jq -r ".vips.$NET")
info "web's VIP: $VIP"
DOCKER_ID=$(printf 'd%.0s' {1..64})
docker_ep=$(api POST "/v1/networks/$NET/endpoints" \
  '{"container_id": "'"$DOCKER_ID"'", "ifname": "eth0", "attach": true, "owner": "docker",
    "labels": {"com.docker.network.id": "0123456789abcdef"}}')
DOCKER_IP=$(jq -r '.address | split("/")[0]' <<<"$docker_ep")
info "Docker endpoint: $DOCKER_IP (owner $(jq -r .owner <<<"$docker_ep"))"
c1=$(add c1); c2=$(add c2); c3=$(add c3)
info "CNI containers: c1 $c1, c2 $c2, c3 $c3"
check "the network is full (5 endpoints)" test "$(eps | jq length)" == 5
check "the endpoints carry their owners" \
  test "$(eps | jq -r '[.[] | .owner] | sort | join(",")')" == "cni,cni,cni,docker,service-vip"

say "the API refuses a client that claims the daemon's own owners"
reply=$(api POST "/v1/networks/$NET/endpoints" '{"container_id": "x1", "ifname": "eth0", "attach": false, "owner": "service-vip"}')
check "owner service-vip from a client: invalid_argument ($(jq -r .message <<<"$reply"))" \
  test "$(jq -r .code <<<"$reply")" == invalid_argument

say "GC with an empty valid list (the runtime knows no container)"
# The runtime lost track of all three (their namespaces are gone without DEL).
for c in c1 c2 c3; do ip netns del "$P-$c"; done
cni GC "" "$(jq -c '. + {"cni.dev/valid-attachments": []}' <<<"$CONF")"
check "GC succeeded (rc $RC${OUT:+: $OUT})" test "$RC" == 0
for c in c1 c2 c3; do check "GC released CNI container $c" no_ep "$c"; done
check "GC left the service VIP's reservation" has_ep svc-vip-web
check "GC left the Docker endpoint" has_ep "$DOCKER_ID"
check "the service still has its VIP $VIP" test "$(snctl "$SOCK" service inspect web | jq -r ".vips.$NET")" == "$VIP"

say "the next ADD gets a released CNI address, not the VIP's"
c4=$(add c4)
info "c4: $c4"
check "c4 ($c4) is not the VIP ($VIP)" test "$c4" != "$VIP"
check "c4 ($c4) is not the Docker endpoint's address ($DOCKER_IP)" test "$c4" != "$DOCKER_IP"
check "c4 got one of the released CNI addresses" grep -qxF "$c4" <<<"$(printf '%s\n' "$c1" "$c2" "$c3")"
check "no address twice in the endpoint list" test -z "$(eps | jq -r '.[].address' | sort | uniq -d)"
cni DEL c4
check "DEL c4" test "$RC" == 0

if (($(failures) > 0)); then echo "test_cni_gc_owner: $(failures) check(s) failed"; exit 1; fi
echo "test_cni_gc_owner: all checks passed"
