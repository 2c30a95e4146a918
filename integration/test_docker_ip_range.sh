#!/usr/bin/env bash
# docker network create --ip-range on two hosts, with a real dockerd on each:
# every container gets an address inside the range, whichever host owns the
# range's address blocks first.
#
# The situation is made on purpose, both ways round: network `ra` is created
# through host 1's dockerd (so host 1 owns every address block of it) and a
# container on host 1 takes the range's first block; then host 2's
# containers need addresses of that range. Network `rb` the same with the
# hosts swapped. Checks: every address inside its range, none twice across
# the hosts, a container on one host pings one on the other, and once the
# containers are removed neither host lists their addresses any more (a
# container started afterwards gets one of the range again).
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_docker_ip_range.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/containerd.sh"
source "$HERE/lib/cluster.sh"
source "$HERE/lib/docker.sh"
require_root
watchdog 300
for b in swarmnet-docker swarmnetctl; do need_bin "$b" >/dev/null; done
for tool in dockerd jq; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done

CLUSTER_TAG="swdr$$"
containerd_ensure
cluster_up 2
docker_env_up 1
docker_env_up 2

run_c() { dk "$1" run -d --name "$2" --network "$3" "$DOCKER_TEST_IMAGE" sleep 100000 >/dev/null; }
# ADDRESS RANGE: whether the address lies inside the range (a.b.c.d/len).
in_range() {
  local ip="$1" net="${2%/*}" len="${2#*/}" a b c d x y z w
  IFS=. read -r a b c d <<<"$ip"
  IFS=. read -r x y z w <<<"$net"
  local ipn=$(((a << 24) | (b << 16) | (c << 8) | d)) netn=$(((x << 24) | (y << 16) | (z << 8) | w))
  local mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
  (((ipn & mask) == netn))
}
# The addresses host I's swarmnetd lists on swarmnet network NET (endpoints
# and the Docker plugin's reservations alike), sorted.
listed() { hctl "$1" endpoint ls "$2" --format json | jq -r '.[] | .address | split("/")[0]' | sort; }
lists() { listed "$1" "$2" | grep -qx "$3"; }
lists_none_of() {
  local i="$1" net="$2" a; shift 2
  for a in "$@"; do if lists "$i" "$net" "$a"; then return 1; fi; done
}

lists_all() {
  local i="$1" net="$2" a; shift 2
  for a in "$@"; do lists "$i" "$net" "$a" || return 1; done
}

declare -A ADDR=()
# run_on I NAME NET: a container; its address in ADDR[NAME], or a failure.
run_on() {
  if run_c "$1" "$2" "$3"; then
    ADDR[$2]=$(docker_ip "$1" "$2" "$3")
  else
    fail "host $1: docker run --network $3 $2"
  fi
}
# One network, created through host FIRST's dockerd (FIRST owns all its
# blocks), whose range's first block FIRST then claims with a container;
# SECOND's containers need addresses of that range.
scenario() {
  local net="$1" subnet="$2" range="$3" range_first="$4" first="$5" second="$6" i c name
  say "$net: --subnet $subnet --ip-range $range, created on host $first"
  for i in "$first" "$second"; do
    # Host $second's plugin must find host $first's network, not make one of
    # its own: one swarmnet network, made once, as an operator would.
    [[ "$i" == "$first" ]] || check "host $i knows $net" wait_for 10 hctl "$i" network inspect "$net"
    check "host $i: docker network create --ip-range $range $net" dkq "$i" network create -d swarmnet \
      --ipam-driver swarmnet --ipam-opt "swarmnet.network=$net" --subnet "$subnet" --ip-range "$range" "$net"
  done
  local id
  id=$(hctl "$first" network inspect "$net" | jq -r .id)
  check "one swarmnet network $net on both hosts, with the range" test \
    "$(hctl "$second" network inspect "$net" | jq -r '[.id, .ip_range] | join(" ")')" = "$id $range"
  run_on "$first" "$net-${first}a" "$net"
  check "host $first's first container took the range's first address ($range_first)" \
    test "${ADDR[$net-${first}a]:-}" = "$range_first"
  for c in a b c; do run_on "$second" "$net-$second$c" "$net"; done
  run_on "$first" "$net-${first}b" "$net"
  local all=()
  for name in "${!ADDR[@]}"; do
    [[ "$name" == "$net"-* ]] || continue
    info "$name ${ADDR[$name]}"
    check "$name's address ${ADDR[$name]} is inside $range" in_range "${ADDR[$name]}" "$range"
    all+=("${ADDR[$name]}")
  done
  check "$net: five containers, five addresses" test "${#all[@]}" = 5
  check "$net: no address twice across the hosts" test -z "$(printf '%s\n' "${all[@]}" | sort | uniq -d)"
}

dkq() { dk "$@" >/dev/null; }
scenario ra 10.97.0.0/24 10.97.0.64/27 10.97.0.64 1 2
scenario rb 10.98.0.0/24 10.98.0.128/27 10.98.0.128 2 1

say "the addresses work across hosts"
dping() { dk "$1" exec "$2" ping -c 2 -W 2 "$3" >/dev/null 2>&1; }
check "ra-2a (host 2) pings ra-1a (host 1, ${ADDR[ra-1a]:-})" wait_for 15 dping 2 ra-2a "${ADDR[ra-1a]:-none}"
check "rb-1a (host 1) pings rb-2a (host 2, ${ADDR[rb-2a]:-})" wait_for 15 dping 1 rb-1a "${ADDR[rb-2a]:-none}"

say "removed containers release their addresses"
gone=("${ADDR[ra-2a]:-}" "${ADDR[ra-2b]:-}" "${ADDR[ra-2c]:-}")
# The control: before the removal both hosts list them.
for i in 1 2; do check "host $i lists host 2's addresses on ra (${gone[*]})" wait_for 10 lists_all "$i" ra "${gone[@]}"; done
dk 2 rm -f ra-2a ra-2b ra-2c >/dev/null || true
for i in 1 2; do check "host $i lists none of them any more" wait_for 10 lists_none_of "$i" ra "${gone[@]}"; done
run_on 2 ra-2d ra
check "a container started on host 2 afterwards gets an address of the range (${ADDR[ra-2d]:-})" \
  in_range "${ADDR[ra-2d]:-0.0.0.0}" 10.97.0.64/27

(($(failures) == 0)) || die "$(failures) check(s) failed"
pass "test_docker_ip_range"
