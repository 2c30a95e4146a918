# shellcheck shell=bash
# A private dockerd and swarmnet-docker for tests (source after common.sh,
# containerd.sh and, for several hosts, cluster.sh).
#
#   docker_env_up I                 on host I (cluster host namespace; "" = this
#                                   namespace with a swarmnetd given by
#                                   DOCKER_SWARMNETD_SOCK): swarmnet-docker and a
#                                   dockerd of our own (data root, exec root, API
#                                   socket and pidfile under a temp dir), the
#                                   busybox image imported; all stopped and removed
#                                   on exit
#   docker_env_down I               stop them, remove every file they made
#   dk I ARGS...                    the docker CLI against host I's dockerd
#   docker_host I                   "unix://..." of host I's dockerd (for DOCKER_HOST)
#   plugin_start I / plugin_stop I [SIGNAL]   (re)start or stop host I's swarmnet-docker
#   plugin_call I METHOD JSON       POST a raw plugin call (curl), prints the reply
#   docker_ip I CONTAINER NETWORK   the container's address on a Docker network
#   docker_rootfs_tar OUT           busybox-static's rootfs as a plain tar (docker import)
#   docker_links_left I             how many container veth ends (sw[vc]...) host I holds
#   published_rules I CHAIN         how many rules host I's chain `inet swarmnet CHAIN` holds
#
# Each dockerd runs in a mount namespace of its own where a per-host directory
# is bind-mounted over /run/docker/plugins: that is where dockerd looks for
# plugin sockets, so every simulated host finds its own swarmnet-docker and
# the machine's real /run/docker/plugins is never used. dockerd uses the
# machine's containerd (containerd_ensure) in a containerd namespace of its
# own; --bridge=none --iptables=false: no docker0, no iptables rules.
#
# Env: DOCKER_TEST_IMAGE (default swarmnet-bb:latest).

if [[ -n "${_SWARMNET_DOCKER_SH:-}" ]]; then return 0; fi
_SWARMNET_DOCKER_SH=1

DOCKER_TEST_IMAGE="${DOCKER_TEST_IMAGE:-swarmnet-bb:latest}"
_DOCKER_ROOT=""
_DOCKER_MADE_RUN_DIRS=()
declare -A _DOCKERD_PIDS=() _PLUGIN_PIDS=()

_docker_dir() { echo "$_DOCKER_ROOT/h${1:-0}"; }
docker_host() { echo "unix://$(_docker_dir "$1")/docker.sock"; }
dk() { local i="$1"; shift; timeout 120 docker -H "$(docker_host "$i")" "$@"; }
_dk_ns() { if [[ -n "$1" ]]; then host_ns "$1"; fi; }
_dk_sock() { if [[ -n "$1" ]]; then host_sock "$1"; else echo "$DOCKER_SWARMNETD_SOCK"; fi; }

