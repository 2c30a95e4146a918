#!/usr/bin/env bash
# The cluster's default address pools (swarm's --default-addr-pool and
# --default-addr-pool-mask-length), with real daemons on namespace hosts:
#   - init with two pools and a mask length: networks created without
#     --subnet on two hosts (and the routing mesh's ingress) come from them, in
#     order, at that length, distinct; `cluster status` shows the pools;
#   - a host that joins later, and again after its daemon restarts, creates
#     from the same pools;
#   - bad pools are refused with a clear error, and leave nothing behind
#     (the node stays out of any cluster, no ingress network is made);
#   - a pool wholly covered by a host route is refused; one partly covered is
#     accepted with a warning, and its subnets over a route are skipped.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_addr_pools.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
T0=$SECONDS
watchdog "${SWARMNET_IT_TIMEOUT:-150}"

# Two /26 in the first pool, four in the second.
CLUSTER_INIT_ARGS="--default-addr-pool 172.30.0.0/25 --default-addr-pool 192.168.77.0/24 --default-addr-pool-mask-length 26" \
  cluster_up 2
[[ -n "${KEEP_LOGS:-}" ]] && info "logs kept in $CLUSTER_DIR"

subnet_of() { hctl "$1" network inspect "$2" | jq -r .subnet; }
knows() { hctl "$1" network inspect "$2" >/dev/null 2>&1; }
pools_of() { hctl "$1" cluster status | jq -c '[.default_addr_pools.pools, .default_addr_pools.mask_length]'; }
want_pools='[["172.30.0.0/25","192.168.77.0/24"],26]'

say "networks without --subnet come from the pools, at the mask length"
check "the ingress network comes from the first pool" test "$(subnet_of 1 ingress)" == 172.30.0.0/26
check "host 1: cluster status shows the pools" test "$(pools_of 1)" == "$want_pools"
check "host 2: cluster status shows the pools" test "$(pools_of 2)" == "$want_pools"
hctl 1 network create n1 >/dev/null
check "n1 (host 1) is the first pool's next /26" test "$(subnet_of 1 n1)" == 172.30.0.64/26
check "host 2 learns of n1" wait_for 10 knows 2 n1
hctl 2 network create n2 >/dev/null
check "n2 (host 2) is the second pool's first /26: the first pool is full" test "$(subnet_of 2 n2)" == 192.168.77.0/26

say "a host that joins later creates from the same pools"
host_add 3
hctl 3 cluster join --token-file - --advertise-addr "$(host_ip 3)" <<<"$(hctl 1 cluster token)" >/dev/null
check "host 3: cluster status shows the pools right after the join" test "$(pools_of 3)" == "$want_pools"
check "host 3 learns of n2" wait_for 10 knows 3 n2
hctl 3 network create n3 >/dev/null
check "n3 (host 3) is 192.168.77.64/26" test "$(subnet_of 3 n3)" == 192.168.77.64/26
# Alone (hosts 1 and 2 stopped), so the pools can only come from its own
# state, not from a peer's push/pull.
host_daemon_stop 1
host_daemon_stop 2
host_daemon_stop 3
host_daemon_start 3
check "host 3 restarted alone: the pools are still there" test "$(pools_of 3)" == "$want_pools"
hctl 3 network create n4 >/dev/null
check "n4 (host 3, restarted) is 192.168.77.128/26" test "$(subnet_of 3 n4)" == 192.168.77.128/26
subnets=$(hctl 3 network ls --format json | jq -r '.[].subnet' | sort)
info "subnets known to host 3: $(tr '\n' ' ' <<<"$subnets")"
check "host 3 knows all five networks" test "$(wc -l <<<"$subnets")" == 5
check "every network's subnet is distinct" test "$(sort -u <<<"$subnets" | wc -l)" == "$(wc -l <<<"$subnets")"

say "bad pools are refused with a clear error, nothing half-done"
host_add 4
refused() {
  local what="$1" pattern="$2"; shift 2
  local out rc=0
  out=$(hctl 4 cluster init --advertise-addr "$(host_ip 4)" "$@" 2>&1) || rc=$?
  info "$what: exit $rc: $(head -c 300 <<<"$out")"
  check "$what: refused" test "$rc" -ne 0
  check "$what: the message says why (/$pattern/)" grep -qE -- "$pattern" <<<"$out"
  check "$what: host 4 is still out of any cluster" test "$(hctl 4 cluster status | jq -r .active)" == false
  check "$what: no ingress network was made" test "$(hctl 4 network ls --format json | jq length)" == 0
}
refused "a loopback pool" "127.0.0.0/8 \(loopback\)" --default-addr-pool 127.0.0.0/16
refused "a /0 pool" "every IPv4 address" --default-addr-pool 0.0.0.0/0
refused "host bits set" "did you mean 172.30.0.0/16" --default-addr-pool 172.30.0.1/16
refused "not an address" "invalid default address pool \"ten\"" --default-addr-pool ten
refused "a mask shorter than the pool" "cannot hold one /12 subnet" --default-addr-pool 172.30.0.0/16 \
  --default-addr-pool-mask-length 12
refused "a mask longer than /30" "/31 is too long" --default-addr-pool 172.30.0.0/16 --default-addr-pool-mask-length 31
refused "overlapping pools" "172.30.0.0/16 and 172.30.5.0/24 overlap" --default-addr-pool 172.30.0.0/16 \
  --default-addr-pool 172.30.5.0/24

say "pools against the host's routes"
# Host 4 reaches its underlay 172.31.250.0/24 on eth0; one more route, so
# that one lies at the start of the pool below.
ip -n "$(host_ns 4)" route add 172.31.248.0/24 via "$CLUSTER_UNDERLAY.1"
refused "a pool inside the underlay's route" "every /24 subnet of it overlaps a route of this host: 172.31.250.0/24 \(dev eth0\)" \
  --default-addr-pool 172.31.250.0/24
out=$(hctl 4 cluster init --advertise-addr "$(host_ip 4)" --default-addr-pool 172.31.248.0/22 2>&1 >/dev/null)
info "partly covered pool: $out"
check "a pool partly covered by routes is accepted" test "$(hctl 4 cluster status | jq -r .active)" == true
check "with a warning naming the routes" grep -qE \
  "warning: default address pool 172.31.248.0/22 overlaps a route of this host: 172.31.248.0/24 .*172.31.250.0/24 \(dev eth0\)" <<<"$out"
check "its ingress skips the route at the pool's start" test "$(subnet_of 4 ingress)" == 172.31.249.0/24
hctl 4 network create r1 >/dev/null
check "a network skips the underlay's route" test "$(subnet_of 4 r1)" == 172.31.251.0/24
out=$(hctl 4 network create r2 2>&1) || true
info "pool exhausted: $out"
check "then the pool is full: refused, saying so" grep -q "have no free /24 left" <<<"$out"
check "host 4 still reaches its underlay" ip netns exec "$(host_ns 4)" ping -q -c1 -W2 "$CLUSTER_UNDERLAY.11"

info "took $((SECONDS - T0)) s"
if (($(failures) > 0)); then echo "test_addr_pools: $(failures) check(s) failed"; exit 1; fi
echo "test_addr_pools: all checks passed"
