#!/usr/bin/env bash
# Docker users' options on a swarmnet network, with a real dockerd (one host
# namespace with its own swarmnetd, and an outside machine): --internal (no
# way out, a normal network as the control), -o com.docker.network.driver.mtu,
# --gateway, --ip-range, --network-alias and docker network connect --alias
# (resolved by swarmnet's DNS from a Docker and from a containerd/CNI
# container), Docker containers resolving swarmnet's names without --dns,
# and options swarmnet does not take refused with the reason, leaving
# nothing behind.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_docker_options.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/containerd.sh"
source "$HERE/lib/cluster.sh"
source "$HERE/lib/docker.sh"
require_root
watchdog 300
need_bin swarmnet-docker >/dev/null
for tool in dockerd dig jq; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done

CLUSTER_TAG="swdo$$"
containerd_ensure
cluster_up 1
outside_up
docker_env_up 1

dkq() { dk "$@" >/dev/null; }
in_c() { local c="$1"; shift; dk 1 exec "$c" "$@"; }
in_cq() { in_c "$@" >/dev/null 2>&1; }
run_c() { dk 1 run -d --name "$1" "${@:2}" "$DOCKER_TEST_IMAGE" sleep 100000 >/dev/null; }
snet() { hctl 1 network inspect "$1"; }
OUT="$CLUSTER_UNDERLAY.200"

say "--internal, -o com.docker.network.driver.mtu=1400, --gateway 10.91.0.254"
check "docker network create --internal --gateway -o mtu" dkq 1 network create -d swarmnet --ipam-driver swarmnet \
  --ipam-opt swarmnet.network=inet --internal --subnet 10.91.0.0/24 --gateway 10.91.0.254 \
  -o com.docker.network.driver.mtu=1400 inet
check "and a plain one as the control" dkq 1 network create -d swarmnet --ipam-driver swarmnet \
  --ipam-opt swarmnet.network=open --subnet 10.92.0.0/24 open
info "swarmnet network inet: $(snet inet | jq -c '{gateway, mtu, internal}')"
check "the swarmnet network is internal, mtu 1400, gateway 10.91.0.254" \
  test "$(snet inet | jq -c '[.internal, .mtu, .gateway]')" = '[true,1400,"10.91.0.254"]'
check "docker network inspect agrees (Internal, the gateway)" \
  test "$(dk 1 network inspect -f '{{.Internal}} {{(index .IPAM.Config 0).Gateway}}' inet)" = "true 10.91.0.254"
run_c ci --network inet
run_c co --network open
check "the internal container's eth0 has mtu 1400" test "$(in_c ci cat /sys/class/net/eth0/mtu)" = 1400
check "the control's eth0 has the network's default mtu, not 1400" \
  test "$(in_c co cat /sys/class/net/eth0/mtu)" = "$(snet open | jq .mtu)"
bridge=$(snet inet | jq -r .bridge)
check "the network's bridge $bridge has mtu 1400" \
  test "$(ip netns exec "$(host_ns 1)" cat "/sys/class/net/$bridge/mtu")" = 1400
check "the internal container has no default route" bash -c "! docker -H $(docker_host 1) exec ci ip route | grep -q default"
check "the control has its default route via its gateway" bash -c "docker -H $(docker_host 1) exec co ip route | grep -q 'default via 10.92.0.1'"
check "the control reaches the outside machine $OUT" in_cq co ping -c 2 -W 2 "$OUT"
check "the internal container does not reach it" bash -c "! docker -H $(docker_host 1) exec ci ping -c 2 -W 2 $OUT >/dev/null 2>&1"
run_c ci2 --network inet --cap-add NET_ADMIN
check "a container that adds a default route itself" in_cq ci2 ip route add default via 10.91.0.254
check "still does not reach the outside machine (no masquerade, the firewall drops it)" bash -c \
  "! docker -H $(docker_host 1) exec ci2 ping -c 2 -W 2 $OUT >/dev/null 2>&1"
check "the internal container reaches its gateway 10.91.0.254 (swarmnet's DNS is there)" in_cq ci ping -c 1 -W 2 10.91.0.254
check "and resolves its own name through it" wait_for 10 bash -c \
  "[[ \$(docker -H $(docker_host 1) exec ci nslookup ci 10.91.0.254 2>/dev/null | grep -c 'Address.*10.91.0.') -ge 1 ]]"

