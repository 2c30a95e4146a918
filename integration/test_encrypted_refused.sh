#!/usr/bin/env bash
# Encrypted networks on a kernel without ESP (this machine: XFRM, no esp4):
#   - `network create --encrypted` is refused, naming what is missing, and
#     leaves nothing behind (no network listed); control: the same network
#     without --encrypted is created;
#   - `node ls` shows that the node cannot carry encrypted networks, and why;
#   - the daemon's firewall holds the encrypted-* chains, empty while no
#     network is encrypted (their rules: integration/test_encrypted_firewall).
# The rest (SAs, ESP on the wire, rotation) needs a kernel with ESP:
# integration/test_encrypted_vm.sh.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_encrypted_refused.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
watchdog "${SWARMNET_IT_TIMEOUT:-90}"

cluster_up 1

say "network create --encrypted on a kernel without ESP"
status=0
out=$(hctl 1 network create secret --encrypted --subnet 10.63.0.0/24 2>&1) || status=$?
info "swarmnetctl: $out"
check "refused (exit status $status)" test "$status" -ne 0
names_esp() { grep -q 'no ESP' <<<"$1" && grep -q 'esp4' <<<"$1"; }
check "the error names what is missing (ESP, esp4)" names_esp "$out"
listed() { hctl 1 network ls --format json | jq -e --arg n "$1" '.[] | select(.name == $n)' >/dev/null; }
not_listed() { ! listed "$1"; }
check "nothing left behind: no network \"secret\"" not_listed secret
check "control: the same network without --encrypted is created" \
  hctl 1 network create secret --subnet 10.63.0.0/24
check "and shows encrypted: false" test "$(hctl 1 network inspect secret | jq .encrypted)" == false
check "the daemon logged why encrypted networks are unavailable" \
  grep -q "encrypted networks unavailable on this node: .*no ESP" "$CLUSTER_DIR/h1/swarmnetd.log"
# node ls says so, from the node's record (the VM test shows "yes" where
# the kernel has ESP).
node_esp_is() { [[ "$(hctl 1 node ls --format json | jq -r '.[] | select(.self) | .encryption')" == "$1" ]]; }
check "node ls says this node cannot carry encrypted networks" wait_for 10 node_esp_is no
table_names_esp() { local t; t=$(hctl 1 node ls) && grep -q "no (.*no ESP.*esp4" <<<"$t"; }
check "and its table shows why" table_names_esp
empty_chain() {
  local text
  text=$(ip netns exec "$(host_ns 1)" nft list chain inet swarmnet "$1") || return 1
  ! grep -q 'udp dport' <<<"$text"
}
check "its firewall has the encrypted-input chain, with no rule while nothing is encrypted" empty_chain encrypted-input

if (($(failures) > 0)); then
  echo "test_encrypted_refused: $(failures) check(s) FAILED"
  exit 1
fi
echo "test_encrypted_refused: all checks passed"
