#!/usr/bin/env bash
# swarmnetctl doctor on this machine, whose kernel has VXLAN, bridge,
# nftables and br_netfilter but no IPVS and no ESP:
#   1. swarmnetd down, the CNI plugins and a configuration in place: doctor
#      finds the kernel features by trying them, says IPVS and ESP are
#      missing and what works without them, says the daemon is down, and
#      exits 2; --format json says the same.
#   2. control: the same without the swarmnet plugin in the CNI directory:
#      doctor says it is missing, with the fix, and exits 1.
#   3. two hosts, swarmnetd up: doctor on host 1 finds host 2 alive with its
#      gossip TCP port answering, VXLAN from it accepted, the ports closed to
#      containers, the underlay's MTU, host 2's clock close to ours; exits 2
#      (IPVS, ESP).
#      swarmnet-docker answers Plugin.Activate; stopped, it is missing (exit 1).
#   4. controls: host 2 rejects gossip TCP, then a network's MTU is too large
#      for the underlay, then host 2's daemon runs with its clock 40 s ahead:
#      doctor names each and exits 1.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_doctor.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v jq >/dev/null || die "jq is needed (scripts/install-deps)"
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
[[ -e "$FAKETIME_LIB" ]] || die "libfaketime is needed (scripts/install-deps)"
watchdog "${SWARMNET_IT_TIMEOUT:-150}"
CTL=$(need_bin swarmnetctl)

WORK=$(mktemp -d /tmp/swarmnet-doctor.XXXXXX)
on_exit "rm -rf '$WORK'"
mkdir -p "$WORK/bin" "$WORK/net.d"
cp "$(need_bin swarmnet)" "$(need_bin swarmnet-ipam)" "$WORK/bin/"
cat >"$WORK/net.d/10-swarmnet.conflist" <<'JSON'
{"cniVersion": "1.0.0", "name": "demo", "plugins": [{"type": "swarmnet"}]}
JSON
# The CNI and Docker places are given so the run does not depend on what this
# machine has installed; no dockerd socket there: the Docker check is skipped.
HOST_ARGS=(--cni-bin-dir "$WORK/bin" --cni-conf-dir "$WORK/net.d")
NO_DOCKER=(--docker-socket "$WORK/no-dockerd.sock")

# doctor OUT_FILE ARGS...: runs it, keeps its output, prints its exit code.
doctor() {
  local out="$1" rc=0; shift
  timeout 60 "$@" >"$out" 2>&1 || rc=$?
  echo "$rc"
}
# has FILE STATUS WHAT [PATTERN]: a line "STATUS  WHAT  ...PATTERN...".
has() {
  grep -Eq "^$2 +$3 +.*${4:-}" "$1" || { info "no line '$2 $3 ${4:-}' in:"; sed 's/^/      /' "$1"; return 1; }
}

say "1. this host, swarmnetd down"
rc=$(doctor "$WORK/down.txt" "$CTL" --socket "$WORK/none.sock" doctor "${HOST_ARGS[@]}" "${NO_DOCKER[@]}")
sed 's/^/    /' "$WORK/down.txt"
check "exit code 2: only optional features missing (got $rc)" test "$rc" = 2
for f in bridge veth vxlan nftables br_netfilter; do
  check "kernel $f found by trying it" has "$WORK/down.txt" ok "kernel $f" "created|passes"
done
check "IPVS is optional missing, and nftables balances instead" \
  has "$WORK/down.txt" "optional missing" "kernel ipvs" "balanced by nftables instead.*fix: modprobe ip_vs"
check "ESP is optional missing, with what still works" \
  has "$WORK/down.txt" "optional missing" "kernel esp" "AES-GCM.*still works.*fix: modprobe esp4"
