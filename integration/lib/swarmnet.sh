# shellcheck shell=bash
# swarmnetd / swarmnetctl helpers (source after common.sh).
#
#   swarmnetd_start STATE_DIR SOCKET [NETNS]   start a swarmnetd (inside host netns NETNS when
#                                              given), wait until its API answers, stop it by
#                                              pid on exit; SWARMNETD_ARGS: extra flags
#   swarmnetd_stop
#   snctl SOCKET ARGS...                        swarmnetctl --socket SOCKET ARGS...
#   sn_network_field SOCKET NET JQFILTER        a field of `network inspect NET`
#   sn_endpoint_count SOCKET NET                endpoints of NET on this host

if [[ -n "${_SWARMNET_SWARMNET_SH:-}" ]]; then return 0; fi
_SWARMNET_SWARMNET_SH=1

_SWARMNETD_PID=""
SWARMNETD_LOG=""

snctl() {
  local sock="$1"; shift
  timeout 30 "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$sock" "$@"
}

swarmnetd_answers() { snctl "$1" network ls >/dev/null 2>&1; }

swarmnetd_start() {
  local state="$1" sock="$2" ns="${3:-}" bin
  bin=$(need_bin swarmnetd)
  need_bin swarmnetctl >/dev/null
  mkdir -p "$SWARMNET_RUN_DIR"
  SWARMNETD_LOG="$SWARMNET_RUN_DIR/swarmnetd.$$.log"
  say "starting swarmnetd (state $state, API $sock${ns:+, host netns $ns}, log $SWARMNETD_LOG)"
  local cmd=("$bin" --state-dir "$state" --api-socket "$sock" --log-level "${SWARMNETD_LOG_LEVEL:-debug}")
  # shellcheck disable=SC2206
  cmd+=(${SWARMNETD_ARGS:-})
  if [[ -n "$ns" ]]; then cmd=(ip netns exec "$ns" "${cmd[@]}"); fi
  "${cmd[@]}" >"$SWARMNETD_LOG" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  _SWARMNETD_PID=$!
  on_exit swarmnetd_stop
  if ! wait_for 20 swarmnetd_answers "$sock"; then
    tail -n 40 "$SWARMNETD_LOG" >&2 || true
    die "swarmnetd did not answer on $sock within 20 s"
  fi
  info "swarmnetd is up (pid $_SWARMNETD_PID)"
}

swarmnetd_stop() {
  [[ -n "$_SWARMNETD_PID" ]] || return 0
  kill_pid "$_SWARMNETD_PID" swarmnetd
  _SWARMNETD_PID=""
}

sn_network_field() {
  local sock="$1" net="$2" filter="$3"
  snctl "$sock" network inspect "$net" | jq -r "$filter"
}

sn_endpoint_count() { sn_network_field "$1" "$2" '.endpoints'; }
