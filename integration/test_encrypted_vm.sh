#!/usr/bin/env bash
# Encrypted overlay networks against a real kernel with ESP: this host's
# kernel has XFRM but no ESP and cannot load modules, so
# integration/vm/run-in-vm.sh boots Debian's kernel under qemu (TCG) and runs
# integration/vm/encrypted_scenario.sh inside it: two hosts as namespaces,
# each with its swarmnetd, an encrypted and a plain network (see that file
# for the checks).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

vm_dir="${SWARMNET_BIN_DIR:?}/../integration/vm"
[[ -x "$vm_dir/frame_send" ]] || die "$vm_dir/frame_send not built (cmake --build BUILD --target frame_send)"
for p in swarmnetd swarmnetctl swarmnet; do need_bin "$p" >/dev/null; done
command -v tcpdump >/dev/null || die "tcpdump missing (scripts/install-deps)"

say "encrypted networks inside a VM (qemu TCG)"
with=()
for f in "$SWARMNET_BIN_DIR"/{swarmnetd,swarmnetctl,swarmnet} "$vm_dir/frame_send" \
  "$SWARMNET_SOURCE_DIR"/integration/lib/{common,cluster}.sh \
  /usr/bin/bash /usr/bin/jq /usr/bin/ping "$(command -v tcpdump)" /usr/sbin/nft; do
  with+=(--with "$(readlink -f "$f")")
done
# bash as /bin/bash too: the scenario's interpreter.
with+=(--with /bin/bash)
# drbg (with sha512): the default RNG seqiv draws its salt from,
# without which ESP SAs with AES-GCM fail (ENOENT); nft_limit: the firewall's
# per-container DNS limit; nft_fib_inet: its egress rule for the node's own flows
# (fib in an inet table).
modules=()
for m in esp4 xfrm_user xfrm_algo gcm ghash_generic ctr seqiv echainiv drbg sha512_generic nft_limit nft_fib_inet; do modules+=(--module "$m"); done
start=$(date +%s)
status=0
"$SWARMNET_SOURCE_DIR/integration/vm/run-in-vm.sh" --timeout 540 "${with[@]}" "${modules[@]}" \
  -- "$SWARMNET_SOURCE_DIR/integration/vm/encrypted_scenario.sh" \
  "$SWARMNET_SOURCE_DIR" "$SWARMNET_BIN_DIR" "$vm_dir" || status=$?
info "VM run took $(( $(date +%s) - start )) s"
check "the encrypted-network scenario passes inside the VM (exit status $status)" test "$status" -eq 0
if (($(failures) > 0)); then
  echo "test_encrypted_vm: $(failures) check(s) FAILED"
  exit 1
fi
echo "test_encrypted_vm: all checks passed"
