#!/usr/bin/env bash
# The routing mesh keeps the client's address: from an outside machine, 30
# requests to each of 3 nodes (host 3 runs no task); every task logs, for
# every request it answers, the outside client's own address, and the
# requests still spread over the tasks of both other nodes. Clients inside
# the cluster (a container on a node, a node itself, a task through its own
# node) are still answered. And the outside still reaches nothing that is
# not published: not the ingress VIP, a task or the gateway bridge directly
# (routes through a node), nor an unpublished port, while the same probes
# reach a published port and, from inside the network, the task itself.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_mesh_client_address.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in busybox curl jq; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done
watchdog 150

cluster_up 3
outside_up
OUTSIDE_IP="$CLUSTER_UNDERLAY.200"
outside() { ip netns exec "$(outside_ns)" "$@"; }

hctl 1 network create front --subnet 10.246.0.0/24 >/dev/null
hctl 1 service create web --network front --publish 8080:80 >/dev/null
for i in 2 3; do
  wait_for 10 hctl "$i" network inspect front || die "host $i lacks front"
  wait_for 10 hctl "$i" service inspect web || die "host $i lacks the service"
done

# A task's web server: a CGI that logs the client's address (REMOTE_ADDR,
# the TCP peer busybox httpd accepted) and answers "NAME ADDRESS".
declare -A LOG=() ADDR=()
task_up() {  # task_up HOST NAME: the task's address in ADDR[NAME]
  local host="$1" name="$2" ip www
  ip=$(CNI_ARGS=SWARMNET_SERVICE=web container_add "$host" "$name" front)
  ADDR[$name]="$ip"
  www="$CLUSTER_DIR/www-$name"
  LOG[$name]="$CLUSTER_DIR/clients-$name.log"
  mkdir -p "$www/cgi-bin"
  : >"${LOG[$name]}"
  # (It listens on IPv6 too: an IPv4 client comes as [::ffff:ADDRESS].)
  cat >"$www/cgi-bin/who" <<CGI
#!/bin/sh
client=\$(echo "\$REMOTE_ADDR" | sed 's/^\[::ffff:\(.*\)\]\$/\1/')
echo "\$client" >>${LOG[$name]}
printf 'Content-Type: text/plain\r\n\r\n$name %s\n' "\$client"
CGI
  chmod +x "$www/cgi-bin/who"
  ip netns exec "$(container_ns "$name")" busybox httpd -f -p 80 -h "$www" </dev/null >/dev/null 2>&1 \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  on_exit "kill_pid $!"
}
task_up 1 w1
task_up 2 w2
w1="${ADDR[w1]}" w2="${ADDR[w2]}"
info "tasks w1 $w1 (host 1), w2 $w2 (host 2); host 3 runs none"
both_healthy() { [[ $(hctl "$1" service inspect web | jq '[.tasks[] | select(.healthy)] | length') == 2 ]]; }
for i in 1 2 3; do wait_for 15 both_healthy "$i" || die "host $i does not see both tasks"; done

who() { outside curl -sf -m 2 "http://$1/cgi-bin/who" 2>/dev/null || echo failed; }
answers() { [[ "$(who "$1")" == w[12]\ * ]]; }
for i in 1 2 3; do wait_for 15 answers "$(host_ip "$i"):8080" || die "host $i's 8080 does not answer"; done
for t in w1 w2; do : >"${LOG[$t]}"; done

say "30 requests from the outside machine ($OUTSIDE_IP) to each node's 8080"
declare -A SERVED=()
for i in 1 2 3; do
  out=""
  for ((k = 0; k < 30; k++)); do out+="$(who "$(host_ip "$i"):8080")"$'\n'; done
  n1=$(grep -c "^w1 " <<<"$out" || true)
  n2=$(grep -c "^w2 " <<<"$out" || true)
  seen=$(awk '$1 != "failed" && NF {print $2}' <<<"$out" | sort | uniq -c | tr '\n' ' ')
  info "host $i: w1 $n1, w2 $n2; addresses the tasks answered with: $seen"
  check "host $i: all 30 answered" test $((n1 + n2)) == 30
  check "host $i: spread over the tasks of both nodes (each >= 3 of 30)" test "$n1" -ge 3 -a "$n2" -ge 3
  check "host $i: every answer names the client's own address" \
    test "$(grep -c " $OUTSIDE_IP\$" <<<"$out" || true)" == 30
  SERVED[w1]=$((${SERVED[w1]:-0} + n1))
  SERVED[w2]=$((${SERVED[w2]:-0} + n2))
