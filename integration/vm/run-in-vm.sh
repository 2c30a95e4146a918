#!/usr/bin/env bash
# Runs one program as root inside a throw-away VM: Debian's linux-image-amd64
# kernel under qemu (TCG: software emulation, so it works in CI without kvm)
# with a busybox initramfs built here, holding the program, the libraries
# `ldd` names for it, and the kernel modules it needs. For what this host's
# kernel lacks and cannot load (IPVS, ESP): the test runs against a real
# kernel that has them. No network leaves the VM (-nic none).
#
#   run-in-vm.sh [options] -- PROGRAM [ARGS...]
#     --module NAME    also load this kernel module (and what it depends on);
#                      repeatable. Defaults: IPVS (mh, rr), nftables with
#                      NAT/reject/ct/numgen/hash, bridge + br_netfilter, veth,
#                      vxlan.
#     --with FILE      also copy FILE (a program: its libraries too) to the
#                      same path in the VM; repeatable. /usr/sbin/ip always is.
#     --timeout S      give up after S seconds (default 540).
#     --memory MB      guest memory (default 1024).
#     --kernel VER     kernel version under /lib/modules (default: the newest
#                      that has /boot/vmlinuz-VER).
#     --keep DIR       build the initramfs in DIR and keep it (for debugging).
#
# The program's stdout/stderr appear on this script's stdout (serial
# console). Exit status: the program's own, or 124 on timeout, 125 when the
# VM could not be built or booted or ended without saying how the program
# ended.
set -euo pipefail

modules=(crc32c_generic veth bridge br_netfilter vxlan
         nf_conntrack nf_nat nf_tables nft_ct nft_nat nft_chain_nat nft_masq
         nft_reject nft_reject_inet nft_reject_ipv4 nft_numgen nft_hash nft_fib_ipv4
         ip_vs ip_vs_mh ip_vs_rr)
extra_files=(/usr/sbin/ip)
timeout_s=540
memory=1024
kver=""
keep=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --module) modules+=("$2"); shift 2 ;;
    --with) extra_files+=("$2"); shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --kernel) kver="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "run-in-vm: unknown option $1" >&2; exit 125 ;;
  esac
