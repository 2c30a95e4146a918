#!/usr/bin/env bash
# swarmnet-docker with a real dockerd on one host (a host network namespace
# with its own swarmnetd): a user's whole flow, published ports, bad plugin
# calls, restarts of the plugin and of swarmnetd, and nothing left behind.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/containerd.sh"
source "$(dirname "$0")/lib/cluster.sh"
source "$(dirname "$0")/lib/docker.sh"
require_root
watchdog 540
need_bin swarmnet-docker >/dev/null
command -v dockerd >/dev/null || die "dockerd missing (apt-get install docker.io)"

CLUSTER_TAG="swdk$$"
containerd_ensure
cluster_up 1
outside_up
docker_env_up 1

ip_of() { docker_ip 1 "$1" "$2"; }
cexec() { local c="$1"; shift; dk 1 exec "$c" "$@" >/dev/null 2>&1; }
dk_quiet() { dk "$@" >/dev/null; }
reply_has() { jq -e "$2" <<<"$1" >/dev/null; }

say "docker network create -d swarmnet --ipam-driver swarmnet --subnet 10.93.0.0/24 web"
check "network created" dk_quiet 1 network create -d swarmnet --ipam-driver swarmnet --subnet 10.93.0.0/24 web
has_subnet() { hctl 1 network ls --format json | jq -e --arg s "$1" '.[] | select(.subnet == $s)' >/dev/null; }
check "swarmnetd knows the swarmnet network of subnet 10.93.0.0/24" has_subnet 10.93.0.0/24

say "two containers on it reach each other"
dk 1 run -d --name web1 --network web "$DOCKER_TEST_IMAGE" sleep 100000 >/dev/null
dk 1 run -d --name web2 --network web "$DOCKER_TEST_IMAGE" sleep 100000 >/dev/null
a1=$(ip_of web1 web); a2=$(ip_of web2 web)
info "web1 $a1, web2 $a2"
check "web1 has an address in 10.93.0.0/24" test "${a1%.*}" = 10.93.0
check "web1 pings web2" cexec web1 ping -c 2 -W 2 "$a2"
check "web2 pings web1" cexec web2 ping -c 2 -W 2 "$a1"
# shellcheck disable=SC2086
check "the container's MAC is swarmnetd's (derived from the address)" \
  test "$(dk 1 inspect -f '{{.NetworkSettings.Networks.web.MacAddress}}' web1)" = "$(printf '02:42:%02x:%02x:%02x:%02x' ${a1//./ })"
check "default route via the network's gateway" bash -c "docker -H $(docker_host 1) exec web1 ip route | grep -q 'default via 10.93.0.1'"

say "a second network: connect, isolation, disconnect"
dk 1 network create -d swarmnet --ipam-driver swarmnet --ipam-opt swarmnet.network=back back >/dev/null
dk 1 run -d --name back1 --network back "$DOCKER_TEST_IMAGE" sleep 100000 >/dev/null
b1=$(ip_of back1 back)
check "web1 cannot reach back1 (other network)" bash -c "! docker -H $(docker_host 1) exec web1 ping -c 1 -W 1 $b1 >/dev/null 2>&1"
dk 1 network connect back web1
check "after network connect, web1 reaches back1" cexec web1 ping -c 2 -W 2 "$b1"
dk 1 network disconnect back web1
check "after network disconnect, web1 has one interface again" \
  test "$(dk 1 exec web1 ip -o -4 addr show | grep -vc ' lo ')" = 1

say "-p 8080:80 publishes on the host's address"
dk 1 run -d --name srv -p 8080:80 --network web "$DOCKER_TEST_IMAGE" httpd -f -p 80 -h /etc >/dev/null
check "two published-port rules (DNAT + accept)" test "$(published_rules 1 published-dnat) $(published_rules 1 published)" = "1 1"
check "an outside machine fetches http://HOST:8080/ from the container" \
  bash -c "ip netns exec $(outside_ns) curl -sf -m 5 http://$(host_ip 1):8080/passwd | grep -q root:x"
check "publishing the same host port twice is refused" \
  bash -c "! docker -H $(docker_host 1) run -d --name srv2 -p 8080:80 --network web $DOCKER_TEST_IMAGE sleep 1 >/dev/null 2>&1"
