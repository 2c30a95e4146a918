# shellcheck shell=bash
# The opening every bench script shares. Source it right after
# `set -euo pipefail`:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# With -h or --help as the script's first argument it prints the script's
# header comment (line 2 up to `set -euo`) and exits. Otherwise it loads
# integration/lib/common.sh and cluster.sh and requires root.
#
#   bench_needs TOOL...   die unless every TOOL is on PATH
#   bench_needs_cluster   die unless swarmnetd, swarmnetctl and swarmnet are built
#   bench_rss_kib PID     a process's resident memory in KiB (VmRSS)
#   bench_make_named_endpoints SOCK DIR FROM TO
#                         endpoints nFROM..nTO (containers bench-FROM..bench-TO,
#                         attach=false) with a name each on network "bench",
#                         through the API at SOCK, from one curl (its config
#                         file, one request per endpoint, goes in DIR)

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
_BENCH_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$_BENCH_HERE/../integration/lib/common.sh"
source "$_BENCH_HERE/../integration/lib/cluster.sh"
require_root

bench_needs() {
  local tool
  for tool in "$@"; do command -v "$tool" >/dev/null || die "$tool is needed (scripts/install-deps)"; done
}

bench_needs_cluster() {
  need_bin swarmnetd >/dev/null
  need_bin swarmnetctl >/dev/null
  need_bin swarmnet >/dev/null
}

bench_rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

bench_make_named_endpoints() {
  local sock="$1" dir="$2" from="$3" to="$4" i config="$2/endpoints.curl"
  for ((i = from; i <= to; i++)); do
    printf 'url = "http://swarmnetd/v1/networks/bench/endpoints"\nunix-socket = "%s"\nrequest = "POST"\n' "$sock"
    printf 'header = "Content-Type: application/json"\noutput = "/dev/null"\nsilent\nfail\n'
    printf 'data = "{\\"container_id\\":\\"bench-%d\\",\\"ifname\\":\\"eth0\\",\\"attach\\":false,\\"name\\":\\"n%d\\"}"\n' "$i" "$i"
    ((i == to)) || echo next
  done >"$config"
  curl -K "$config" || die "creating endpoints n$from..n$to"
}
