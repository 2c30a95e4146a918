# shellcheck shell=bash
# Sourced by encrypted_scenario.sh in "bench" mode, with its cluster up:
# containers a (host 1) and b (host 2) on the encrypted network, pa and pb on
# the plain one. Adds the hand-built peer in the same two host namespaces: a
# bridge and a VXLAN device each (VNI 99, UDP port 4790, so swarmnet's
# policies on port 4789 never see it), a container namespace on each
# bridge, and ESP between the hosts written with `ip xfrm` (transport,
# rfc4106(gcm(aes)) with a 128-bit key, ESN, replay window 128, as swarmnet's
# SAs; outbound policies on UDP 4790), at the encrypted network's MTU. Then
# iperf3 (TCP, DURATION s) over each path, one after the other, ROUNDS times.
DURATION="${BENCH_DURATION:-5}"
ROUNDS="${BENCH_ROUNDS:-3}"
hand_port=4790
for i in 1 2; do
  h=$(host_ns "$i")
  other=$(host_ip $((3 - i)))
  ip -n "$h" link add xvx type vxlan id 99 local "$(host_ip "$i")" remote "$other" dstport "$hand_port" nolearning
  ip -n "$h" link add xbr type bridge
  ip -n "$h" link set xvx master xbr mtu "$mtu" up
  ip -n "$h" link set xbr up
  c=$(container_ns "x$i")  # swept by cluster_down with the other containers
  ip netns add "$c"
  ip -n "$h" link add xv type veth peer name eth0 netns "$c"
  ip -n "$h" link set xv master xbr mtu "$mtu" up
  ip -n "$c" link set eth0 mtu "$mtu" up
  ip -n "$c" link set lo up
  ip -n "$c" addr add "10.99.0.$((1 + i))/24" dev eth0
done
key=0x$(printf '%040x' 1234567890)
for i in 1 2; do
  h=$(host_ns "$i")
  me=$(host_ip "$i") other=$(host_ip $((3 - i)))
  for dir in "$me $other" "$other $me"; do
    set -- $dir
    ip -n "$h" xfrm state add src "$1" dst "$2" proto esp spi "0x$(printf '%x' $((0x1000 + ${1##*.})))" reqid 9 \
      mode transport flag esn replay-window 128 aead 'rfc4106(gcm(aes))' "$key" 128
  done
  # proto 17 (UDP) by number: the VM has no /etc/protocols.
  ip -n "$h" xfrm policy add src "$me/32" dst "$other/32" proto 17 dport "$hand_port" dir out \
    tmpl src "$me" dst "$other" proto esp reqid 9 mode transport
done
xa=$(container_ns x1) xb=$(container_ns x2)
check "hand-built ESP path pings" wait_for 10 ip netns exec "$xa" ping -c 1 -W 1 10.99.0.3
# Bytes through the hand-built SA from host 1 to host 2 ("N(bytes), M(packets)").
hand_sa_bytes() { ip -n "$h1" -s xfrm state | awk '/spi 0x0000100b/ {f=1} f && /\(bytes\), [0-9]+\(packets\)/ {print $1 + 0; exit}'; }

