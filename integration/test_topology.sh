#!/usr/bin/env bash
# swarmnetctl topology on a 3-host cluster: 2 networks, 2 services (one
# published on the routing mesh, one in host mode), tasks on every host and
# a plain container. The SVG, drawn through Graphviz from host 2's view of
# the cluster, names every node, network and service, and shows each task
# in its own node's box (a task of another node in that box would fail the
# test: the control is the same check on the right box). --format dot and
# -o FILE are checked too.
set -euo pipefail
case "${1:-}" in
  -h | --help) echo "usage: integration/test_topology.sh   (root; build first)"; exit 0 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/cluster.sh"
require_root
for tool in dot jq python3; do command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"; done
watchdog 120

cluster_up 3
hctl 1 network create front --subnet 10.246.0.0/24 >/dev/null
hctl 1 network create back --subnet 10.246.1.0/24 >/dev/null
for i in 2 3; do
  for n in front back; do wait_for 10 hctl "$i" network inspect "$n" || die "host $i lacks $n"; done
done
hctl 1 service create web --network front --port 80/tcp --publish 8080:80 >/dev/null
hctl 1 service create api --network back --publish mode=host,9090:90 >/dev/null
for i in 1 2 3; do CNI_ARGS=SWARMNET_SERVICE=web container_add "$i" "w$i" front >/dev/null; done
for i in 2 3; do CNI_ARGS=SWARMNET_SERVICE=api container_add "$i" "a$i" back >/dev/null; done
container_add 1 plain back >/dev/null

tasks_seen() { [[ "$(hctl 2 service ls --format json | jq -cS '[.[] | {(.name): .task_count}] | add')" == '{"api":2,"web":3}' ]]; }
wait_for 15 tasks_seen || die "host 2 does not see the 5 tasks: $(hctl 2 service ls --format json)"
plain_seen() { hctl 2 endpoint ls back --format json | jq -e 'any(.[]; .container_id == "plain")'; }
wait_for 15 plain_seen || die "host 2 does not see the plain container"

say "swarmnetctl topology (SVG) from host 2"
SVG="$CLUSTER_DIR/topology.svg"
start=$SECONDS
hctl 2 topology -o "$SVG"
info "drawn in $((SECONDS - start)) s, $(wc -c <"$SVG") bytes"

# The texts of the SVG, and those of each node's box (dot's <g class="node">
# whose first text line is the node's name), as JSON.
texts=$(python3 - "$SVG" <<'PY'
import json, sys, xml.etree.ElementTree as ET
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
every = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
boxes = {}
for g in root.iter("{http://www.w3.org/2000/svg}g"):
    if g.get("class") != "node":
        continue
    lines = [t.text or "" for t in g.iter("{http://www.w3.org/2000/svg}text")]
    if lines:
        boxes[lines[0]] = lines
print(json.dumps({"all": every, "boxes": boxes}))
PY
) || die "the SVG is not well-formed XML with an <svg> root"
pass "the SVG is well-formed, its root is <svg>"

has_text() { jq -e --arg t "$1" 'any(.all[]; . == $t)' <<<"$texts" >/dev/null; }
box_has() { jq -e --arg b "$1" --arg t "$2" 'any(.boxes[$b][]?; . == $t)' <<<"$texts" >/dev/null; }
box_lacks() { ! box_has "$@"; }
for name in host1 host2 host3 front back ingress web api; do
  check "the SVG names $name" has_text "$name"
done
check "the routing mesh's port is on web" has_text "*:8080→80/tcp (every node)"
check "the host-mode port is on api" has_text "host:9090→90/tcp"
for i in 1 2 3; do check "w$i is drawn in host$i's box" box_has "host$i" "w$i"; done
check "a2 is drawn in host2's box" box_has host2 a2
check "a3 is drawn in host3's box" box_has host3 a3
check "plain is drawn in host1's box" box_has host1 plain
check "w1 is not drawn in host2's box (control: it is in host1's, above)" box_lacks host2 w1
check "a2 is not drawn in host3's box (control: it is in host2's, above)" box_lacks host3 a2

say "--format dot prints the Graphviz text, which dot renders"
hctl 2 topology --format dot >"$CLUSTER_DIR/topology.dot"
check "the DOT text is a digraph" grep -q '^digraph swarmnet {' "$CLUSTER_DIR/topology.dot"
check "dot renders it without a warning" bash -c 'dot -Tsvg "$1" 2>&1 >/dev/null | grep -c . | grep -qx 0' _ "$CLUSTER_DIR/topology.dot"
check "an unwritable output file is an error" bash -c '! "$@" 2>/dev/null' _ \
  "$SWARMNET_BIN_DIR/swarmnetctl" --socket "$(host_sock 2)" topology -o /nonexistent/dir/t.svg

if [[ -n "${TOPOLOGY_KEEP:-}" ]]; then cp "$SVG" "$TOPOLOGY_KEEP"; info "kept the SVG as $TOPOLOGY_KEEP"; fi
n=$(failures)
((n == 0)) || die "$n check(s) failed"
say "topology: all checks passed"
