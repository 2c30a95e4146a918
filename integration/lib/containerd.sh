# shellcheck shell=bash
# containerd + ctr helpers (source after common.sh).
#
#   containerd_ensure               start containerd unless one answers; stop it on exit
#                                   only if we started it (by pid)
#   busybox_image_ensure            build the busybox OCI image offline and import it
#                                   (skipped when `ctr image ls` already has it)
#   ctr_run_detached ID [NETNS]     `ctr run --cni -d IMAGE ID sleep` (inside host netns NETNS
#                                   when given: the CNI plugins then run there)
#   ctr_run_foreground ID [NETNS]   `ctr run --rm --cni IMAGE ID sleep` in the background: ctr
#                                   itself calls CNI DEL when the task ends (ctr 1.6 does that
#                                   only when not detached)
#   ctr_exec ID CMD...              run CMD in the container (`ctr task exec`)
#   ctr_remove ID                   task kill, wait, task delete, container delete, snapshot rm
#   ctr_cni_id ID                   the CNI_CONTAINERID ctr uses: NAMESPACE-ID
#
# Facts (containerd 1.6.20, Debian 12): `ctr run --cni` reads the first config in
# /etc/cni/net.d and searches plugins in CNI_PATH=/opt/cni/bin:/usr/lib/cni (in
# that order); CNI_NETNS is /proc/PID/ns/net of the task; CNI_CONTAINERID is
# "NAMESPACE-ID". With -d, ctr never calls CNI DEL (not even on task or container
# delete); without -d, it calls DEL with an empty CNI_NETNS after the task exits.

if [[ -n "${_SWARMNET_CONTAINERD_SH:-}" ]]; then return 0; fi
_SWARMNET_CONTAINERD_SH=1

CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}"
SWARMNET_CTR_NAMESPACE="${SWARMNET_CTR_NAMESPACE:-swarmnet}"
SWARMNET_IMAGE="${SWARMNET_IMAGE:-localhost/swarmnet/busybox:latest}"
SWARMNET_RUN_DIR="${SWARMNET_RUN_DIR:-/tmp/swarmnet-run}"

_CONTAINERD_PID=""
_CONTAINERD_MADE_ETC_CNI=0
declare -A _CTR_FG_PIDS=()

# Every ctr call is bounded: a hung one would keep a test (and its cleanup) forever.
CTR_TIMEOUT="${CTR_TIMEOUT:-60}"
ctr_() { timeout "$CTR_TIMEOUT" ctr --address "$CONTAINERD_ADDRESS" --namespace "$SWARMNET_CTR_NAMESPACE" "$@"; }

# ctr_has container|task|image NAME. The list is read whole before matching:
# `ctr ... | grep -q` under pipefail fails at random (SIGPIPE to ctr).
ctr_has() {
  local out
  out=$(ctr_ "$1" ls -q 2>/dev/null) || return 1
  grep -qxF -- "$2" <<<"$out"
}
ctr_cni_id() { echo "$SWARMNET_CTR_NAMESPACE-$1"; }

containerd_answers() { timeout 5 ctr --address "$CONTAINERD_ADDRESS" --connect-timeout 1s --timeout 3s version >/dev/null 2>&1; }

containerd_ensure() {
  command -v containerd >/dev/null || die "containerd is not installed (scripts/install-deps)"
  if containerd_answers; then
    info "containerd already answers on $CONTAINERD_ADDRESS: using it"
    return 0
  fi
  mkdir -p "$SWARMNET_RUN_DIR"
  # containerd's CRI plugin creates /etc/cni/net.d to watch it: undo that too.
  [[ -e /etc/cni ]] && _CONTAINERD_MADE_ETC_CNI=0 || _CONTAINERD_MADE_ETC_CNI=1
  local log="$SWARMNET_RUN_DIR/containerd.log"
  say "starting containerd (log: $log)"
  containerd --address "$CONTAINERD_ADDRESS" >"$log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  _CONTAINERD_PID=$!
  on_exit containerd_stop
  if ! wait_for 30 containerd_answers; then
    tail -n 30 "$log" >&2 || true
    die "containerd did not answer within 30 s"
  fi
  info "containerd is up (pid $_CONTAINERD_PID)"
}

containerd_stop() {
  [[ -n "$_CONTAINERD_PID" ]] || return 0
  kill_pid "$_CONTAINERD_PID" containerd
  _CONTAINERD_PID=""
  if [[ "$_CONTAINERD_MADE_ETC_CNI" == 1 ]]; then
    rmdir /etc/cni/net.d /etc/cni 2>/dev/null || true
  fi
}

