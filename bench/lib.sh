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
