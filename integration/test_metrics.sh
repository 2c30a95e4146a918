#!/usr/bin/env bash
# swarmnetd --metrics-addr (README "Metrics"): on a 2-host cluster whose
# daemons serve metrics on every address of their host (0.0.0.0, the worst
# case for exposure):
#   - a real scrape passes `promtool check metrics` and counts what was done:
#     the CNI plugin's ADD by client and operation, a refused ADD by error
#     code, the network's addresses, DNS answers by RCODE, gossip members;
#   - a real Prometheus (Debian's, on loopback inside host 1's namespace,
#     its own config and storage in a temp dir) scrapes host 1 and answers a
#     query for swarmnet_gossip_members{state="alive"} with 2;
#   - a container on host 1 cannot connect to the metrics port, neither at
#     its gateway nor at the host's underlay address, while the same connect
#     from the host works and the container does reach another listener of
#     the host (swarmnetd's DNS over TCP at the gateway): the controls.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"
require_root
watchdog 150
command -v promtool >/dev/null && command -v prometheus >/dev/null ||
  die "promtool and prometheus not found: scripts/install-deps installs Debian's prometheus"
need_bin swarmnetd >/dev/null

METRICS_PORT=9476
PROM_PORT=9490
CLUSTER_DAEMON_ARGS="--metrics-addr 0.0.0.0:$METRICS_PORT --probe-interval-ms 200 --gossip-interval-ms 50"
cluster_up 2

