#!/usr/bin/env bash
# The IPVS balancer against a real IPVS kernel: this host's kernel has no
# IPVS and cannot load modules, so integration/vm/run-in-vm.sh boots
# Debian's linux-image-amd64 under qemu (software emulation, works without
# kvm) and runs integration/vm/ipvs_scenario inside it (namespaces, a
# bridge, three backends, a client; see that file for the cases).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

scenario="${SWARMNET_BIN_DIR:?}/../integration/vm/ipvs_scenario"
[[ -x "$scenario" ]] || die "$scenario not built (cmake --build BUILD --target ipvs_scenario)"

say "IPVS balancer scenario inside a VM (qemu TCG)"
start=$(date +%s)
status=0
"$SWARMNET_SOURCE_DIR/integration/vm/run-in-vm.sh" --timeout 540 --with /usr/sbin/nft --with /usr/sbin/bridge \
  -- "$scenario" --durations yes || status=$?
info "VM run took $(( $(date +%s) - start )) s"
check "the IPVS scenario passes inside the VM (exit status $status)" test "$status" -eq 0
if (($(failures) > 0)); then
  echo "test_lb_ipvs_vm: $(failures) check(s) FAILED"
  exit 1
fi
echo "test_lb_ipvs_vm: all checks passed"