dk 1 rm -f srv2 >/dev/null 2>&1 || true
dk 1 rm -f srv >/dev/null
check "docker rm -f removes the published-port rules" test "$(published_rules 1 published-dnat) $(published_rules 1 published)" = "0 0"

say "bad plugin calls: an error in Err/Error, nothing changed"
before=$(hctl 1 network inspect docker-10.93.0.0-24 | jq -c '.endpoints')
r=$(plugin_call 1 NetworkDriver.Join '{"NetworkID": 5')
check "malformed JSON: Err says invalid JSON ($r)" reply_has "$r" '.Err | test("invalid JSON")'
r=$(plugin_call 1 NetworkDriver.Join '{"NetworkID":"abc","EndpointID":"def","SandboxKey":"/x"}')
check "Join of an unknown network: Err names it ($r)" reply_has "$r" '.Err | test("unknown network abc")'
r=$(plugin_call 1 NetworkDriver.CreateEndpoint '{"NetworkID":"../../etc","EndpointID":"x"}')
check "a path as network id is refused ($r)" reply_has "$r" '.Err | test("not a Docker id")'
r=$(plugin_call 1 IpamDriver.ReleaseAddress '{"PoolID":"nope","Address":"10.93.0.9"}')
check "IPAM errors come in Error ($r)" reply_has "$r" '.Error | test("unknown pool")'
r=$(plugin_call 1 IpamDriver.RequestAddress '{"PoolID":"x","Address":"300.1.1.1"}')
check "a bad address is named ($r)" reply_has "$r" '.Error | test("300.1.1.1")'
netid=$(dk 1 network inspect -f '{{.Id}}' web)
r=$(plugin_call 1 NetworkDriver.DeleteEndpoint "{\"NetworkID\":\"$netid\",\"EndpointID\":\"0123456789ab\"}")
check "DeleteEndpoint of an unknown endpoint: Err ($r)" reply_has "$r" '.Err | test("unknown endpoint")'
r=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$(_docker_dir 1)/plugins/swarmnet.sock" -d '{}' http://p/Nope.Method)
check "an unknown method is 404 ($r)" test "$r" = 404
check "nothing changed in swarmnetd" test "$(hctl 1 network inspect docker-10.93.0.0-24 | jq -c '.endpoints')" = "$before"
check "web1 still reaches web2" cexec web1 ping -c 1 -W 2 "$a2"

say "restart swarmnet-docker while dockerd runs"
plugin_stop 1
plugin_start 1
check "after the plugin's restart, web1 still reaches web2" cexec web1 ping -c 1 -W 2 "$a2"
check "and Docker's next call succeeds (docker run)" dk_quiet 1 run -d --name web3 --network web "$DOCKER_TEST_IMAGE" sleep 100000
check "web3 reaches web1" cexec web3 ping -c 2 -W 2 "$a1"

say "restart swarmnetd while dockerd runs"
host_daemon_stop 1
host_daemon_start 1
check "after swarmnetd's restart, web1 still reaches web3" cexec web1 ping -c 1 -W 2 "$(ip_of web3 web)"
check "and Docker's next call succeeds (docker run)" dk_quiet 1 run -d --name web4 --network web "$DOCKER_TEST_IMAGE" sleep 100000
check "web4 reaches web2" cexec web4 ping -c 2 -W 2 "$a2"

say "docker rm -f, docker network rm: nothing left"
dk 1 rm -f web1 web2 web3 web4 back1 >/dev/null
check "docker network rm web back" dk_quiet 1 network rm web back
check "no swarmnet network left (both were made for Docker) but the routing mesh's" test "$(hctl 1 network ls --format json | jq -c "[.[].name]")" = '["ingress"]'
check "no veth left on the host" test "$(docker_links_left 1)" = 0
check "no published-port rule left" test "$(published_rules 1 published-dnat) $(published_rules 1 published)" = "0 0"
check "the plugin's state is empty" test -z "$(find "$(_docker_dir 1)/plugin-state" -type f)"
r=$(plugin_call 1 NetworkDriver.DeleteNetwork "{\"NetworkID\":\"$netid\"}")
check "a second DeleteNetwork: Err ($r)" reply_has "$r" '.Err | test("unknown network")'

(($(failures) == 0)) || die "$(failures) check(s) failed"
pass "test_docker_single"