say "--ip-range 10.90.0.128/28"
check "docker network create --ip-range" dkq 1 network create -d swarmnet --ipam-driver swarmnet \
  --ipam-opt swarmnet.network=rng --subnet 10.90.0.0/24 --ip-range 10.90.0.128/28 rng
run_c r1 --network rng
run_c r2 --network rng
run_c r3 --network rng --ip 10.90.0.5
a1=$(docker_ip 1 r1 rng); a2=$(docker_ip 1 r2 rng)
info "r1 $a1, r2 $a2, r3 $(docker_ip 1 r3 rng)"
in_range() { local last="${1##*.}"; [[ "${1%.*}" == 10.90.0 ]] && ((last >= 128 && last <= 143)); }
check "r1's address is in the range" in_range "$a1"
another_in_range() { [[ "$1" != "$2" ]] && in_range "$1"; }
check "r2's address is in the range, another one" another_in_range "$a2" "$a1"
check "--ip outside the range but inside the subnet is honoured, as in Docker" test "$(docker_ip 1 r3 rng)" = 10.90.0.5
check "r1 reaches r3" in_cq r1 ping -c 1 -W 2 10.90.0.5
dk 1 rm -f r2 >/dev/null
run_c r4 --network rng
check "a released address of the range is handed out again" test "$(docker_ip 1 r4 rng)" = "$a2"

say "--network-alias and docker network connect --alias, resolved by swarmnet's DNS"
run_c d1 --network open --network-alias db --network-alias primary.db
run_c d2 --network inet
dkq 1 network connect --alias cache open d2
cc=$(container_add 1 cc open)
info "containerd/CNI container cc $cc on the same swarmnet network"
cni_dig() { ip netns exec "$(container_ns cc)" dig +short +tries=1 +time=2 @10.92.0.1 "$1" 2>/dev/null | grep -v '^;' || true; }
d1=$(docker_ip 1 d1 open); d2=$(docker_ip 1 d2 open)
check "the containerd container resolves --network-alias db to d1 ($d1)" wait_for 10 bash -c "[[ \$(ip netns exec $(container_ns cc) dig +short @10.92.0.1 db) == $d1 ]]"
check "and primary.db" test "$(cni_dig primary.db)" = "$d1"
check "and connect --alias cache to d2's address on that network ($d2)" wait_for 10 bash -c "[[ \$(ip netns exec $(container_ns cc) dig +short @10.92.0.1 cache) == $d2 ]]"
check "the container name d1 resolves too (control)" test "$(cni_dig d1)" = "$d1"
check "a name nobody has does not (control)" test -z "$(cni_dig nope)"
check "the alias is on its network only: d2 on inet does not answer cache" bash -c \
  "[[ -z \$(ip netns exec $(container_ns cc) dig +short @10.92.0.1 cache.inet) ]]"
check "a Docker container resolves db through swarmnet's DNS" bash -c \
  "docker -H $(docker_host 1) exec co nslookup db 10.92.0.1 2>/dev/null | grep -q 'Address.*$d1'"
check "and the CNI container cc by its name" bash -c \
  "docker -H $(docker_host 1) exec co nslookup cc 10.92.0.1 2>/dev/null | grep -q 'Address.*$cc'"

say "Docker containers resolve swarmnet's names without --dns"
check "co was given no --dns: Docker's embedded DNS is its nameserver" bash -c \
  "docker -H $(docker_host 1) exec co cat /etc/resolv.conf | grep -qx 'nameserver 127.0.0.11'"
