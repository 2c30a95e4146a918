#!/usr/bin/env bash
# The underlay filter, with forged packets on a 3-host
# cluster. The kernel's VXLAN socket decapsulates whatever reaches the host's
# port 4789 and the VNI in the frame picks the network, so a forged frame
# would cross the isolation between networks. Checked:
#   - a frame with network blue's VNI, addressed to blue's container b2 on
#     host 2, arrives when a member (host 1) sends it: the control, so the
#     checks below can fail;
#   - the same frame does not arrive from a machine on the underlay that is
#     not a member, nor from a container of network red, on host 2 itself
#     (to the host's underlay address or to its gateway address) or on
#     host 1 (masqueraded, it would leave host 1 with a member's address);
#   - a dead member's frames still arrive (a healing partition is not cut off);
#   - the gossip ports (TCP and UDP) are closed to containers and open to the
#     underlay (a joining node is not a member yet).
# Arrival is counted in the receiving namespace, by an nft counter of our own.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_underlay_filter.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
command -v python3 >/dev/null || die "python3 is needed to forge the frames"
watchdog 240

cluster_up 3
outside_up
GOSSIP=7946
SPORT=40999  # the forged packets' source port

# send.py KIND DST DPORT [VNI MAC SRC DST]: three UDP datagrams from port
# $SPORT: "raw" ones (8 bytes) or "vxlan" ones carrying an Ethernet frame to
# MAC with an IPv4/UDP packet SRC -> DST port 7777.
cat >"$CLUSTER_DIR/send.py" <<'PY'
import socket, struct, sys
kind, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3])
sport = int(sys.argv[4])
def checksum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
if kind == "vxlan":
    vni, mac, src, idst = int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
    payload = b"forged by test_underlay_filter"
    udp = struct.pack("!HHHH", 40000, 7777, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(idst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex("020000000099") + b"\x08\x00"
    data = struct.pack("!II", 0x08000000, vni << 8) + eth + ip + udp
else:
    data = b"notgossip"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport))
for _ in range(3):
    s.sendto(data, (dst, dport))
PY

say "networks red and blue; b2 (blue) on host 2 is the target"
hctl 1 network create red --subnet 10.241.0.0/24 >/dev/null
hctl 1 network create blue --subnet 10.242.0.0/24 >/dev/null
for i in 1 2 3; do
  for n in red blue; do wait_for 10 hctl "$i" network inspect "$n" || die "host $i lacks $n"; done
done
b2=$(container_add 2 b2 blue)
a2=$(container_add 2 a2 red)
a1=$(container_add 1 a1 red)
VNI=$(hctl 2 network inspect blue | jq -r .vni)
MAC=$(ip -n "$(container_ns b2)" -j link show eth0 | jq -r '.[0].address')
H2=$(host_ip 2)
RED_GW=$(jq -r '.ips[0].gateway' "$CLUSTER_DIR/results/a2.json")
info "b2 $b2 ($MAC, VNI $VNI); a2 $a2 on host 2 and a1 $a1 on host 1 (red); host 2 is $H2"

# What reaches b2's eth0 on port 7777, and what reaches host 2's gossip port
# after swarmnet's filter (priority filter + 10: later than it) with the
# forged datagrams' length (8 + 9 bytes; sealed gossip is longer), whatever
# source port a masquerade gave them.
ip netns exec "$(container_ns b2)" nft -f - <<'NFT'
table inet uf-probe {
  chain in { type filter hook prerouting priority -300; policy accept; udp dport 7777 counter; }
}
NFT
ip netns exec "$(host_ns 2)" nft -f - <<NFT
table inet uf-probe {
  chain in { type filter hook input priority filter + 10; policy accept; udp dport $GOSSIP udp length 17 counter; }
}
NFT
counted() { ip netns exec "$1" nft -j list chain inet uf-probe in | jq '[.nftables[] | .rule? // empty | .expr[] | .counter? // empty | .packets] | add'; }
arrived_at_b2() { counted "$(container_ns b2)"; }
gossip_udp_at_h2() { counted "$(host_ns 2)"; }

# forge NAMESPACE DESTINATION: three VXLAN frames for b2; true when b2 saw any.
forge() {
  local before after
  before=$(arrived_at_b2)
  ip netns exec "$1" python3 "$CLUSTER_DIR/send.py" vxlan "$2" 4789 "$SPORT" "$VNI" "$MAC" 10.242.0.250 "$b2"
  sleep 0.5
  after=$(arrived_at_b2)
  info "b2 counted $((after - before)) of 3 frames from $1 to $2"
  ((after > before))
}

say "VXLAN with blue's VNI, to host 2"
check "control: from a member (host 1's underlay address), the frame arrives in b2" forge "$(host_ns 1)" "$H2"
no_forge() { ! forge "$@"; }
check "from a machine on the underlay that is not a member: nothing arrives" no_forge "$(outside_ns)" "$H2"
check "from a2, a container of red on host 2, to its host's underlay address: nothing arrives" \
  no_forge "$(container_ns a2)" "$H2"
check "from a2 to its gateway address on host 2: nothing arrives" no_forge "$(container_ns a2)" "$RED_GW"
check "from a1, a container of red on host 1 (masqueraded to a member's address): nothing arrives" \
  no_forge "$(container_ns a1)" "$H2"
check "control again: from host 1, the frame still arrives" forge "$(host_ns 1)" "$H2"

say "a dead member stays in the filter until it is reclaimed"
host_daemon_stop 3 KILL
host3_dead() { [[ "$(node_status 2 host3)" == dead ]]; }
wait_for 40 host3_dead || fail "host 2 never saw host 3 dead"
check "host 3, dead for host 2, still gets its frame through" forge "$(host_ns 3)" "$H2"

say "the gossip ports"
tcp_open() { ip netns exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$GOSSIP" 2>/dev/null; }
tcp_closed() { ! tcp_open "$@"; }
check "control: the underlay (a non-member) reaches host 2's gossip TCP port" tcp_open "$(outside_ns)" "$H2"
check "a2 does not reach its own host's gossip TCP port" tcp_closed "$(container_ns a2)" "$H2"
check "a1 does not reach host 2's gossip TCP port (through host 1)" tcp_closed "$(container_ns a1)" "$H2"
check "a1 does not reach its own host's gossip TCP port" tcp_closed "$(container_ns a1)" "$(host_ip 1)"
# udp_to_h2 NAMESPACE: three datagrams to host 2's gossip port; true when
# host 2's input saw any after swarmnet's filter.
udp_to_h2() {
  local before after
  before=$(gossip_udp_at_h2)
  ip netns exec "$1" python3 "$CLUSTER_DIR/send.py" raw "$H2" "$GOSSIP" "$SPORT"
  sleep 0.5
  after=$(gossip_udp_at_h2)
  ((after > before))
}
udp_blocked() { ! udp_to_h2 "$@"; }
check "control: UDP from the underlay reaches host 2's gossip port" udp_to_h2 "$(outside_ns)"
check "UDP from a2 does not reach its host's gossip port" udp_blocked "$(container_ns a2)"
check "UDP from a1 does not reach host 2's gossip port" udp_blocked "$(container_ns a1)"

if (($(failures) > 0)); then echo "test_underlay_filter: $(failures) check(s) failed"; exit 1; fi
echo "test_underlay_filter: all checks passed"
