#!/usr/bin/env bash
# Cluster init/join/leave misuse: each is refused with a clear message from
# swarmnetctl, a non-zero exit, and nothing changed (the node stays out of, or
# in, its cluster; the cluster's node list is untouched).
#   - join with a malformed token (garbage, truncated, bad key, bad port)
#   - the token from a file, the environment, --token (warns), none, both
#   - join through a seed nobody answers on (fails within its timeout)
#   - join when already in a cluster; init when already in a cluster
#   - leave when not in a cluster
# Host 1 inits a cluster; hosts 2 and 3 run a daemon outside it.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_cluster_join_errors.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
T0=$SECONDS
watchdog "${SWARMNET_IT_TIMEOUT:-170}"

cluster_up 1
host_add 2
host_add 3
[[ -n "${KEEP_LOGS:-}" ]] && info "logs kept in $CLUSTER_DIR"
token=$(hctl 1 cluster token)
key=${token#SWMTKN-1-}; key=${key%-*}
seed=${token##*-}

active() { hctl "$1" cluster status | jq -r .active; }
nodes() { hctl 1 node ls --format json | jq -r '[.[].name] | sort | join(",")'; }

# refused WHAT PATTERN HOST ARGS...: swarmnetctl against HOST fails (exit
# non-zero, within 40 s) with a message matching PATTERN (extended regexp, case-insensitive).
refused() {
  local what="$1" pattern="$2" i="$3"; shift 3
  local out rc=0 t=$SECONDS
  out=$(timeout 60 "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$(host_sock "$i")" "$@" 2>&1) || rc=$?
  info "$what: exit $rc after $((SECONDS - t)) s: $(head -c 300 <<<"$out")"
  check "$what: refused (exit non-zero)" test "$rc" -ne 0 -a "$rc" -ne 124
  check "$what: within 40 s" test $((SECONDS - t)) -le 40
  check "$what: the message says why (/$pattern/)" grep -qiE -- "$pattern" <<<"$out"
}
unchanged() {
  local what="$1"
  check "$what: host 2 still not in a cluster" test "$(active 2)" == false
  check "$what: host 1 still lists only host1" test "$(nodes)" == host1
}

say "malformed tokens"
refused "garbage token" "invalid join token" 2 cluster join --token garbage --advertise-addr "$(host_ip 2)"
unchanged "garbage token"
refused "truncated token" "invalid join token" 2 cluster join --token "${token:0:30}" --advertise-addr "$(host_ip 2)"
unchanged "truncated token"
refused "token without a seed address" "invalid join token" 2 cluster join --token "SWMTKN-1-$key" --advertise-addr "$(host_ip 2)"
unchanged "token without a seed"
refused "token with a 16-byte key" "invalid join token|key" 2 cluster join \
  --token "SWMTKN-1-$(head -c16 /dev/urandom | base64)-$seed" --advertise-addr "$(host_ip 2)"
unchanged "16-byte key"
refused "token with a key that is not base64" "invalid join token|key|base64" 2 cluster join \
  --token "SWMTKN-1-!!!!notbase64!!!!-$seed" --advertise-addr "$(host_ip 2)"
unchanged "non-base64 key"
refused "token with port 99999" "invalid join token|port" 2 cluster join --token "SWMTKN-1-$key-${seed%:*}:99999" \
  --advertise-addr "$(host_ip 2)"
unchanged "port 99999"
refused "token with a bad seed address" "invalid join token|address" 2 cluster join --token "SWMTKN-1-$key-300.1.2.3:7946" \
  --advertise-addr "$(host_ip 2)"
unchanged "bad seed address"
refused "bad --advertise-addr" "invalid|address" 2 cluster join --token "$token" --advertise-addr not-an-ip
unchanged "bad --advertise-addr"

say "a seed nobody answers on"
# An address on our underlay that no namespace holds (no ARP reply: the
# connection attempt times out), and host 3's address on a port nobody
# listens on (refused at once).
refused "join through a silent seed ($CLUSTER_UNDERLAY.99)" "could not join|no answer|timed out|unreachable" 2 \
  cluster join --token "SWMTKN-1-$key-$CLUSTER_UNDERLAY.99:7946" --advertise-addr "$(host_ip 2)"
unchanged "silent seed"
refused "join through a closed port ($(host_ip 3):7999)" "could not join|no answer|refused|unreachable" 2 \
  cluster join --token "SWMTKN-1-$key-$(host_ip 3):7999" --advertise-addr "$(host_ip 2)"
unchanged "closed port"

say "where the join token comes from"
# The key must not be in the process list: a file, standard input or the
# environment; --token still works, with a warning.
refused "--token (a garbage one): warns" "process list.*--token-file" 2 cluster join --token garbage \
  --advertise-addr "$(host_ip 2)"
refused "no token" "token is needed.*--token-file.*SWARMNET_JOIN_TOKEN" 2 cluster join --advertise-addr "$(host_ip 2)"
refused "--token and --token-file" "not both" 2 cluster join --token "$token" --token-file - \
  --advertise-addr "$(host_ip 2)" </dev/null
refused "a token file that is not there" "cannot read the join token" 2 cluster join \
  --token-file "$CLUSTER_DIR/no-such-file" --advertise-addr "$(host_ip 2)"
echo garbage >"$CLUSTER_DIR/bad.token"
refused "a garbage token from a file" "invalid join token" 2 cluster join --token-file "$CLUSTER_DIR/bad.token" \
  --advertise-addr "$(host_ip 2)"
export SWARMNET_JOIN_TOKEN=garbage
refused "a garbage token from SWARMNET_JOIN_TOKEN" "invalid join token" 2 cluster join --advertise-addr "$(host_ip 2)"
unset SWARMNET_JOIN_TOKEN
unchanged "token sources"

say "a correct join still works after the failures"
(umask 077 && printf '%s\n' "$token" >"$CLUSTER_DIR/join.token")
out=$(hctl 2 cluster join --token-file "$CLUSTER_DIR/join.token" --advertise-addr "$(host_ip 2)" 2>&1) || true
info "join with the token from a file: $out"
check "host 2 joins (token from a file)" test "$(active 2)" == true
check "without a warning" test "$out" == joined
check "host 1 lists host1 and host2 alive" wait_for 10 alive_is 1 2

say "joining twice, init when in a cluster"
refused "second join on host 2" "already in a cluster" 2 cluster join --token "$token" --advertise-addr "$(host_ip 2)"
refused "init on host 2 (already joined)" "already in a cluster" 2 cluster init --advertise-addr "$(host_ip 2)"
refused "init on host 1 (already initialised)" "already in a cluster" 1 cluster init --advertise-addr "$(host_ip 1)"
check "host 2 still in the cluster" test "$(active 2)" == true
check "host 1 still lists host1,host2" test "$(nodes)" == host1,host2
check "the join token is unchanged" test "$(hctl 1 cluster token)" == "$token"
sleep 2
check "both still alive on host 1" test "$(alive_count 1)" == 2
check "both still alive on host 2" test "$(alive_count 2)" == 2

say "leave when not in a cluster"
refused "leave on host 3 (never joined)" "not in a cluster" 3 cluster leave
check "host 3 still not in a cluster" test "$(active 3)" == false
refused "rotate-key on host 3 (not in a cluster)" "not in a cluster" 3 cluster rotate-key
refused "token on host 3 (not in a cluster)" "not in a cluster" 3 cluster token
check "host 3's node ls fails or is empty" bash -c "out=\$($SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 3) node ls --format json 2>/dev/null) || exit 0; [[ \$(jq length <<<\"\$out\") -le 1 ]]"
check "host 1 still lists host1,host2" test "$(nodes)" == host1,host2

say "leave, then leave again"
check "host 2 leaves" hctl 2 cluster leave
refused "second leave on host 2" "not in a cluster" 2 cluster leave
check "host 1 sees host2 as left" wait_for 10 bash -c "[[ \$($SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) node ls --format json | jq -r '.[] | select(.name == \"host2\") | .status') == left ]]"

info "took $((SECONDS - T0)) s"
if (($(failures) > 0)); then echo "test_cluster_join_errors: $(failures) check(s) failed"; exit 1; fi
echo "test_cluster_join_errors: all checks passed"