check "the plugins answer CNI VERSION" has "$WORK/down.txt" ok "cni swarmnet plugin" "answers CNI VERSION"
check "the configuration naming swarmnet is found" has "$WORK/down.txt" ok "cni configuration" "10-swarmnet.conflist"
check "says the daemon is down" has "$WORK/down.txt" skipped "daemon swarmnetd" "swarmnetd is down"
check "the underlay's MTU is read" has "$WORK/down.txt" ok "mtu underlay" "MTU [0-9]+"
check "the summary says swarmnet works here" grep -q "^swarmnet works here; 2 optional" "$WORK/down.txt"
rc=$(doctor "$WORK/down.json" "$CTL" --socket "$WORK/none.sock" doctor --format json "${HOST_ARGS[@]}" "${NO_DOCKER[@]}")
check "json: exit code 2 in the output and of the program" \
  test "$rc/$(jq .exit_code "$WORK/down.json")" = 2/2
check "json: ipvs and esp optional missing, vxlan ok" test \
  "$(jq -r '[.checks[] | select(.area == "kernel") | "\(.name)=\(.status)"] | join(",")' "$WORK/down.json")" = \
  "bridge=ok,veth=ok,vxlan=ok,nftables=ok,br_netfilter=ok,ipvs=optional missing,esp=optional missing"
check "no link of the throwaway namespace is left on this host" bash -c "! ip -o link | grep -q ' doctor-'"
# Control: that look sees such a link when there is one.
ip link add doctor-control type bridge
on_exit "ip link del doctor-control 2>/dev/null"
check "control: a doctor- link on this host is seen" bash -c "ip -o link | grep -q ' doctor-'"
ip link del doctor-control

say "2. control: the swarmnet plugin is not in the CNI directory"
rm "$WORK/bin/swarmnet"
rc=$(doctor "$WORK/noplugin.txt" "$CTL" --socket "$WORK/none.sock" doctor "${HOST_ARGS[@]}" "${NO_DOCKER[@]}")
check "exit code 1: a required piece is missing (got $rc)" test "$rc" = 1
check "names the missing plugin and the fix" \
  has "$WORK/noplugin.txt" missing "cni swarmnet plugin" "no executable swarmnet in $WORK/bin.*fix: cmake --install"
check "the summary says swarmnet will not work" grep -q "^1 required piece(s) missing" "$WORK/noplugin.txt"
cp "$(need_bin swarmnet)" "$WORK/bin/"