done
for t in w1 w2; do
  logged=$(wc -l <"${LOG[$t]}")
  other=$(grep -vc "^$OUTSIDE_IP\$" "${LOG[$t]}" || true)
  info "$t logged $logged request(s), $other from another address than $OUTSIDE_IP"
  check "$t logged every request it answered (${SERVED[$t]}), each from $OUTSIDE_IP" \
    test "$logged" == "${SERVED[$t]}" -a "$other" == 0
done

say "clients inside the cluster are still answered (through their node's masquerade)"
c3=$(container_add 3 c3 front)
info "container c3 $c3 on host 3 (no task)"
inside_ok() {  # inside_ok NAME CMD...: 10 requests, all answered by a task
  local name="$1" k ok=0; shift
  for ((k = 0; k < 10; k++)); do
    if "$@" 2>/dev/null | grep -q '^w[12] '; then ok=$((ok + 1)); fi
  done
  info "$name: $ok of 10"
  ((ok == 10))
}
for i in 1 2 3; do
  check "container c3 -> host $i:8080" inside_ok "c3 -> host $i" \
    ip netns exec "$(container_ns c3)" curl -sf -m 2 "http://$(host_ip "$i"):8080/cgi-bin/who"
done
check "host 3 itself -> host 1:8080" inside_ok "host 3 -> host 1" \
  ip netns exec "$(host_ns 3)" curl -sf -m 2 "http://$(host_ip 1):8080/cgi-bin/who"
check "task w1 -> its own node's 8080 (the hash may pick w1 itself)" inside_ok "w1 -> host 1" \
  ip netns exec "$(container_ns w1)" curl -sf -m 2 "http://$(host_ip 1):8080/cgi-bin/who"
check "task w1 -> host 2:8080" inside_ok "w1 -> host 2" \
  ip netns exec "$(container_ns w1)" curl -sf -m 2 "http://$(host_ip 2):8080/cgi-bin/who"

say "the outside reaches nothing that is not published, even with routes through a node"
vip=$(hctl 1 service inspect web | jq -r .ingress_vip)
ingress_subnet=$(hctl 1 network inspect ingress | jq -r .subnet)
info "ingress VIP $vip, ingress subnet $ingress_subnet"
# A listener on a port nobody published, in w1: the probes below try to
# reach it; c3 (on the same network) reaches it, as the control.
ip netns exec "$(container_ns w1)" busybox httpd -f -p 81 -h "$CLUSTER_DIR/www-w1" </dev/null >/dev/null 2>&1 \
  {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
P81=$!
on_exit "kill_pid $P81"
for net in "$ingress_subnet" 10.246.0.0/24 172.29.0.0/24; do outside ip route add "$net" via "$(host_ip 1)"; done
reach() { outside curl -s -o /dev/null -m 2 "http://$1/" 2>/dev/null; }  # any HTTP answer at all
unreached() { ! reach "$1"; }
check "control: c3 reaches w1:81 inside the network" wait_for 10 \
  ip netns exec "$(container_ns c3)" curl -s -o /dev/null -m 2 "http://$w1:81/"
check "control: the outside reaches host 1:8080" reach "$(host_ip 1):8080/cgi-bin/who"
for target in "$(host_ip 1):81" "$(host_ip 3):81" "$vip:80" "$vip:81" "$w1:80" "$w1:81" "172.29.0.2:80"; do
  check "the outside does not reach $target" unreached "$target"
done

exit "$(failures)"