vip=$(hctl 1 service create svc --network open | sed -n 's/.* open=//p')
info "service svc, VIP $vip on open"
dk_name() { dk 1 exec co timeout 10 nslookup "$1" 2>/dev/null | sed -n '/^Name:/,$p' | awk '/^Address/ {print $NF}'; }
check "co resolves the containerd container's name cc ($cc)" wait_for 10 bash -c "[[ \$(docker -H $(docker_host 1) exec co nslookup cc 2>/dev/null | sed -n '/^Name:/,\$p' | awk '/^Address/ {print \$NF}') == $cc ]]"
check "and the swarmnet service svc to its VIP" test "$(dk_name svc)" = "$vip"
check "and d1 (Docker's own name, answered by Docker) (control)" test "$(dk_name d1)" = "$d1"
check "a name nobody has does not resolve (control)" test -z "$(dk_name nope)"
redirected() { ip netns exec "$(host_ns 1)" nft list table ip swarmnet_docker_dns | grep -o 'packets [0-9]*' | awk '{print $2}'; }
info "queries redirected to swarmnetd: $(redirected)"
check "the plugin's redirect counted them" test "$(redirected)" -gt 0
plugin_stop 1
check "when the plugin stops, its table goes" bash -c "! ip netns exec $(host_ns 1) nft list table ip swarmnet_docker_dns >/dev/null 2>&1"
check "and co no longer resolves cc: the redirect is what made it work (control)" test -z "$(dk_name cc)"
plugin_start 1
check "when the plugin starts again, co resolves cc" wait_for 10 bash -c "[[ \$(docker -H $(docker_host 1) exec co nslookup cc 2>/dev/null | sed -n '/^Name:/,\$p' | awk '/^Address/ {print \$NF}') == $cc ]]"
hctl 1 service rm svc >/dev/null
container_del 1 cc open

say "options swarmnet does not take: refused with the reason, nothing left"
refused() {  # refused WHY NAME ARGS...
  local why="$1" name="$2" out; shift 2
  if out=$(dk 1 network create -d swarmnet --ipam-driver swarmnet "$@" "$name" 2>&1); then return 1; fi
  info "$out"
  # Listed by exact name: `network inspect b2` also finds any network whose
  # id starts with b2 (the check failed about once in seven runs that way).
  grep -qF -- "$why" <<<"$out" && ! grep -qx -- "$name" <<<"$(dk 1 network ls --format '{{.Name}}')"
}
nets_before=$(hctl 1 network ls --format json | jq -c '[.[].name] | sort')
check "-o com.docker.network.bridge.name" refused "-o com.docker.network.bridge.name is not supported by swarmnet" \
  b1 --subnet 10.89.0.0/24 -o com.docker.network.bridge.name=br-x
check "an MTU that is not a number" refused "not a number" b2 --subnet 10.89.0.0/24 -o com.docker.network.driver.mtu=big
check "an MTU out of range" refused "out of range" b3 --subnet 10.89.0.0/24 -o com.docker.network.driver.mtu=100
check "--ip-range outside --subnet (dockerd refuses it first)" refused "no matching subnet for range" b4 --subnet 10.89.0.0/24 --ip-range 10.88.0.0/28
hctl 1 network create made --subnet 10.88.0.0/24 --internal --mtu 1300 >/dev/null
nets_before=$(hctl 1 network ls --format json | jq -c '[.[].name] | sort')
check "another --gateway on a network swarmnetctl made" refused "has gateway 10.88.0.1: --gateway 10.88.0.9 cannot be used" \
  b5 --subnet 10.88.0.0/24 --gateway 10.88.0.9
check "that network without --internal" refused "swarmnet network made exists with gateway 10.88.0.1, mtu 1300, internal" \
  b6 --ipam-opt swarmnet.network=made
check "that network with another MTU" refused "mtu 1300, internal" b6 --ipam-opt swarmnet.network=made --internal \
  -o com.docker.network.driver.mtu=1400
check "that network as it is (the control)" dkq 1 network create -d swarmnet --ipam-driver swarmnet \
  --ipam-opt swarmnet.network=made --internal made
check "--ipv6" refused "IPv4 only" b7 --ipv6 --subnet 10.89.0.0/24
check "no swarmnet network was left by the refusals" test "$(hctl 1 network ls --format json | jq -c '[.[].name] | sort')" = "$nets_before"

say "docker rm -f, docker network rm: nothing left"
dk 1 rm -f ci ci2 co r1 r3 r4 d1 d2 >/dev/null
check "docker network rm" dkq 1 network rm inet open rng made
check "no swarmnet network left but the routing mesh's and the one swarmnetctl made" \
  test "$(hctl 1 network ls --format json | jq -c '[.[].name] | sort')" = '["ingress","made"]'
check "no veth left on the host" test "$(docker_links_left 1)" = 0

(($(failures) == 0)) || die "$(failures) check(s) failed"
pass "test_docker_options"