done
if [[ $# -lt 1 ]]; then
  echo "usage: run-in-vm.sh [options] -- PROGRAM [ARGS...]" >&2
  exit 125
fi
program="$(readlink -f "$1")"
shift
[[ -x "$program" ]] || { echo "run-in-vm: $program is not an executable" >&2; exit 125; }

if [[ -z "$kver" ]]; then
  for v in $(ls /lib/modules 2>/dev/null | sort -V -r); do
    if [[ -f "/boot/vmlinuz-$v" ]]; then kver="$v"; break; fi
  done
fi
kernel_image="/boot/vmlinuz-$kver"
moddir="/lib/modules/$kver"
for need in "$kernel_image" "$moddir/modules.dep" /bin/busybox; do
  [[ -e "$need" ]] || { echo "run-in-vm: missing $need (apt-get install linux-image-amd64 busybox-static)" >&2; exit 125; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run-in-vm: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 125; }
# busybox must be the static one: the initramfs has no libc of its own
# unless the program brings it.
if ldd /bin/busybox >/dev/null 2>&1; then
  echo "run-in-vm: /bin/busybox is dynamically linked; install busybox-static" >&2; exit 125
fi

if [[ -n "$keep" ]]; then
  work="$keep"; rm -rf "$work"; mkdir -p "$work"
else
  work="$(mktemp -d /tmp/swarmnet-vm.XXXXXX)"
  trap 'rm -rf "$work"' EXIT
fi
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,var,etc,test}
cp /bin/busybox "$root/bin/busybox"

# A file and, for an ELF with an interpreter, every library ldd names
# (libraries at their resolved paths, the loader at the path programs ask for).
copy_with_libs() {
  local file="$1" dest="$2"
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$file" "$root$dest"
  local lib
  while read -r lib; do
    [[ -z "$lib" ]] && continue
    if [[ ! -e "$root$lib" ]]; then
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    fi
  done < <(ldd "$file" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}')
}
copy_with_libs "$program" "/test/$(basename "$program")"
for f in "${extra_files[@]}"; do
  [[ -e "$f" ]] || { echo "run-in-vm: --with $f does not exist" >&2; exit 125; }
  copy_with_libs "$f" "$f"
done

# Modules: the closure of the wanted ones under modules.dep, in load order
# (dependencies first). The VM loads them with insmod, so nothing depends on
# busybox modprobe understanding kmod's files; modules.dep is copied anyway
# for the kernel's own request_module() calls (IPVS asks for schedulers).
declare -A dep_of=() seen=()
load_order=()
while IFS=: read -r mod deps; do
  dep_of["$mod"]="$deps"
done < "$moddir/modules.dep"
declare -A path_of=()
for mod in "${!dep_of[@]}"; do
  base="${mod##*/}"; base="${base%%.ko*}"
  path_of["${base//-/_}"]="$mod"
done
add_module() {
  local rel="$1"
  [[ -n "${seen[$rel]:-}" ]] && return
  seen["$rel"]=1
  # Each dependency's own dependencies first (a topological order).
  local dep
  for dep in ${dep_of[$rel]}; do add_module "$dep"; done
  load_order+=("$rel")
}
for name in "${modules[@]}"; do
  key="${name//-/_}"
  if [[ -z "${path_of[$key]:-}" ]]; then
    # Built into this kernel (modules.builtin) is fine; unknown is not.
    if grep -q "/${name}.ko" "$moddir/modules.builtin" 2>/dev/null; then continue; fi
    echo "run-in-vm: no module $name in $moddir" >&2; exit 125
  fi
  add_module "${path_of[$key]}"
done
mkdir -p "$root$moddir"
cp "$moddir"/modules.{dep,dep.bin,alias,alias.bin,builtin,builtin.bin,softdep,symbols,symbols.bin,order} "$root$moddir/" 2>/dev/null || true
: > "$root/etc/modules-load"
for rel in "${load_order[@]}"; do
  mkdir -p "$root$moddir/$(dirname "$rel")"
  cp "$moddir/$rel" "$root$moddir/$rel"
  echo "$moddir/$rel" >> "$root/etc/modules-load"
done

# The command line, one argument per line (arguments with spaces survive).
{
  printf '%s\n' "/test/$(basename "$program")"
  for a in "$@"; do printf '%s\n' "$a"; done
} > "$root/etc/test-command"

cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
/bin/busybox --install -s /sbin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
# `ip netns` wants /var/run/netns.
rm -rf /var/run && ln -s /run /var/run
echo /sbin/modprobe > /proc/sys/kernel/modprobe
# Programs that look users up (tcpdump -Z root) find root.
echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
echo 'root:x:0:' > /etc/group
ip link set lo up
failed=""
while read -r m; do
  insmod "$m" 2>/tmp/insmod.err || { grep -q "File exists" /tmp/insmod.err || { failed="$failed $m"; cat /tmp/insmod.err; }; }
done < /etc/modules-load
if [ -n "$failed" ]; then
  echo "run-in-vm: could not load:$failed"
fi
echo "SWARMNET-VM-BOOTED $(cut -d' ' -f1 /proc/uptime)"
set --
while IFS= read -r line; do set -- "$@" "$line"; done < /etc/test-command
cd /test
"$@"
rc=$?
echo "SWARMNET-VM-EXIT $rc $(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
INIT
chmod +x "$root/init"

( cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 ) > "$work/initramfs.gz"

log="$work/console.log"
status=0
timeout --foreground -k 5 "$timeout_s" \
  qemu-system-x86_64 -accel tcg -m "$memory" -smp 1 -nographic -no-reboot -nic none \
    -kernel "$kernel_image" -initrd "$work/initramfs.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic" </dev/null \
  | tee "$log" || status=$?
if [[ "${PIPESTATUS[0]:-$status}" == 124 ]] || [[ $status == 124 ]]; then
  echo "run-in-vm: timed out after ${timeout_s}s" >&2
  exit 124
fi
marker="$(grep -a -o 'SWARMNET-VM-EXIT [0-9]*' "$log" | tail -1 || true)"
if [[ -z "$marker" ]]; then
  echo "run-in-vm: the VM ended without the program's exit marker" >&2
  exit 125
fi
exit "${marker##* }"
