# shellcheck shell=bash
# CNI helpers (source after common.sh).
#
#   cni_take_over                back up /etc/cni/net.d and /opt/cni/bin, restore them
#                                exactly on exit (also on failure); leaves net.d empty
#   cni_install_plugins          copy build/bin/swarmnet and swarmnet-ipam to /opt/cni/bin
#   cni_write_conflist FILE NAME SOCKET
#                                a conflist for network NAME into /etc/cni/net.d/FILE
#   cni_find_plugin TYPE         the binary for TYPE, searched the way ctr does
#   cni_conflist_del CONFLIST CONTAINERID NETNS IFNAME [HOSTNETNS]
#                                CNI DEL of a whole conflist as libcni does it (plugins in
#                                reverse order, cached result as prevResult, cache removed)
#
# ctr (containerd 1.6 on Debian) runs plugins with CNI_PATH=/opt/cni/bin:/usr/lib/cni
# and uses only the first config file (lexical order) of /etc/cni/net.d; its result
# cache is /var/lib/cni/results/NETWORK-CONTAINERID-IFNAME.

if [[ -n "${_SWARMNET_CNI_SH:-}" ]]; then return 0; fi
_SWARMNET_CNI_SH=1

CNI_CONF_DIR="${CNI_CONF_DIR:-/etc/cni/net.d}"
CNI_BIN_DIR="${CNI_BIN_DIR:-/opt/cni/bin}"
CNI_SEARCH_PATH="${CNI_SEARCH_PATH:-/opt/cni/bin:/usr/lib/cni}"
CNI_CACHE_DIR="${CNI_CACHE_DIR:-/var/lib/cni}"

_CNI_BACKUP=""

# _backup_dir DIR KEY: copy DIR (if any) to $_CNI_BACKUP/KEY, remember whether
# DIR and its parent existed, so the restore can undo even their creation.
_backup_dir() {
  local dir="$1" key="$2"
  local parent
  parent=$(dirname "$dir")
  if [[ -e "$parent" ]]; then echo 1 >"$_CNI_BACKUP/$key.parent"; else echo 0 >"$_CNI_BACKUP/$key.parent"; fi
  if [[ -d "$dir" ]]; then
    echo 1 >"$_CNI_BACKUP/$key.existed"
    cp -a "$dir" "$_CNI_BACKUP/$key"
  else
    echo 0 >"$_CNI_BACKUP/$key.existed"
  fi
}

_restore_dir() {
  local dir="$1" key="$2"
  local parent
  parent=$(dirname "$dir")
  rm -rf "$dir"
  if [[ "$(cat "$_CNI_BACKUP/$key.existed")" == 1 ]]; then
    mkdir -p "$parent"
    cp -a "$_CNI_BACKUP/$key" "$dir"
  elif [[ "$(cat "$_CNI_BACKUP/$key.parent")" == 0 ]]; then
    rmdir "$parent" 2>/dev/null || true
    rmdir "$(dirname "$parent")" 2>/dev/null || true
  fi
}

cni_take_over() {
  [[ -z "$_CNI_BACKUP" ]] || return 0
  _CNI_BACKUP=$(mktemp -d /tmp/swarmnet-cni-backup.XXXXXX)
  say "backing up $CNI_CONF_DIR and $CNI_BIN_DIR (restored on exit) to $_CNI_BACKUP"
  _backup_dir "$CNI_CONF_DIR" netd
  _backup_dir "$CNI_BIN_DIR" bin
  on_exit cni_restore
  mkdir -p "$CNI_CONF_DIR" "$CNI_BIN_DIR"
  # ctr uses only the first config file: ours must be the only one.
  find "$CNI_CONF_DIR" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
}

cni_restore() {
  [[ -n "$_CNI_BACKUP" ]] || return 0
  info "restoring $CNI_CONF_DIR and $CNI_BIN_DIR"
  _restore_dir "$CNI_CONF_DIR" netd
  _restore_dir "$CNI_BIN_DIR" bin
  rm -rf "$_CNI_BACKUP"
  _CNI_BACKUP=""
}

cni_install_plugins() {
  local p
  for p in swarmnet swarmnet-ipam; do
    local src
    src=$(need_bin "$p")
    install -m 0755 "$src" "$CNI_BIN_DIR/$p"
  done
  info "installed swarmnet and swarmnet-ipam into $CNI_BIN_DIR"
}

cni_write_conflist() {
  local file="$1" name="$2" socket="$3"
  cat >"$CNI_CONF_DIR/$file" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$name",
  "plugins": [
    { "type": "swarmnet", "daemonSocket": "$socket" }
  ]
}
EOF
  info "wrote $CNI_CONF_DIR/$file (network $name, daemon socket $socket)"
}

cni_find_plugin() {
  local type="$1" d
  local IFS=:
  for d in $CNI_SEARCH_PATH; do
    if [[ -x "$d/$type" ]]; then echo "$d/$type"; return 0; fi
  done
  return 1
}

cni_conflist_del() {
  local conflist="$1" cid="$2" netns="$3" ifname="$4" hostns="${5:-}"
  local name ver n i cache prev="null"
  name=$(jq -r .name "$conflist")
  ver=$(jq -r .cniVersion "$conflist")
  n=$(jq '.plugins | length' "$conflist")
  cache="$CNI_CACHE_DIR/results/$name-$cid-$ifname"
  if [[ -f "$cache" ]]; then prev=$(jq -c '.result // null' "$cache"); fi
  local rc=0
  for ((i = n - 1; i >= 0; i--)); do
    local conf type bin out
    conf=$(jq -c --argjson p "$prev" --arg v "$ver" --arg n "$name" \
      ".plugins[$i] + {cniVersion: \$v, name: \$n} + (if \$p == null then {} else {prevResult: \$p} end)" "$conflist")
    type=$(jq -r .type <<<"$conf")
    bin=$(cni_find_plugin "$type") || { warn "CNI plugin $type not found in $CNI_SEARCH_PATH"; rc=1; continue; }
    if ! out=$(_cni_in_netns "$hostns" timeout 60 env CNI_COMMAND=DEL CNI_CONTAINERID="$cid" CNI_NETNS="$netns" \
      CNI_IFNAME="$ifname" CNI_PATH="$CNI_SEARCH_PATH" "$bin" <<<"$conf"); then
      warn "CNI DEL by $type failed: $out"
      rc=1
    fi
  done
  ((rc == 0)) && rm -f "$cache"
  return "$rc"
}

_cni_in_netns() {
  local ns="$1"; shift
  if [[ -n "$ns" ]]; then ip netns exec "$ns" "$@"; else "$@"; fi
}
