#!/usr/bin/env bash
# Kernel end-to-end test of the daemon following its Node's zone label on an apiserver, with real traffic, in
# throwaway network namespaces only (run as root). Issue #18: "a daemon test against the test apiserver that
# changes the zone label and sees traffic move".
#
#   Tests/kernel/apiserver-topology.sh [path/to/kube-natd] [path/to/fake-apiserver]    BACKEND=libnftnl for nf_tables
#
# fake-apiserver (Tools/fake-apiserver) runs in the node namespace of lib/topology.sh and serves:
#   Node node-1 (the daemon's hostnameOverride), labelled topology.kubernetes.io/zone=zone-a
#   Service zonal 10.96.0.50:80 whose EndpointSlice hints pod-a, pod-b for zone-a and pod-remote, pod-dns for zone-b
# The long-running daemon programs the node namespace; the client's connections to the ClusterIP must reach only
# zone-a's pods. The Node's label is then changed to zone-b through the control API (only zone-b's pods answer), and
# removed (all four answer). Each step waits for the sync the Node change caused (the daemon's "synced" log line
# after the update; syncPeriod is 60 s so no periodic sync comes in between). Finally the requests fake-apiserver
# recorded show that the first lists asked the watch cache (resourceVersion=0) and that the Node was listed and
# watched by name (fieldSelector=metadata.name=node-1).
# Everything it creates (namespaces, processes, files) goes on exit, Ctrl-C or failure.
set -uo pipefail
KUBE_NATD=$(readlink -f "${1:-.build/debug/kube-natd}")
FAKE=$(readlink -f "${2:-$(dirname "$KUBE_NATD")/fake-apiserver}")
BACKEND=${BACKEND:-libiptc}
SUITE=apiserver-topology
[ "$BACKEND" = libnftnl ] && SUITE=apiserver-topology-nft
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$KUBE_NATD" ] || { echo "$SUITE: $KUBE_NATD not found (swift build first)"; exit 2; }
[ -x "$FAKE" ] || { echo "$SUITE: $FAKE not found (swift build --product fake-apiserver)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$SUITE: needs root (network namespaces)"; exit 2; }
STARTED=$(date +%s)
PORT=6443
API="http://127.0.0.1:$PORT"

# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
TMP=$(mktemp -d /tmp/knat-apiserver-topology.XXXXXX)
FAKE_PID=""
NATD_PID=""
stop() { # stop PID: SIGTERM, a bounded wait, then SIGKILL
    [ -n "$1" ] || return 0
    kill "$1" 2> /dev/null
    timeout 5 tail --pid="$1" -f /dev/null 2> /dev/null || kill -9 "$1" 2> /dev/null
}
cleanup() {
    stop "$NATD_PID"; NATD_PID=""
    stop "$FAKE_PID"; FAKE_PID=""
    topo_teardown
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"   # ok/bad/check/need/skip/summary; wait_for TENTHS COMMAND...

# --- the fake apiserver and its objects ------------------------------------------------------------------
put() { # put JSON: creates or replaces one object through the control API
    printf '%s\n' "$1" > "$TMP/object.json"
    local code
    code=$(topo_in node timeout 5 curl -sS -o /dev/null -w '%{http_code}' -X PUT --data-binary "@$TMP/object.json" \
        "$API/control/objects" 2> "$TMP/curl.err")
    [ "$code" = 200 ] || { echo "     PUT: HTTP $code $(cat "$TMP/curl.err")"; return 1; }
}
node_json() { # node_json ZONE: this node's Node in ZONE ("" for no zone label)
    local labels='"kubernetes.io/hostname":"node-1"'
    [ -n "$1" ] && labels="$labels,\"topology.kubernetes.io/zone\":\"$1\""
    printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1","labels":{%s}},"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24"]},"status":{"addresses":[{"type":"InternalIP","address":"192.168.10.1"},{"type":"Hostname","address":"node-1"}]}}' "$labels"
}
SERVICE_JSON='{"apiVersion":"v1","kind":"Service","metadata":{"name":"zonal","namespace":"e2e"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.50","clusterIPs":["10.96.0.50"],"ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","trafficDistribution":"PreferClose","ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}}'
endpoint() { # endpoint IP NODE ZONE
    printf '{"addresses":["%s"],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"%s","zone":"%s","hints":{"forZones":[{"name":"%s"}]}}' \
        "$1" "$2" "$3" "$3"
}
SLICE_JSON=$(printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"zonal-abcde","namespace":"e2e","labels":{"kubernetes.io/service-name":"zonal","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},"addressType":"IPv4","endpoints":[%s,%s,%s,%s],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}' \
    "$(endpoint 10.244.1.10 node-1 zone-a)" "$(endpoint 10.244.1.11 node-1 zone-a)" \
    "$(endpoint 10.244.2.10 node-2 zone-b)" "$(endpoint 10.244.1.12 node-3 zone-b)")

# --- traffic ---------------------------------------------------------------------------------------------
probe() { # probe COUNT: COUNT TCP attempts from the client to the ClusterIP, one line each
    timeout 30 ip netns exec "$(topo_ns client)" python3 "$HERE/lib/probe.py" tcp 10.96.0.50 80 "$1" 0.5 \
        | sed 's/ ms=[0-9]*$//'
}
LAST=""
# answered_only POD...: every attempt answered by one of these pods, each of them seen, after at least 30 attempts.
# Tries go on ten at a time (at most 100) until every wanted pod answered; an unanswered attempt or an answer from
# another pod fails at once. At least 30 attempts, so that with all four pods reachable (the behaviour broken) a
# pass would need 30 draws from the wanted half: probability 2^-30.
answered_only() {
    local want=" $* " got="" batch seen pod i n=0
    for i in 1 2 3 4 5 6 7 8 9 10; do
        batch=$(probe 10)
        got="$got$batch"$'\n'
        n=$((n + 10))
        LAST="$(echo "$got" | grep -v '^$' | awk '{print $1}' | sort | uniq -c | sed 's/^ *//' | tr '\n' ';')"
        if [ -z "$batch" ] || echo "$batch" | grep -qv '^pod-'; then return 1; fi
        seen=$(echo "$got" | awk '/^pod-/ {print $1}' | sort -u)
        for pod in $seen; do case "$want" in *" $pod "*) ;; *) return 1 ;; esac; done
        local all=1
        for pod in $want; do echo "$seen" | grep -qx "$pod" || all=0; done
        [ "$all" = 1 ] && [ "$n" -ge 30 ] && return 0
    done
    return 1
}

# --- the daemon's syncs ----------------------------------------------------------------------------------
# synced_after LINE: the daemon logged a sync of IPv4 after line LINE of its log that re-derived a Service.
synced_after() { tail -n +"$(($1 + 1))" "$TMP/natd.log" 2> /dev/null | grep -q 'synced IPv4 .* [1-9][0-9]* re-derived'; }
# relabel ZONE: the Node gets ZONE ("" removes the label) on the apiserver; waits (at most 20 s) for the sync.
relabel() {
    local l; l=$(wc -l < "$TMP/natd.log")
    put "$(node_json "$1")" || return 1
    wait_for 200 synced_after "$l" && return 0
    echo "     no sync re-deriving a Service after the Node update; the daemon's log since:"
    tail -n +"$((l + 1))" "$TMP/natd.log" | tail -10 | cut -c1-240 | sed 's/^/     /'
    return 1
}

# --- topology, apiserver, daemon -------------------------------------------------------------------------
topo_setup "knat-zone-$$-" || exit 2
topo_start_servers 150 || exit 2
echo "topology up; backend $BACKEND"

cat > "$TMP/config.yaml" << YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: node-1
clusterCIDR: 10.244.0.0/16
detectLocalMode: ClusterCIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: $TMP/kubeconfig
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  localhostNodePorts: true
  syncPeriod: 60s
  minSyncPeriod: 0s
YAML
cat > "$TMP/kubeconfig" << EOF2
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $API
contexts:
- name: e2e
  context:
    cluster: e2e
    user: e2e
current-context: e2e
users:
- name: e2e
  user: {}
EOF2

# Not through topo_in: a shell function in the background is a subshell, and $! would be that subshell.
ip netns exec "$(topo_ns node)" timeout 150 "$FAKE" --listen "127.0.0.1:$PORT" --start-resource-version 1 \
    > "$TMP/fake.log" 2>&1 &
FAKE_PID=$!
listening() { kill -0 "$FAKE_PID" 2> /dev/null && grep -q "listening on 127.0.0.1:$PORT" "$TMP/fake.log" 2> /dev/null; }
need "fake-apiserver listening" wait_for 100 listening || { tail -5 "$TMP/fake.log"; summary "$SUITE"; exit 1; }
objects() { put "$(node_json zone-a)" && put "$SERVICE_JSON" && put "$SLICE_JSON"; }
need "Node node-1 in zone-a, Service e2e/zonal and its hinted slice on the apiserver" objects || { summary "$SUITE"; exit 1; }

ip netns exec "$(topo_ns node)" timeout 150 "$KUBE_NATD" --config "$TMP/config.yaml" --backend "$BACKEND" \
    > "$TMP/natd.log" 2>&1 &
NATD_PID=$!
first_sync() { synced_after 0; }
if ! need "kube-natd --backend $BACKEND synced from $API" wait_for 300 first_sync; then
    tail -30 "$TMP/natd.log" | cut -c1-240 | sed 's/^/     /'; summary "$SUITE"; exit 1
fi

# --- traffic follows the zone label ----------------------------------------------------------------------
zone_a() { answered_only pod-a pod-b || { echo "     answers: $LAST"; return 1; }; }
check "Node in zone-a: ClusterIP 10.96.0.50 answered only by zone-a's pod-a and pod-b" zone_a

check "Node relabelled zone-b on the apiserver: the daemon syncs" relabel zone-b
zone_b() { answered_only pod-remote pod-dns || { echo "     answers: $LAST"; return 1; }; }
check "Node in zone-b: ClusterIP 10.96.0.50 answered only by zone-b's pod-remote and pod-dns" zone_b

check "Node's zone label removed on the apiserver: the daemon syncs" relabel ""
no_zone() { answered_only pod-a pod-b pod-remote pod-dns || { echo "     answers: $LAST"; return 1; }; }
check "Node without a zone: ClusterIP 10.96.0.50 answered by all four pods" no_zone

# --- what the daemon asked the apiserver -----------------------------------------------------------------
topo_in node timeout 5 curl -sf "$API/control/requests" > "$TMP/requests.json"
requests() { # requests CHECK: python over the recorded requests (items: path, query, watch), in order
    python3 - "$TMP/requests.json" "$1" << 'PY'
import json, sys
items = json.load(open(sys.argv[1]))["items"]
check = sys.argv[2]
paths = {"Service": "/api/v1/services", "EndpointSlice": "/apis/discovery.k8s.io/v1/endpointslices",
         "Node": "/api/v1/nodes"}
node_sel = "metadata.name=node-1"
bad = []
if check == "first-lists":
    for kind, path in paths.items():
        lists = [r for r in items if r["path"] == path and not r["watch"]]
        if not lists:
            bad.append(f"{kind}: never listed")
        elif lists[0]["query"].get("resourceVersion") != "0":
            bad.append(f"{kind}: first list asked {lists[0]['query']}")
elif check == "node-by-name":
    nodes = [r for r in items if r["path"] == paths["Node"]]
    watches = [r for r in nodes if r["watch"]]
    if not watches:
        bad.append("the Node was never watched")
    bad += [f"Node {'watch' if r['watch'] else 'list'} without the name: {r['query']}"
            for r in nodes if r["query"].get("fieldSelector") != node_sel]
if bad:
    print("     " + "\n     ".join(bad)); sys.exit(1)
PY
}
check "fake-apiserver recorded the first list of Services, EndpointSlices and the Node from resourceVersion=0" \
    requests first-lists
check "fake-apiserver recorded the Node listed and watched with fieldSelector=metadata.name=node-1 only" \
    requests node-by-name

if ! kill -0 "$NATD_PID" 2> /dev/null; then bad "kube-natd exited during the test"; fi
if [ "$FAIL" -gt 0 ]; then
    echo "--- kube-natd log (last 30 lines)"; tail -30 "$TMP/natd.log" | cut -c1-300
fi
echo "($(($(date +%s) - STARTED)) s)"
summary "$SUITE"
[ "$FAIL" = 0 ]
