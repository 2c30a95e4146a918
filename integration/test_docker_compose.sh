#!/usr/bin/env bash
# examples/docker-compose.yml with Debian's docker-compose against a dockerd
# of our own: `up` builds the swarmnet network and both containers, the
# client fetches from the web server by name (Docker's embedded DNS) and by
# the published port from outside the host, `down` leaves nothing behind.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/containerd.sh"
source "$HERE/lib/cluster.sh"
source "$HERE/lib/docker.sh"
require_root
watchdog 400
need_bin swarmnet-docker >/dev/null
command -v docker-compose >/dev/null || die "docker-compose missing (apt-get install docker-compose)"

CLUSTER_TAG="swdm$$"
containerd_ensure
cluster_up 1
outside_up
docker_env_up 1
COMPOSE_FILE_PATH="$SWARMNET_SOURCE_DIR/examples/docker-compose.yml"
compose() {
  DOCKER_HOST="$(docker_host 1)" SWARMNET_EXAMPLE_IMAGE="$DOCKER_TEST_IMAGE" \
    timeout 180 docker-compose -p swdemo -f "$COMPOSE_FILE_PATH" "$@"
}
on_exit 'compose down >/dev/null 2>&1 || true'

say "docker-compose up -d"
check "compose up" compose up -d
check "network swdemo_front uses the swarmnet driver" \
  test "$(dk 1 network inspect -f '{{.Driver}}/{{.IPAM.Driver}}' swdemo_front)" = swarmnet/swarmnet
# nc, not wget: busybox-static's wget crashes (static glibc without NSS).
fetch_by_name() { compose exec -T client sh -c 'printf "GET /passwd HTTP/1.0\r\n\r\n" | nc -w 3 web 80' | grep -q root:x; }
check "client fetches http://web/ by name" wait_for 20 fetch_by_name
check "an outside machine fetches http://HOST:8080/" \
  bash -c "ip netns exec $(outside_ns) curl -sf -m 5 http://$(host_ip 1):8080/passwd | grep -q root:x"

say "docker-compose down"
check "compose down" compose down
check "no swarmnet network left but the routing mesh's" test "$(hctl 1 network ls --format json | jq -c "[.[].name]")" = '["ingress"]'
check "no veth left" test "$(docker_links_left 1)" = 0
check "no published-port rule left" test "$(published_rules 1 published-dnat)" = 0

(($(failures) == 0)) || die "$(failures) check(s) failed"
pass "test_docker_compose"
