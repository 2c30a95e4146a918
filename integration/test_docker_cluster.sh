#!/usr/bin/env bash
# Docker on several hosts, and Docker next to containerd, on one swarmnet
# network. A 2-host cluster; the network `shared` is created once with
# swarmnetctl on host 2; on host 1 and host 2 a dockerd of our own maps a
# Docker network onto it with the one documented command
#   docker network create -d swarmnet --ipam-driver swarmnet --ipam-opt swarmnet.network=shared shared
# Then: a Docker container on host 1 and one on host 2 ping each other over
# VXLAN; a real containerd container (`ctr run --cni` in host 2's namespace,
# the swarmnet CNI plugin) and the Docker container on host 1 ping each other;
# every host sees every endpoint; removing the Docker side leaves no endpoint,
# link or network of Docker's behind, and swarmnet's network stays.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/containerd.sh"
source "$HERE/lib/cni.sh"
source "$HERE/lib/cluster.sh"
source "$HERE/lib/docker.sh"
require_root
watchdog 540
for b in swarmnet swarmnet-docker swarmnetctl; do need_bin "$b" >/dev/null; done
command -v dockerd >/dev/null || die "dockerd missing (apt-get install docker.io)"

NET=shared
CLUSTER_TAG="swdc$$"
CLUSTER_CNI_NETWORK="$NET"
CT="${CLUSTER_TAG}-ctr"
SWARMNET_RUN_DIR=$(mktemp -d /tmp/swarmnet-ctr.XXXXXX)
on_exit 'rm -rf "$SWARMNET_RUN_DIR"'

cni_take_over
install -m 0755 "$(need_bin swarmnet)" "$CNI_BIN_DIR/swarmnet"   # ctr searches /opt/cni/bin
containerd_ensure
busybox_image_ensure
cluster_up 2

ctr_del() {
  local i="$1" id="$2" pid netns=""
  pid=$(ctr_task_pid "$id")
  [[ -n "$pid" && "$pid" != 0 ]] && netns="/proc/$pid/ns/net"
  cni_conflist_del "/etc/netns/$(host_ns "$i")/cni/net.d/10-swarmnet.conflist" "$(ctr_cni_id "$id")" \
    "$netns" eth0 "$(host_ns "$i")"
  ctr_remove "$id"
}
on_exit 'ctr_has container "$CT" && ctr_del 2 "$CT"; true'

say "swarmnet network $NET, created once on host 2"
hctl 2 network create "$NET" --subnet 10.94.0.0/24 >/dev/null
knows() { hctl "$1" network inspect "$2" >/dev/null 2>&1; }
check "host 1 knows $NET" wait_for 10 knows 1 "$NET"

docker_env_up 1
docker_env_up 2
dk_quiet() { dk "$@" >/dev/null; }
for i in 1 2; do
  check "host $i: docker network create ... --ipam-opt swarmnet.network=$NET $NET" \
    dk_quiet "$i" network create -d swarmnet --ipam-driver swarmnet --ipam-opt "swarmnet.network=$NET" "$NET"
done

say "a Docker container on each host"
# --dns: Docker's embedded DNS (127.0.0.11) forwards what it does not know
# to swarmnetd's DNS at the network's gateway.
GW=10.94.0.1
dk 1 run -d --name d1 --dns "$GW" --label swarmnet.service=front --network "$NET" "$DOCKER_TEST_IMAGE" sleep 100000 >/dev/null
dk 2 run -d --name d2 --network "$NET" "$DOCKER_TEST_IMAGE" sleep 100000 >/dev/null
a1=$(docker_ip 1 d1 "$NET"); a2=$(docker_ip 2 d2 "$NET")
info "d1 (host 1) $a1, d2 (host 2) $a2"
dping() { local i="$1" c="$2"; shift 2; dk "$i" exec "$c" ping -c 2 -W 2 "$@" >/dev/null 2>&1; }
check "d1 (Docker, host 1) pings d2 (Docker, host 2)" wait_for 15 dping 1 d1 "$a2"
check "d2 pings d1" dping 2 d2 "$a1"

say "a containerd container on host 2 (ctr run --cni, the swarmnet CNI plugin)"
ctr_run_detached "$CT" "$(host_ns 2)" >/dev/null
act=$(ctr_exec "$CT" ip -4 -o addr show dev eth0 | awk '{split($4, a, "/"); print a[1]; exit}')
info "$CT (containerd, host 2) $act"
check "the containerd container's address is in $NET" test "${act%.*}" = 10.94.0
check "d1 (Docker, host 1) pings the containerd container on host 2" wait_for 15 dping 1 d1 "$act"
check "the containerd container pings d1 (Docker, host 1)" ctr_exec "$CT" ping -c 2 -W 2 "$a1"
eps_of() { hctl "$1" endpoint ls "$NET" --format json | jq -r '.[] | select(.address) | .address | split("/")[0]' | sort | tr '\n' ' '; }
eps_is() { [[ "$(eps_of "$1")" == "$2" ]]; }
want=$(printf '%s\n' "$a1" "$a2" "$act" | sort | tr '\n' ' ')
say "names across engines (swarmnetd's DNS at $GW)"
# ctr's CNI container id is NAMESPACE-ID, which is the containerd side's name.
ctr_name="$(ctr_cni_id "$CT")"
resolves() { dk 1 exec d1 nslookup "$1" 2>/dev/null | grep -q "Address: $2\$"; }
check "d1 (Docker) resolves the containerd container's name $ctr_name to $act" wait_for 15 resolves "$ctr_name" "$act"
ctr_resolves() { ctr_exec "$CT" nslookup "$1" "$GW" 2>/dev/null | grep -q "Address: $2\$"; }
check "the containerd container resolves d1 (Docker's container name) to $a1" wait_for 15 ctr_resolves d1 "$a1"
svc_of() { hctl 1 endpoint ls "$NET" --format json | jq -r --arg a "$a1/24" '.[] | select(.address == $a) | .service'; }
svc_is() { [[ "$(svc_of)" == "$1" ]]; }
check "d1's label swarmnet.service=front makes it a task of front" wait_for 10 svc_is front
for i in 1 2; do check "host $i lists the three endpoints ($want)" wait_for 10 eps_is "$i" "$want"; done

say "the Docker side goes; swarmnet's network and the containerd container stay"
for i in 1 2; do dk "$i" rm -f "d$i" >/dev/null; dk "$i" network rm "$NET" >/dev/null; done
check "$NET still exists (it was not made by Docker)" knows 1 "$NET"
for i in 1 2; do
  # eps_is asks anew each time: "$(eps_of)" as wait_for's argument was read
  # once, so the wait never saw host 2's deletions arrive by gossip (a flake).
  check "host $i lists only the containerd endpoint" wait_for 10 eps_is "$i" "$act " ||
    info "host $i lists: $(eps_of "$i")"
  check "host $i has no Docker veth left" test "$(docker_links_left "$i")" = "$([[ $i == 2 ]] && echo 1 || echo 0)"
done

(($(failures) == 0)) || die "$(failures) check(s) failed"
pass "test_docker_cluster"
