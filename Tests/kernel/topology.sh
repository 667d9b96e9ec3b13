#!/usr/bin/env bash
# Kernel test of topology-aware routing with real traffic, in throwaway network namespaces only (run as root).
#
#   Tests/kernel/topology.sh [path/to/kube-natd]          BACKEND=libnftnl for the nf_tables backend
#
# Builds the topology of lib/topology.sh and programs the node namespace with `kube-natd --once --source FILE`,
# where FILE holds this node's Node (node-1, as Config/kube-proxy-config.yaml's hostnameOverride names it) with a
# `topology.kubernetes.io/zone` label, and Services whose EndpointSlices carry topology hints:
#
#   zonal   10.96.0.50:80  pod-a, pod-b hinted for zone-a; pod-remote, pod-dns hinted for zone-b
#   nodal   10.96.0.51:80  pod-a hinted for node node-1 (zone-a), pod-remote for node-2 and pod-dns for node-3 (zone-b)
#   plain   10.96.0.52:80  the same four pods, no hints (the control: every pod is reachable)
#
# Then asserts with TCP connections from the client that the ClusterIP reaches only the endpoints hinted for the
# Node's zone (or this node), changes the Node's zone in the manifest, runs --once again and sees the traffic move.
# Everything it creates goes on exit, Ctrl-C or failure.
set -uo pipefail
KUBE_NATD=$(readlink -f "${1:-.build/debug/kube-natd}")
BACKEND=${BACKEND:-libiptc}
SUITE=topology
[ "$BACKEND" = libnftnl ] && SUITE=topology-nft
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONFIG="$ROOT/Config/kube-proxy-config.yaml"
[ -x "$KUBE_NATD" ] || { echo "$SUITE: $KUBE_NATD not found (swift build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$SUITE: needs root (network namespaces)"; exit 2; }
STARTED=$(date +%s)

# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
TMP=$(mktemp -d /tmp/knat-topology.XXXXXX)
cleanup() { topo_teardown; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"

probe() { # probe NS PROTO HOST PORT [COUNT] [TIMEOUT]
    local ns=$1; shift
    timeout 60 ip netns exec "$(topo_ns "$ns")" python3 "$HERE/lib/probe.py" "$@"
}
answers() { sed 's/ ms=[0-9]*$//' "$1"; }
show() { echo "     got: $(answers "$1" | sort | uniq -c | sed 's/^ *//' | tr '\n' ';' | head -c 300)"; }
# only_from FILE POD...: every attempt was answered, by one of the pods, and each of them answered at least once.
only_from() {
    local file=$1 pod re; shift
    re=$(echo "$*" | tr ' ' '|')
    if [ ! -s "$file" ] || answers "$file" | grep -qvE "^($re) "; then show "$file"; return 1; fi
    for pod in "$@"; do
        answers "$file" | grep -q "^$pod " || { echo "     never answered by $pod"; show "$file"; return 1; }
    done
}

# write_cluster ZONE: the manifest, with this node's Node in ZONE ("" for a Node without the zone label).
write_cluster() {
    local labels="{kubernetes.io/hostname: node-1}"
    [ -n "$1" ] && labels="{kubernetes.io/hostname: node-1, topology.kubernetes.io/zone: $1}"
    cat > "$TMP/cluster.yaml" << EOF
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: $labels}
status: {addresses: [{type: InternalIP, address: 192.168.10.1}]}
---
apiVersion: v1
kind: Service
metadata: {name: zonal, namespace: default}
spec:
  clusterIP: 10.96.0.50
  trafficDistribution: PreferClose
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: zonal-1, namespace: default, labels: {kubernetes.io/service-name: zonal}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.10], conditions: {ready: true}, nodeName: node-1, zone: zone-a, hints: {forZones: [{name: zone-a}]}}
- {addresses: [10.244.1.11], conditions: {ready: true}, nodeName: node-1, zone: zone-a, hints: {forZones: [{name: zone-a}]}}
- {addresses: [10.244.2.10], conditions: {ready: true}, nodeName: node-2, zone: zone-b, hints: {forZones: [{name: zone-b}]}}
- {addresses: [10.244.1.12], conditions: {ready: true}, nodeName: node-3, zone: zone-b, hints: {forZones: [{name: zone-b}]}}
---
apiVersion: v1
kind: Service
metadata: {name: nodal, namespace: default}
spec:
  clusterIP: 10.96.0.51
  trafficDistribution: PreferSameNode
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: nodal-1, namespace: default, labels: {kubernetes.io/service-name: nodal}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.10], conditions: {ready: true}, nodeName: node-1, zone: zone-a,
   hints: {forNodes: [{name: node-1}], forZones: [{name: zone-a}]}}
