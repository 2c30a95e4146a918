#!/usr/bin/env bash
# lb_bench with its IPVS column: this machine's kernel has no IPVS and loads
# no modules, so the program runs inside a VM with Debian's kernel
# (integration/vm/run-in-vm.sh: qemu, software emulation) where it times,
# in one run, the nftables balancer, the IPVS balancer and the nft command
# on the same loads (1,000 and 10,000 services of 10 backends by default).
# Every figure is slowed alike by the emulation: compare them with each
# other, not with lb_bench's figures on the host.
#
#   bench/lb_bench_ipvs.sh [LB_BENCH_ARGS...]   e.g. --services 1000
# Env: SWARMNET_BIN_DIR (the built lb_bench), VM_MEMORY (MB, default 2048),
#      VM_TIMEOUT (seconds, default 1800). Needs root, qemu-system-x86,
#      linux-image-amd64, busybox-static, nftables.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench=$(need_bin lb_bench)
nft=$(command -v nft) || die "nft missing (apt-get install nftables)"

say "lb_bench --ipvs $* inside a VM (qemu TCG, ${VM_MEMORY:-2048} MB)"
start=$SECONDS
status=0
out=$("$SWARMNET_SOURCE_DIR/integration/vm/run-in-vm.sh" --memory "${VM_MEMORY:-2048}" \
  --timeout "${VM_TIMEOUT:-1800}" --with "$nft" -- "$bench" --ipvs "$@" 2>&1) || status=$?
# The program's lines, without the console's boot noise.
sed -n '/SWARMNET-VM-BOOTED/,/SWARMNET-VM-EXIT/p' <<<"$out" | grep -v 'SWARMNET-VM-\|^\[ *[0-9.]*\]' | tr -d '\r'
info "VM run: $((SECONDS - start)) s, exit status $status"
exit "$status"