scrape() { ip netns exec "$(host_ns 1)" curl -sf --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics"; }
# value METRIC_WITH_LABELS: its value in a fresh scrape of host 1 ("" if absent).
value() { scrape | awk -v m="$1" '$1 == m {print $2}'; }
value_is() { [[ "$(value "$1")" == "$2" ]]; }
at_least() { local v; v=$(value "$1"); [[ -n "$v" ]] && ((v >= $2)); }

say "a service task on host 1 and what it makes the daemon count"
hctl 1 network create metricsnet --subnet 10.77.0.0/24 >/dev/null
hctl 1 service create web --network metricsnet >/dev/null
c1=$(CNI_ARGS=SWARMNET_SERVICE=web container_add 1 c1 metricsnet)
info "c1 is $c1"
gw=10.77.0.1
check "the CNI plugin's ADD is counted by client and operation" \
  value_is 'swarmnet_api_requests_total{client="cni",operation="endpoint_create",status="201"}' 1
check "the network has 2 addresses used (c1 and the service's VIP)" \
  value_is 'swarmnet_ipam_addresses_used{network="metricsnet"}' 2
check "and 251 free (256 minus network, broadcast, gateway, the 2 used)" \
  value_is 'swarmnet_ipam_addresses_free{network="metricsnet"}' 251
check "one vip-mode service" value_is 'swarmnet_services{mode="vip"}' 1
check "host 1's balancer holds its VIP" value_is 'swarmnet_lb_vips' 1
check "with c1 as its backend" value_is 'swarmnet_lb_backends' 1
check "the balancer's changes were timed" at_least 'swarmnet_lb_program_duration_seconds_count{operation="upsert"}' 1
check "lb check finds no difference" value_is 'swarmnet_lb_check_differences' 0

say "a refused ADD is counted by its error code"
# A /30 has one address to hand out (4 minus network, broadcast, gateway).
hctl 1 network create tiny --subnet 10.78.0.0/30 >/dev/null
container_add 1 t1 tiny >/dev/null
if container_add 1 t2 tiny >/dev/null 2>&1; then fail "a second container got an address in a /30"; fi
check "the refused ADD is counted as exhausted" \
  value_is 'swarmnet_api_request_errors_total{client="cni",operation="endpoint_create",code="exhausted"}' 1
check "the full network has 0 addresses free" value_is 'swarmnet_ipam_addresses_free{network="tiny"}' 0

say "DNS answers by RCODE"
before_nx=$(value 'swarmnet_dns_answers_total{rcode="NXDOMAIN"}')
ip netns exec "$(container_ns c1)" dig +short +tries=1 +time=2 @"$gw" no-such-name.metricsnet >/dev/null || true
check "an unknown name is counted as an NXDOMAIN answer" \
  value_is 'swarmnet_dns_answers_total{rcode="NXDOMAIN"}' "$((before_nx + 1))"

say "promtool check metrics on a real scrape"
scrape >"$CLUSTER_DIR/scrape.txt"
info "$(wc -l <"$CLUSTER_DIR/scrape.txt") lines, $(grep -c '^# TYPE' "$CLUSTER_DIR/scrape.txt") families;" \
  "a scrape: $(ip netns exec "$(host_ns 1)" curl -so /dev/null -w '%{size_download} bytes in %{time_total} s' \
    "http://127.0.0.1:$METRICS_PORT/metrics"), load $(cut -d' ' -f1-3 /proc/loadavg)"
if promtool check metrics <"$CLUSTER_DIR/scrape.txt" >"$CLUSTER_DIR/promtool.txt" 2>&1; then
  pass "promtool check metrics: no problem"
else
  fail "promtool check metrics: $(cat "$CLUSTER_DIR/promtool.txt")"
fi
check "every metric is prefixed swarmnet_" \
  bash -c "! grep -v '^#' '$CLUSTER_DIR/scrape.txt' | grep -v '^swarmnet_'"

say "a real Prometheus scrapes host 1 and answers a query"
prom_dir="$CLUSTER_DIR/prometheus"
mkdir -p "$prom_dir/data"
cat >"$prom_dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: swarmnet
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
YAML
ip netns exec "$(host_ns 1)" prometheus --config.file="$prom_dir/prometheus.yml" \
  --storage.tsdb.path="$prom_dir/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
  >"$prom_dir/log" 2>&1 </dev/null {_SWARMNET_STDOUT}>&- {_SWARMNET_STDERR}>&- &
prom_pid=$!
on_exit "kill_pid $prom_pid prometheus"
prom_alive_members() {
  ip netns exec "$(host_ns 1)" curl -sf --max-time 2 "http://127.0.0.1:$PROM_PORT/api/v1/query" \
    --data-urlencode 'query=swarmnet_gossip_members{state="alive",job="swarmnet"}' |
    jq -e '.data.result[0].value[1] == "2"' >/dev/null
}
if wait_for 40 prom_alive_members; then
  pass "Prometheus answers swarmnet_gossip_members{state=\"alive\"} = 2 from its own scrapes"
else
  fail "Prometheus never had swarmnet_gossip_members{state=\"alive\"} = 2"
  tail -5 "$prom_dir/log" >&2
fi
kill_pid "$prom_pid" prometheus

say "the metrics port is closed to containers, whatever the address"
# connect_from NS ADDRESS PORT: a TCP connect within 2 s.
connect_from() {
  ip netns exec "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}
host=$(host_ns 1)
cns=$(container_ns c1)
check "control: host 1 itself connects to the metrics port at the gateway address" \
  connect_from "$host" "$gw" "$METRICS_PORT"
check "control: host 1 itself connects to it at its underlay address" \
  connect_from "$host" "$(host_ip 1)" "$METRICS_PORT"
check "control: the container connects to another listener of the host (DNS over TCP at the gateway)" \
  connect_from "$cns" "$gw" 53
if connect_from "$cns" "$gw" "$METRICS_PORT"; then
  fail "the container connected to the metrics port at its gateway"
else
  pass "the container cannot connect to the metrics port at its gateway"
fi
if connect_from "$cns" "$(host_ip 1)" "$METRICS_PORT"; then
  fail "the container connected to the metrics port at the host's underlay address"
else
  pass "the container cannot connect to the metrics port at the host's underlay address"
fi
if connect_from "$cns" "$(host_ip 2)" "$METRICS_PORT"; then
  fail "the container connected to host 2's metrics port"
else
  pass "the container cannot connect to host 2's metrics port (a member's address)"
fi
check "control: host 1 connects to host 2's metrics port" connect_from "$host" "$(host_ip 2)" "$METRICS_PORT"

exit "$(failures)"