# Writes a deterministic OCI layout tarball of busybox-static to $1.
busybox_oci_tar() {
  local out="$1" work
  local bb=/bin/busybox
  [[ -x "$bb" ]] || die "/bin/busybox missing (apt-get install busybox-static)"
  [[ "$("$bb" 2>&1 || true)" == *multi-call* ]] || die "$bb is not busybox"
  # Must be the static one: the image has no libc.
  if ldd "$bb" >/dev/null 2>&1; then die "$bb is dynamically linked: install busybox-static"; fi
  work=$(mktemp -d)
  mkdir -p "$work/rootfs/bin" "$work/oci/blobs/sha256"
  (cd "$work/rootfs" && mkdir -p etc proc sys dev tmp run root && chmod 1777 tmp)
  cp "$bb" "$work/rootfs/bin/busybox"
  local applet
  for applet in $("$bb" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$work/rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
  echo 'root:x:0:' >"$work/rootfs/etc/group"
  local tarflags=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner)
  tar "${tarflags[@]}" -C "$work/rootfs" -cf "$work/layer.tar" .
  _blob() { # file -> "digest size", copied into blobs/
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
    cp "$1" "$work/oci/blobs/sha256/$d"
    echo "$d $s"
  }
  local ld ls cd cs md ms
  read -r ld ls < <(_blob "$work/layer.tar")
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$ld" >"$work/config.json"
  read -r cd cs < <(_blob "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cd" "$cs" "$ld" "$ls" >"$work/manifest.json"
  read -r md ms < <(_blob "$work/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$md" "$ms" "$SWARMNET_IMAGE" "${SWARMNET_IMAGE##*:}" >"$work/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  tar "${tarflags[@]}" -C "$work/oci" -cf "$out" .
  rm -rf "$work"
}

busybox_image_ensure() {
  if ctr_has image "$SWARMNET_IMAGE"; then
    info "image $SWARMNET_IMAGE already imported (ctr namespace $SWARMNET_CTR_NAMESPACE)"
    return 0
  fi
  say "building a busybox image offline (busybox-static as an OCI layout) and importing it as $SWARMNET_IMAGE"
  local tarball
  tarball=$(mktemp --suffix=.oci.tar)
  busybox_oci_tar "$tarball"
  if ! ctr_ image import "$tarball" >/dev/null; then
    rm -f "$tarball"
    die "ctr image import failed"
  fi
  rm -f "$tarball"
  ctr_has image "$SWARMNET_IMAGE" || die "image $SWARMNET_IMAGE not listed after import"
  info "imported $SWARMNET_IMAGE"
}

# _in_netns NETNS CMD...: run CMD in host network namespace NETNS ("" = here).
_in_netns() {
  local ns="$1"; shift
  if [[ -n "$ns" ]]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

ctr_task_running() { ctr_ task ls 2>/dev/null | awk -v id="$1" '$1 == id && $3 == "RUNNING" {found=1} END {exit !found}'; }

ctr_run_detached() {
  local id="$1" ns="${2:-}"
  info "ctr run --cni -d $SWARMNET_IMAGE $id${ns:+ (CNI plugins run in host netns $ns)}"
  _in_netns "$ns" timeout "$CTR_TIMEOUT" ctr --address "$CONTAINERD_ADDRESS" --namespace "$SWARMNET_CTR_NAMESPACE" \
    run --cni -d "$SWARMNET_IMAGE" "$id" sleep 100000 </dev/null
}

ctr_run_foreground() {
  local id="$1" ns="${2:-}" log
  mkdir -p "$SWARMNET_RUN_DIR"
  log="$SWARMNET_RUN_DIR/ctr-$id.log"
  info "ctr run --rm --cni $SWARMNET_IMAGE $id (in the background; ctr tears the network down when it ends)${ns:+ (host netns $ns)}"
  _in_netns "$ns" ctr --address "$CONTAINERD_ADDRESS" --namespace "$SWARMNET_CTR_NAMESPACE" \
    run --rm --cni "$SWARMNET_IMAGE" "$id" sleep 100000 </dev/null >"$log" 2>&1 {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  _CTR_FG_PIDS[$id]=$!
  if ! wait_for 30 ctr_task_running "$id"; then
    cat "$log" >&2 || true
    return 1
  fi
}

ctr_exec() {
  local id="$1"; shift
  ctr_ task exec --exec-id "x$RANDOM$RANDOM" "$id" "$@" </dev/null
}

ctr_task_pid() { ctr_ task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }

# Remove container ID, whatever state it is in. Idempotent.
ctr_remove() {
  local id="$1" fgpid="${_CTR_FG_PIDS[$1]:-}"
  if ctr_has task "$id"; then
    ctr_ task kill -s KILL "$id" >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 100; i++)); do
      ctr_ task ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 != "STOPPED" {r=1} END {exit !r}' || break
      sleep 0.1
    done
  fi
  if [[ -n "$fgpid" ]]; then
    # A foreground `ctr run --rm` notices the exit, calls CNI DEL and deletes
    # the task and the container itself: give it the time to.
    local i
    for ((i = 0; i < 150; i++)); do kill -0 "$fgpid" 2>/dev/null || break; sleep 0.1; done
    kill_pid "$fgpid" "ctr run $id"
    unset "_CTR_FG_PIDS[$id]"
  fi
  # Retry: on a loaded machine the shim may still be reaping the task.
  local err="" i
  for ((i = 0; i < 50; i++)); do
    ctr_has container "$id" || break
    if ctr_has task "$id"; then
      ctr_ task kill -s KILL "$id" >/dev/null 2>&1 || true
      err=$(ctr_ task delete --force "$id" 2>&1 >/dev/null) || true
    fi
    err=$(ctr_ container delete "$id" 2>&1 >/dev/null) && break
    sleep 0.2
  done
  ctr_ snapshot rm "$id" >/dev/null 2>&1 || true
  if ctr_has container "$id"; then
    warn "container $id could not be removed: $err"
    return 1
  fi
}