- {addresses: [10.244.2.10], conditions: {ready: true}, nodeName: node-2, zone: zone-b,
   hints: {forNodes: [{name: node-2}], forZones: [{name: zone-b}]}}
- {addresses: [10.244.1.12], conditions: {ready: true}, nodeName: node-3, zone: zone-b,
   hints: {forNodes: [{name: node-3}], forZones: [{name: zone-b}]}}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: default}
spec:
  clusterIP: 10.96.0.52
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: plain-1, namespace: default, labels: {kubernetes.io/service-name: plain}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.10], conditions: {ready: true}, nodeName: node-1}
- {addresses: [10.244.1.11], conditions: {ready: true}, nodeName: node-1}
- {addresses: [10.244.2.10], conditions: {ready: true}, nodeName: node-2}
- {addresses: [10.244.1.12], conditions: {ready: true}, nodeName: node-3}
EOF
}

# program ZONE: the manifest for ZONE, then one `--once` in the node namespace.
program() {
    write_cluster "$1"
    topo_in node "$KUBE_NATD" --config "$CONFIG" --source "$TMP/cluster.yaml" --once --backend "$BACKEND" \
        --ip-family ipv4 > "$TMP/once.log" 2>&1 || { sed 's/^/     /' "$TMP/once.log"; return 1; }
}

# --- topology -------------------------------------------------------------------------------------------
topo_setup "knat-$$-" || exit 2
topo_start_servers 150 || exit 2
echo "topology up; backend $BACKEND"

check "kube-natd --once --backend $BACKEND with Node node-1 in zone-a" program zone-a
probe client tcp 10.96.0.52 80 60 2 > "$TMP/plain"
check "control: the Service without hints reaches all four pods" \
    only_from "$TMP/plain" pod-a pod-b pod-remote pod-dns
probe client tcp 10.96.0.50 80 40 2 > "$TMP/zonal-a"
check "zone hints: node in zone-a -> ClusterIP 10.96.0.50 reaches only zone-a's pod-a and pod-b" \
    only_from "$TMP/zonal-a" pod-a pod-b
probe client tcp 10.96.0.51 80 20 2 > "$TMP/nodal-a"
check "node hints: ClusterIP 10.96.0.51 reaches only the endpoint hinted for node-1 (pod-a)" \
    only_from "$TMP/nodal-a" pod-a

check "the Node's zone changes to zone-b: --once again" program zone-b
probe client tcp 10.96.0.50 80 40 2 > "$TMP/zonal-b"
check "zone hints: node now in zone-b -> ClusterIP 10.96.0.50 reaches only zone-b's pod-remote and pod-dns" \
    only_from "$TMP/zonal-b" pod-remote pod-dns
probe client tcp 10.96.0.51 80 20 2 > "$TMP/nodal-b"
check "node hints win over zone hints: ClusterIP 10.96.0.51 still reaches only pod-a" \
    only_from "$TMP/nodal-b" pod-a

check "the Node loses its zone label: --once again" program ""
probe client tcp 10.96.0.50 80 60 2 > "$TMP/zonal-none"
check "no zone: hints name no zone of this node, ClusterIP 10.96.0.50 reaches all four pods" \
    only_from "$TMP/zonal-none" pod-a pod-b pod-remote pod-dns

echo "$SUITE: $PASS passed, $FAIL failed, 0 skipped ($(($(date +%s) - STARTED)) s)"
[ "$FAIL" = 0 ]
