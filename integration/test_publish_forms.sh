#!/usr/bin/env bash
# --publish as `docker service create` takes it, on a 2-host cluster seen
# from an outside machine: port ranges (8100-8102:80-82, one to one) and the
# long form (published=,target=,protocol=,mode=), in ingress and host mode,
# TCP and UDP, each reachable; what swarmnet does not support (unequal
# ranges, sctp, a host address) refused with the reason, nothing created.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_publish_forms.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
watchdog 240
for tool in busybox dig jq dnsmasq curl; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done

CLUSTER_TAG="swpf$$"
cluster_up 2
outside_up
hctl 1 network create front --subnet 10.247.0.0/24 >/dev/null
wait_for 10 hctl 2 network inspect front >/dev/null || die "host 2 lacks front"

say "service web: --publish 8100-8102:80-82, published=8200,target=80,protocol=tcp,mode=ingress,"
say "  published=5300,target=53,protocol=udp, mode=host,published=9100-9101,target=80-81"
check "service create with ranges and the long form" hctl 1 service create web --network front \
  --publish 8100-8102:80-82 --publish published=8200,target=80,protocol=tcp,mode=ingress \
  --publish published=5300,target=53,protocol=udp --publish mode=host,published=9100-9101,target=80-81
published=$(hctl 1 service inspect web | jq -c '[.ports[] | select(.publish_mode) | "\(.publish_mode):\(.published)->\(.target)/\(.protocol)"] | sort')
info "service inspect: $published"
check "service inspect lists 7 publications, ranges one to one" test "$published" = \
  '["host:9100->80/tcp","host:9101->81/tcp","ingress:5300->53/udp","ingress:8100->80/tcp","ingress:8101->81/tcp","ingress:8102->82/tcp","ingress:8200->80/tcp"]'
wait_for 10 hctl 2 service inspect web >/dev/null || die "host 2 lacks the service"

w1=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 w1 front)
task_servers w1 "$w1"   # httpd on 80 (page "w1"), dnsmasq on 53
for p in 81 82; do      # httpd on 81 and 82, pages "p81" and "p82"
  mkdir -p "$CLUSTER_DIR/www-$p"
  echo "p$p" >"$CLUSTER_DIR/www-$p/index.html"
  ip netns exec "$(container_ns w1)" busybox httpd -f -p "$p" -h "$CLUSTER_DIR/www-$p" </dev/null \
    {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
  on_exit "kill_pid $!"
done
info "task w1 $w1 on host 1; host 2 runs none"

outside() { ip netns exec "$(outside_ns)" "$@"; }
page() { outside curl -sf -m 2 "http://$1/" 2>/dev/null; }
page_is() { [[ "$(page "$1")" == "$2" ]]; }
check "host 2 (no task) answers on 8100 with target 80" wait_for 15 page_is "$(host_ip 2):8100" w1
check "host 2 answers on 8101 with target 81" page_is "$(host_ip 2):8101" p81
check "host 2 answers on 8102 with target 82" page_is "$(host_ip 2):8102" p82
check "host 1 answers on 8102 with target 82" page_is "$(host_ip 1):8102" p82
check "long form, ingress: host 2 answers on 8200 with target 80" page_is "$(host_ip 2):8200" w1
who() { outside dig +short +tries=1 +time=2 -p "$2" "@$1" who.test 2>/dev/null | grep -v '^;'; }
check "long form, udp: host 2 answers DNS on 5300 from target 53" test "$(who "$(host_ip 2)" 5300)" = "$w1"
check "long form host-mode range: host 1 answers on 9100 with target 80" page_is "$(host_ip 1):9100" w1
check "and on 9101 with target 81" page_is "$(host_ip 1):9101" p81
check "host mode: host 2 (no task) does not answer on 9100 (host 1 does, above)" bash -c "! ip netns exec $(outside_ns) curl -sf -m 2 http://$(host_ip 2):9100/ >/dev/null"
check "8103, past the range, answers nowhere (8102 does, above)" bash -c "! ip netns exec $(outside_ns) curl -sf -m 2 http://$(host_ip 2):8103/ >/dev/null"

say "what is not supported is refused by name, and nothing is created"
refused() {  # refused WHY SPEC...: service create fails, its message has WHY
  local why="$1" out; shift
  local args=() s
  for s in "$@"; do args+=(--publish "$s"); done
  if out=$(hctl 1 service create bad --network front "${args[@]}" 2>&1); then return 1; fi
  info "$out"
  grep -qF -- "$why" <<<"$out"
}
check "unequal ranges" refused "differ in length; they map one to one" 8000-8010:80
check "sctp" refused "sctp is not supported (tcp or udp)" published=8000,target=80,protocol=sctp
check "a host address" refused "a host address (IP:PUBLISHED:TARGET) is not supported" 127.0.0.1:8000:80
check "an unknown long-form key" refused 'unknown key "name"' published=8000,target=80,name=x
check "a range of more than 1000 ports" refused "more than 1000" 1-2000:1-2000
check "no service bad was made" bash -c "! $SWARMNET_BIN_DIR/swarmnetctl --socket $(host_sock 1) service inspect bad >/dev/null 2>&1"

say "service rm closes every port of the ranges"
hctl 1 service rm web >/dev/null
check "host 2's 8101 no longer answers" wait_for 10 bash -c "! ip netns exec $(outside_ns) curl -sf -m 1 http://$(host_ip 2):8101/ >/dev/null"

(($(failures) == 0)) || die "$(failures) check(s) failed"
pass "test_publish_forms"