iperf() {  # iperf SERVER_NS SERVER_IP CLIENT_NS -> "Mbit/s retransmits"
  local pid out
  ip netns exec "$1" iperf3 -s -1 -B "$2" >/dev/null 2>&1 {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  pid=$!
  sleep 1
  # A run that stalls is cut off (and says so) rather than hang the VM
  # until its timeout with no figure printed.
  out=$(ip netns exec "$3" timeout $((DURATION + 30)) iperf3 -c "$2" -t "$DURATION" -J) || {
    echo "iperf3 to $2 failed or stalled" >&2
    kill_pid "$pid"
    echo 0 0
    return
  }
  wait "$pid" 2>/dev/null || true
  jq -r '"\(.end.sum_received.bits_per_second / 1e4 | floor / 100) \(.end.sum_sent.retransmits // 0)"' <<<"$out"
}
# ROUNDS rounds, the three paths one after the other in each, and the
# median of each path: the VM shares the host's CPUs, whose load comes and goes.
median() { tr ' ' '\n' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# No process substitution (`< <(...)`): the VM has no /dev/fd.
# Odd rounds run swarmnet's encrypted path first, even rounds the hand-built
# one, so that a drift of the VM's speed within a round favours neither.
enc_all="" hand_all="" plain_all="" enc_retr="" hand_retr=""
for ((round = 1; round <= ROUNDS; round++)); do
  for path in $( ((round % 2)) && echo "enc hand" || echo "hand enc"); do
    if [[ $path == enc ]]; then
      read -r mbit retr <<<"$(iperf "$(container_ns b)" "$b" "$(container_ns a)")"
      enc_all+=" $mbit" enc_retr+=" $retr"
    else
      read -r mbit retr <<<"$(iperf "$xb" 10.99.0.3 "$xa")"
      hand_all+=" $mbit" hand_retr+=" $retr"
    fi
  done
  read -r mbit retr <<<"$(iperf "$(container_ns pb)" "$pb" "$(container_ns pa)")"
  plain_all+=" $mbit"
  info "round $round of $ROUNDS (Mbit/s): encrypted ${enc_all##* }, hand-built ${hand_all##* }, plain $mbit; load $(cut -d' ' -f1 /proc/loadavg)"
done
# The route work per packet that the two ESP paths may differ in: a packet
# routed again after the firewall changed it (ip_route_me_harder) and an SA
# resolved for a new XFRM bundle (xfrm_state_find), counted by the kernel's
# function tracer during one more short run of each path, against the
# packets host 1 sent meanwhile.
tracing=/sys/kernel/tracing
[[ -e $tracing/trace ]] || mount -t tracefs nodev "$tracing" 2>/dev/null || true
traced() {  # traced SERVER_NS SERVER_IP CLIENT_NS -> "re-routes SA-lookups packets"
  local tx0 tx1
  echo 0 >"$tracing/tracing_on"
  echo >"$tracing/trace"
  tx0=$(ip netns exec "$h1" cat /sys/class/net/eth0/statistics/tx_packets)
  echo 1 >"$tracing/tracing_on"
  DURATION=2 iperf "$@" >/dev/null
  echo 0 >"$tracing/tracing_on"
  tx1=$(ip netns exec "$h1" cat /sys/class/net/eth0/statistics/tx_packets)
  echo "$(grep -c ' ip_route_me_harder' "$tracing/trace") $(grep -c ' xfrm_state_find' "$tracing/trace") $((tx1 - tx0))"
}
info "counting the route work per packet (function tracer, 2 s of each ESP path)"
if echo 8192 >"$tracing/buffer_size_kb" 2>/dev/null &&
  printf '%s\n' ip_route_me_harder xfrm_state_find >"$tracing/set_ftrace_filter" 2>/dev/null &&
  echo function >"$tracing/current_tracer" 2>/dev/null; then
  read -r enc_rr enc_sa enc_pk <<<"$(traced "$(container_ns b)" "$b" "$(container_ns a)")"
  read -r hand_rr hand_sa hand_pk <<<"$(traced "$xb" 10.99.0.3 "$xa")"
  echo nop >"$tracing/current_tracer"
  info "per-packet route work, 2 s of iperf3 (packets sent by host 1): encrypted $enc_rr re-routes and $enc_sa SA lookups for $enc_pk packets; hand-built $hand_rr and $hand_sa for $hand_pk"
else
  info "no function tracer in this VM: route work not counted"
fi
info "Mbit/s per round: encrypted$enc_all; hand-built$hand_all; plain$plain_all"
info "TCP retransmits per round: encrypted$enc_retr; hand-built$hand_retr"
enc_mbit=$(median <<<"${enc_all# }")
hand_mbit=$(median <<<"${hand_all# }")
plain_mbit=$(median <<<"${plain_all# }")
check "the hand-built path's traffic went through its SA ($(hand_sa_bytes) bytes)" test "$(hand_sa_bytes)" -gt 1000000
ratio=$(awk -v a="$enc_mbit" -v b="$hand_mbit" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
echo "ESP-BENCH mtu=$mtu duration=${DURATION}s rounds=$ROUNDS (medians) swarmnet-encrypted=${enc_mbit}Mbit/s hand-built-esp=${hand_mbit}Mbit/s plain-overlay=${plain_mbit}Mbit/s ratio-encrypted/hand-built=$ratio vm-loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
