#!/usr/bin/env bash
# Throughput of an encrypted network (IPsec ESP) against a hand-built ESP peer
# and a plain overlay: iperf3 inside a VM with Debian's kernel (this machine's
# kernel has no ESP), through integration/vm/run-in-vm.sh (qemu TCG: software
# emulation slows every figure; compare them with each other). The setup and
# the hand-built peer: integration/vm/esp_bench.sh. Prints one ESP-BENCH line:
# Mbit/s per path, the ratio encrypted / hand-built (goal >= 0.9) and the
# VM's load average, then this host's load average (the VM shares its CPUs).
# Root; build first (swarmnetd, swarmnetctl, swarmnet, frame_send).
# Env: VM_TIMEOUT (default 540), ROUNDS (3), DURATION (5 s per iperf3 run);
# medians over the rounds, whose order of the two ESP paths alternates.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib/common.sh"
vm_dir="$SWARMNET_BUILD_DIR/integration/vm"
for p in swarmnetd swarmnetctl swarmnet; do need_bin "$p" >/dev/null; done
[[ -x "$vm_dir/frame_send" ]] || die "$vm_dir/frame_send not built"
with=()
for f in "$SWARMNET_BIN_DIR"/{swarmnetd,swarmnetctl,swarmnet} "$vm_dir/frame_send" \
  "$SWARMNET_SOURCE_DIR"/integration/lib/{common,cluster}.sh "$SWARMNET_SOURCE_DIR/integration/vm/esp_bench.sh" \
  /usr/bin/bash /usr/bin/jq /usr/bin/ping /usr/bin/iperf3 "$(command -v tcpdump)" /usr/sbin/nft; do
  with+=(--with "$(readlink -f "$f")")
done
with+=(--with /bin/bash)
modules=()
for m in esp4 xfrm_user xfrm_algo gcm ghash_generic ctr seqiv echainiv drbg sha512_generic nft_limit nft_fib_inet; do modules+=(--module "$m"); done
console=$(mktemp)
on_exit "rm -f $console"
status=0
"$SWARMNET_SOURCE_DIR/integration/vm/run-in-vm.sh" --timeout "${VM_TIMEOUT:-540}" "${with[@]}" "${modules[@]}" \
  -- "$SWARMNET_SOURCE_DIR/integration/vm/encrypted_scenario.sh" \
  "$SWARMNET_SOURCE_DIR" "$SWARMNET_BIN_DIR" "$vm_dir" bench "${ROUNDS:-3}" "${DURATION:-5}" >"$console" 2>&1 || status=$?
grep -a -E "ESP-BENCH|PASS|FAIL|error|hand-built|per round" "$console" || true
if ! grep -q -a ESP-BENCH "$console"; then
  echo "esp_throughput: no figures (VM exit status $status); the VM's last lines:"
  tail -40 "$console"
  exit 1
fi
echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
