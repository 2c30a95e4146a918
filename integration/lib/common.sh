# shellcheck shell=bash
# Shell helpers shared by scripts/ and integration/*.sh. Source it; it does not
# change the caller's shell options (callers use `set -euo pipefail`).
#
#   say TEXT...          narrate a step ("==> TEXT")
#   info TEXT...         a detail under a step
#   warn / die TEXT...   to stderr; die exits 1
#   pass / fail TEXT...  "PASS: TEXT" / "FAIL: TEXT" (fail counts, does not exit)
#   check TEXT CMD...    run CMD; pass or fail with TEXT
#   on_exit CMD...       push a cleanup command; all run in reverse order on any exit
#   wait_for SECS CMD... retry CMD every 0.1 s until it succeeds or SECS pass
#   require_root
#   watchdog SECS        SIGTERM this script after SECS (so its cleanups still run:
#                        ctest's own timeout kills with SIGKILL, which skips them)
#
# Cleanups run on EXIT (also after `set -e` failures) and on INT/TERM/HUP. Each
# one runs with errexit off, so one failing cleanup does not skip the others.

if [[ -n "${_SWARMNET_COMMON_SH:-}" ]]; then return 0; fi
_SWARMNET_COMMON_SH=1

# CI may come with a minimal PATH: ip, containerd and runc live in sbin dirs too.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

SWARMNET_SOURCE_DIR="${SWARMNET_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
SWARMNET_BUILD_DIR="${SWARMNET_BUILD_DIR:-$SWARMNET_SOURCE_DIR/build}"
SWARMNET_BIN_DIR="${SWARMNET_BIN_DIR:-$SWARMNET_BUILD_DIR/bin}"

_SWARMNET_FAILURES=0
_SWARMNET_CLEANUPS=()
# Cleanups belong to the shell that sourced this file. A background job
# (`prog &`) is a fork of it that keeps its traps until it execs PROG: a
# kill_pid landing in that window ran `exit 143` and then every cleanup in
# the child (the whole cluster torn down under the running script).
_SWARMNET_MAIN_PID=$BASHPID
# The script's own stdout/stderr: a signal can arrive while a command runs with
# its output sent to /dev/null, and the cleanups must still be heard.
# Programs started in the background must not keep them: close them there with
# `{_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&-` (a daemon holding a CI pipe open
# would keep the CI run from ending).
# Programs started in the background must not keep copies: close them there
# with `{_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&-` (a daemon holding a CI
# pipe open would keep the CI run from ending).
exec {_SWARMNET_STDOUT}>&1 {_SWARMNET_STDERR}>&2

say()  { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }
pass() { printf 'PASS: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; _SWARMNET_FAILURES=$((_SWARMNET_FAILURES + 1)); }
failures() { echo "$_SWARMNET_FAILURES"; }

check() {
  local what="$1"; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

require_root() {
  [[ "$(id -u)" == 0 ]] || die "this needs root (network namespaces, containerd, /etc/cni)"
}

on_exit() { _SWARMNET_CLEANUPS+=("$*"); }

_swarmnet_run_cleanups() {
  local rc=$?
  trap - EXIT
  if [[ "$BASHPID" != "$_SWARMNET_MAIN_PID" ]]; then exit "$rc"; fi
  set +e
  exec 1>&"$_SWARMNET_STDOUT" 2>&"$_SWARMNET_STDERR"
  local i
  for ((i = ${#_SWARMNET_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${_SWARMNET_CLEANUPS[i]}"
  done
  _SWARMNET_CLEANUPS=()
  exit "$rc"
}
trap _swarmnet_run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

wait_for() {
  local secs="$1"; shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# first_port_reaching WANT FIRST LAST ASK: the first source port of
# FIRST..LAST whose `ASK PORT` prints WANT (a UDP flow pinned to one task by
# its conntrack entry); fails if none does.
first_port_reaching() {
  local want="$1" first="$2" last="$3" ask="$4" port
  for ((port = first; port <= last; port++)); do
    if [[ "$("$ask" "$port")" == "$want" ]]; then echo "$port"; return 0; fi
  done
  return 1
}

# kill_pid PID [NAME]: TERM, wait up to 10 s, then KILL. Only ever the pid we
# were given (a process we started), never by name.
kill_pid() {
  local pid="$1" name="${2:-process}"
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  info "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# need_bin NAME: path of a built program, or die saying how to build it.
need_bin() {
  local p="$SWARMNET_BIN_DIR/$1"
  [[ -x "$p" ]] || die "$p not found: build first (scripts/build)"
  echo "$p"
}

# watchdog SECS: after SECS, SIGTERM this shell, whose trap then runs every
# cleanup. Bash handles the signal once the current foreground command ends, so
# the helpers bound every command that could hang with `timeout`.
watchdog() {
  local secs="$1" me=$$
  (
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$secs" &
    s=$!
    wait "$s"
    echo "watchdog: still running after $secs s: stopping (cleanups run)" >&2
    kill -TERM "$me"
  ) &
  _SWARMNET_WATCHDOG=$!
  on_exit 'kill -TERM "$_SWARMNET_WATCHDOG" 2>/dev/null; wait "$_SWARMNET_WATCHDOG" 2>/dev/null || true'
}
