#!/usr/bin/env bash
# `make demo`: kube-natd programs the bundled example cluster on "node-1", inside network namespaces this
# script creates (never the host's), and real requests show which pod answers each Service.
#
#   bash Config/demo.sh [path/to/kube-natd]      (as root)
#
# Everything it creates (namespaces, the pods' servers) is removed when it ends, also on Ctrl-C or failure.
set -uo pipefail
KUBE_NATD=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
LIB="$ROOT/Tests/kernel/lib"
[ -x "$KUBE_NATD" ] || { echo "demo: $KUBE_NATD not found (run make build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "demo: needs root to create network namespaces"; exit 2; }

# shellcheck source=../Tests/kernel/lib/topology.sh
source "$LIB/topology.sh"
LOG=$(mktemp /tmp/knat-demo.XXXXXX)
finish() {
    local made=${#TOPO_NAMESPACES[@]}
    topo_teardown
    rm -f "$LOG"
    [ "$made" -gt 0 ] && echo "removed $made namespaces and the pods' servers"
}
trap finish EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }

step "creating the topology (namespaces knat-demo-$$-*)"
topo_setup "knat-demo-$$-" || exit 1
topo_start_servers 90 || exit 1
cat <<TOPOLOGY
   client  $TOPO_CLIENT_IP ──┐                             ┌── pod-a      ${TOPO_POD_IP[a]}, ${TOPO_POD_IP6[a]}
                          ├── node-1 $TOPO_NODE_IP ──────┼── pod-b      ${TOPO_POD_IP[b]}
   blocked $TOPO_BLOCKED_IP ──┘   (routes, holds the rules) ├── pod-dns    ${TOPO_POD_IP[dns]}
                                                        └── pod-remote ${TOPO_POD_IP[remote]} (node-2's pod)
   Every pod answers with its name and the source address it saw.
TOPOLOGY

# --backend auto: the backend this host would use (kube-proxy's wrapper-script decision: libiptc where the host's
# rules are legacy x_tables, nf_tables otherwise).
step "kube-natd --once --backend auto --ip-family dual (in node-1's namespace)"
topo_in node "$KUBE_NATD" --config "$ROOT/Config/kube-proxy-config.yaml" --source "$ROOT/Config/example-cluster.yaml" \
    --once --backend auto --ip-family dual > "$LOG" 2>&1
rc=$?
sed 's/^/   /' "$LOG"
LISTER=iptables-legacy
grep -q 'libiptc backend' "$LOG" || LISTER=iptables-nft
[ "$rc" = 0 ] || { echo "demo: kube-natd failed"; exit 1; }

# request FROM PROTO HOST PORT COUNT LABEL: one line per request, "who answered (its address), source it saw".
request() {
    local from=$1 proto=$2 host=$3 port=$4 count=$5 label=$6 line pod seen target="$3:$4/$2" address
    [[ $host == *:* ]] && target="[$host]:$port/$proto"
    printf '\n   %s\n' "$label"
    timeout 30 ip netns exec "$(topo_ns "$from")" python3 "$LIB/probe.py" "$proto" "$host" "$port" "$count" 1.5 2> /dev/null |
        while read -r pod seen _; do
            if [[ $pod == pod-* ]]; then
                address=${TOPO_POD_IP[${pod#pod-}]}
                [[ $host == *:* ]] && address=${TOPO_POD_IP6[${pod#pod-}]}
                line="answered by $pod ($address), which saw the source $seen"
            else
                line="no answer: $pod"
            fi
            printf '     %-8s %-22s -> %s\n' "$from" "$target" "$line"
        done
}

step "requests"
request client tcp 10.96.0.10 80 6 "ClusterIP default/web (3 endpoints, picked at random; the client is masqueraded)"
request pod-b tcp 10.96.0.10 80 3 "the same ClusterIP from a pod (no masquerade: the backend sees the pod)"
request client tcp "$TOPO_NODE_IP" 30080 4 "NodePort default/web-nodeport on node-1"
request client tcp 192.0.2.10 80 2 "LoadBalancer IP default/web-lb from the allowed range 192.168.10.0/24"
request blocked tcp 192.0.2.10 80 1 "LoadBalancer IP default/web-lb from outside its source range (dropped)"
request client tcp 192.0.2.11 80 2 "LoadBalancer IP default/web-local, externalTrafficPolicy Local (client address kept)"
request pod-a udp 10.96.0.53 53 1 "kube-system/kube-dns over UDP"
request client tcp fd00:96::22 80 1 "dual-stack ClusterIP default/dual over IPv6"

step "$LISTER -t nat -S KUBE-SERVICES (node-1)"
topo_in node "$LISTER" -t nat -S KUBE-SERVICES | sed 's/^/   /'
echo