docker_rootfs_tar() {
  local out="$1" work bb=/bin/busybox applet
  if [[ ! -x "$bb" ]] || ldd "$bb" >/dev/null 2>&1; then die "$bb must be busybox-static"; fi
  work=$(mktemp -d)
  mkdir -p "$work/bin" "$work/etc" "$work/proc" "$work/sys" "$work/dev" "$work/tmp" "$work/root"
  cp "$bb" "$work/bin/busybox"
  for applet in $("$bb" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$work/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$work/etc/passwd"
  echo 'root:x:0:' >"$work/etc/group"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out" .
  rm -rf "$work"
}

plugin_start() {
  local i="$1" dir ns
  dir=$(_docker_dir "$i"); ns=$(_dk_ns "$i")
  local cmd=("$(need_bin swarmnet-docker)" --socket "$dir/plugins/swarmnet.sock"
    --daemon-socket "$(_dk_sock "$i")" --state-dir "$dir/plugin-state" --log-level debug
    --docker-socket "$dir/docker.sock")
  if [[ -n "$ns" ]]; then cmd=(ip netns exec "$ns" "${cmd[@]}"); fi
  "${cmd[@]}" >>"$dir/plugin.log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  _PLUGIN_PIDS[${i:-0}]=$!
  wait_for 20 test -S "$dir/plugins/swarmnet.sock" ||
    { tail -20 "$dir/plugin.log" >&2; die "swarmnet-docker on host ${i:-0} did not start"; }
}

plugin_stop() {
  local i="${1:-0}" sig="${2:-TERM}" pid="${_PLUGIN_PIDS[${1:-0}]:-}"
  [[ -n "$pid" ]] || return 0
  if [[ "$sig" == KILL ]]; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  else
    kill_pid "$pid" "swarmnet-docker on host $i"
  fi
  unset "_PLUGIN_PIDS[$i]"
}

plugin_call() {
  local i="$1" method="$2" body="$3"
  curl -s --max-time 30 --unix-socket "$(_docker_dir "$i")/plugins/swarmnet.sock" \
    -H 'Content-Type: application/json' -d "$body" "http://plugin/$method"
}

_dockerd_answers() { timeout 5 docker -H "$(docker_host "$1")" version >/dev/null 2>&1; }

_docker_run_dir() {  # mkdir -p a machine-wide mount point, remembering what we made
  local d="$1" top=""
  while [[ ! -e "$d" ]]; do top="$d"; d=$(dirname "$d"); done
  if [[ -n "$top" ]]; then mkdir -p "$1"; _DOCKER_MADE_RUN_DIRS+=("$top"); fi
}

docker_env_up() {
  local i="$1" dir ns
  if [[ -z "$_DOCKER_ROOT" ]]; then
    _DOCKER_ROOT=$(mktemp -d /tmp/swarmnet-docker.XXXXXX)
    on_exit docker_env_down_all
    # The bind-mount target must exist; it stays empty in the machine's view.
    _docker_run_dir /run/docker/plugins
  fi
  dir=$(_docker_dir "$i"); ns=$(_dk_ns "$i")
  mkdir -p "$dir/plugins" "$dir/data" "$dir/exec"
  plugin_start "$i"
  say "starting dockerd for host ${i:-0} (files in $dir)"
  local cmd=(unshare -m --propagation private sh -c
    'mount --bind "$0" /run/docker/plugins && exec "$@"' "$dir/plugins"
    dockerd --data-root "$dir/data" --exec-root "$dir/exec" -H "$(docker_host "$i")"
    --pidfile "$dir/dockerd.pid" --containerd "$CONTAINERD_ADDRESS"
    --containerd-namespace "swn-dk-$$-${i:-0}" --containerd-plugins-namespace "swn-dkp-$$-${i:-0}"
    --bridge=none --iptables=false --ip-masq=false --ip-forward=false
    --storage-driver=vfs --log-level=info)
  # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup
  # mounts dockerd needs.
  if [[ -n "$ns" ]]; then cmd=(nsenter "--net=/var/run/netns/$ns" "${cmd[@]}"); fi
  "${cmd[@]}" >"$dir/dockerd.log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  _DOCKERD_PIDS[${i:-0}]=$!
  wait_for 60 _dockerd_answers "$i" || { tail -30 "$dir/dockerd.log" >&2; die "dockerd on host ${i:-0} did not answer"; }
  local tar
  tar=$(mktemp --suffix=.tar)
  docker_rootfs_tar "$tar"
  dk "$i" import "$tar" "$DOCKER_TEST_IMAGE" >/dev/null || { rm -f "$tar"; die "docker import failed"; }
  rm -f "$tar"
  info "dockerd up on host ${i:-0} (pid ${_DOCKERD_PIDS[${i:-0}]}), image $DOCKER_TEST_IMAGE imported"
}

docker_env_down() {
  local i="${1:-0}" dir pid
  dir=$(_docker_dir "$i")
  pid="${_DOCKERD_PIDS[$i]:-}"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    # Containers first, while the plugin still answers: their endpoints,
    # addresses and links go the normal way.
    local ids
    ids=$(dk "$i" ps -aq 2>/dev/null) || true
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || dk "$i" rm -f $ids >/dev/null 2>&1 || true
    local nets
    nets=$(dk "$i" network ls -q --filter driver=swarmnet 2>/dev/null) || true
    # shellcheck disable=SC2086
    [[ -z "$nets" ]] || dk "$i" network rm $nets >/dev/null 2>&1 || true
    kill_pid "$pid" "dockerd on host $i"
  fi
  unset "_DOCKERD_PIDS[$i]"
  plugin_stop "$i"
  # dockerd's containerd namespaces (empty once its containers are gone).
  ctr --address "$CONTAINERD_ADDRESS" namespaces rm "swn-dk-$$-$i" "swn-dkp-$$-$i" >/dev/null 2>&1 || true
  if [[ -d "$dir" && -z "${KEEP_LOGS:-}" ]]; then
    # vfs layers can hold read-only dirs and leftover mounts of a killed dockerd.
    grep -F " $dir/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$dir"
  fi
}

docker_env_down_all() {
  local i
  for i in "${!_DOCKERD_PIDS[@]}" "${!_PLUGIN_PIDS[@]}"; do
    if [[ "$i" == 0 ]]; then docker_env_down ""; else docker_env_down "$i"; fi
  done
  local d
  for d in "${_DOCKER_MADE_RUN_DIRS[@]}"; do rm -rf --one-file-system "$d" 2>/dev/null || true; done
  _DOCKER_MADE_RUN_DIRS=()
  if [[ -n "$_DOCKER_ROOT" && -z "${KEEP_LOGS:-}" ]]; then rm -rf "$_DOCKER_ROOT"; fi
  _DOCKER_ROOT=""
}

docker_ip() {
  local i="$1" c="$2" net="$3"
  dk "$i" inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$c"
}

_dk_in() {  # _dk_in I CMD...: CMD in host I's network namespace
  local ns; ns=$(_dk_ns "$1"); shift
  if [[ -n "$ns" ]]; then ip netns exec "$ns" "$@"; else "$@"; fi
}
docker_links_left() { _dk_in "$1" ip -o link show | grep -cE ': sw[vc][0-9a-f]' || true; }
published_rules() { _dk_in "$1" nft -j list chain inet swarmnet "$2" | jq '[.nftables[] | select(.rule)] | length'; }