say "3. two hosts, swarmnetd up"
cluster_up 2
# The join went by TCP; host 1 knows host 2's clock from its first gossip
# datagram (a ping within a second). Until then doctor says "skipped".
host2_offset() { hctl 1 node ls --format json | jq -e ".[] | select(.name == \"host2\") | .clock_offset_ms $1"; }
wait_for 10 host2_offset "!= null" || die "no gossip datagram from host 2 reached host 1"
# hdoctor OUT_FILE [DOCKER_ARGS...]: doctor on host 1 (without Docker by default).
hdoctor() {
  local out="$1"; shift
  (($#)) || set -- "${NO_DOCKER[@]}"
  doctor "$out" ip netns exec "$(host_ns 1)" "$CTL" --socket "$(host_sock 1)" doctor "${HOST_ARGS[@]}" "$@"
}
rc=$(hdoctor "$WORK/up.txt")
sed 's/^/    /' "$WORK/up.txt"
check "exit code 2 with the daemon up (got $rc)" test "$rc" = 2
check "the daemon is up" has "$WORK/up.txt" ok "daemon swarmnetd" "up on"
check "host 2 alive, its gossip TCP port answers" \
  has "$WORK/up.txt" ok "peer host2" "$(host_ip 2):7946\) is alive and its gossip TCP port answers"
check "VXLAN from host 2 is accepted" has "$WORK/up.txt" ok "vxlan host2" "from $(host_ip 2) is accepted"
check "gossip and VXLAN are closed to containers" has "$WORK/up.txt" ok "ports closed to containers" "drops"
check "the underlay is the link holding the advertise address" \
  has "$WORK/up.txt" ok "mtu underlay" "eth0 \(holds $(host_ip 1)\): MTU 1500"
check "host 2's clock is within a few ms of host 1's" \
  has "$WORK/up.txt" ok "clock host2" "host2's clock is [0-9] ms (ahead of|behind) this node's"

say "3b. the Docker driver, when there is a dockerd"
# A file stands for dockerd's socket (doctor only asks whether dockerd is
# installed there); the driver is the real swarmnet-docker.
: >"$WORK/dockerd.sock"
ip netns exec "$(host_ns 1)" "$(need_bin swarmnet-docker)" --socket "$WORK/plugin.sock" \
  --daemon-socket "$(host_sock 1)" --state-dir "$WORK/docker-state" --docker-socket "" \
  >"$WORK/swarmnet-docker.log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
DOCKER_PID=$!
on_exit "kill_pid $DOCKER_PID swarmnet-docker"
wait_for 10 test -S "$WORK/plugin.sock" || die "swarmnet-docker did not start: $(tail -3 "$WORK/swarmnet-docker.log")"
DOCKER_ARGS=(--docker-socket "$WORK/dockerd.sock" --docker-plugin-socket "$WORK/plugin.sock")
rc=$(hdoctor "$WORK/docker.txt" "${DOCKER_ARGS[@]}")
check "exit code 2 with the driver answering (got $rc)" test "$rc" = 2
check "the driver answers Plugin.Activate" \
  has "$WORK/docker.txt" ok "docker plugin socket" "answers Plugin.Activate: NetworkDriver, IpamDriver"
kill_pid "$DOCKER_PID" swarmnet-docker
rc=$(hdoctor "$WORK/nodocker.txt" "${DOCKER_ARGS[@]}")
check "control: exit code 1 once the driver is stopped (got $rc)" test "$rc" = 1
check "control: names the driver's socket and the fix" \
  has "$WORK/nodocker.txt" missing "docker plugin socket" "swarmnet-docker does not answer on $WORK/plugin.sock.*fix: start swarmnet-docker"

say "4. controls: what doctor sees when a peer's port or a network's MTU is wrong"
ip netns exec "$(host_ns 2)" nft -f - <<'NFT'
table inet doctor-test {
  chain input { type filter hook input priority filter - 20; tcp dport 7946 reject with tcp reset; }
}
NFT
on_exit "ip netns exec '$(host_ns 2)' nft delete table inet doctor-test 2>/dev/null"
rc=$(hdoctor "$WORK/cut.txt")
check "exit code 1 when host 2's gossip TCP port refuses (got $rc)" test "$rc" = 1
check "names host 2's gossip port and the fix" \
  has "$WORK/cut.txt" missing "peer host2" "gossip TCP port does not answer: Connection refused.*fix: open UDP and TCP 7946"
ip netns exec "$(host_ns 2)" nft delete table inet doctor-test
rc=$(hdoctor "$WORK/healed.txt")
check "exit code 2 again once the port answers (got $rc)" test "$rc" = 2

hctl 1 network create big --subnet 10.77.0.0/24 --mtu 1480 >/dev/null
rc=$(hdoctor "$WORK/mtu.txt")
check "exit code 1 with a network whose MTU does not fit the underlay (got $rc)" test "$rc" = 1
check "names the network, the numbers and the fix" \
  has "$WORK/mtu.txt" missing "mtu network big" "MTU 1480 \+ 50 \(VXLAN\) exceeds eth0.*1500.*fix: recreate it with --mtu 1450"
hctl 1 network rm big >/dev/null

# A real clock 40 s ahead for host 2's daemon alone (libfaketime; the
# monotonic clock, which its timers use, stays true): gossip still flows
# (the replay window is 60 s), doctor measures it from host 2's packets.
host_daemon_stop 2
LD_PRELOAD="$FAKETIME_LIB" FAKETIME="+40s" FAKETIME_DONT_FAKE_MONOTONIC=1 host_daemon_start 2
# Host 1 keeps the offset of host 2's last packet: wait for one from the
# restarted daemon (gossip pings every second).
wait_for 20 host2_offset "> 30000" || die "no packet from host 2's restarted daemon reached host 1"
rc=$(hdoctor "$WORK/skew.txt")
check "exit code 1 when host 2's clock is 40 s ahead (got $rc)" test "$rc" = 1
check "names the skew and the fix" \
  has "$WORK/skew.txt" missing "clock host2" "clock is (399[0-9][0-9]|400[0-9][0-9]) ms ahead of this node's.*fix: synchronise"

(($(failures) == 0)) || die "$(failures) check(s) failed"
say "all passed"
