#!/usr/bin/env bash
# Kernel test of the node's own lifecycle, in throwaway network namespaces only (run as root).
#
#   Tests/kernel/node.sh [path/to/kube-natd]        (BACKEND=libnftnl: the nf_tables backend, suite node-nft)
#
# On the topology of lib/topology.sh (its node namespace has IPv4 and IPv6):
#   1. `--once` without --ip-family programs both families (traffic to the IPv6 ClusterIP answers), and the dry
#      run prints both;
#   2. kube-natd creates the nfacct objects itself (none exist in the fresh namespace), writes their matches, and
#      the kernel counts into them;
#   3. nodePortAddresses CIDRs are matched against the addresses the test brings up in the node namespace
#      (the input; kube-natd brings up nothing), by --once and by the daemon on a later sync;
#   4. the daemon: /healthz 503 with "nodeEligible": false while the manifests' Node is tainted
#      ToBeDeletedByClusterAutoscaler, 200 again when the taint goes; /livez 200 throughout; the nfacct metric.
# Part 4's health checks need the manifest source to read Node objects; a build without that reports them as
# skipped (counted and named), never as passed.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
BACKEND=${BACKEND:-libiptc}
FLAVOR=legacy
SUITE=node
[ "$BACKEND" = libnftnl ] && FLAVOR=nft SUITE=node-nft
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ -x "$BIN" ] || { echo "$SUITE: $BIN not found (swift build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$SUITE: needs root (network namespaces)"; exit 2; }

# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
TMP=$(mktemp -d /tmp/knat-node.XXXXXX)
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2> /dev/null && wait "$DAEMON_PID" 2> /dev/null
    topo_teardown; rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"
SKIP=0
skip() { SKIP=$((SKIP + 1)); echo "SKIP $*"; }

N() { timeout 20 ip netns exec "$(topo_ns node)" "$@"; } # a command in the node namespace
until_true() { # until_true TENTHS COMMAND...: retry every 0.1 s, at most TENTHS tries
    local n=$1 i; shift
    for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}
probe() { local ns=$1; shift; timeout 30 ip netns exec "$(topo_ns "$ns")" python3 "$HERE/lib/probe.py" "$@" 2> /dev/null; }
# answered_by NS HOST PORT POD: every one of 3 TCP attempts is answered by POD
answered_by() {
    local out; out=$(probe "$1" tcp "$2" "$3" 3 2 | sed 's/ ms=[0-9]*$//')
    [ -n "$out" ] && ! echo "$out" | grep -qv "^$4 " && return 0
    echo "     got: $(echo "$out" | tr '\n' ';' | head -c 200)"; return 1
}
not_answered() { ! probe "$1" tcp "$2" "$3" 1 1 | grep -q '^pod-'; }
counter() { N python3 "$HERE/lib/nfacct-get.py" "$1"; }
# The table saved to a file first: `grep -q` ending a pipeline from a large save turns the save's SIGPIPE into the
# result under pipefail.
save4() { N iptables-$FLAVOR-save -t "$1" > "$TMP/save" && cat "$TMP/save"; }
save6() { N ip6tables-$FLAVOR-save -t "$1" > "$TMP/save" && cat "$TMP/save"; }
# in_save SAVE TABLE REGEX: the saved table has a line matching REGEX (extended)
in_save() { $1 "$2" > "$TMP/table" && grep -qE -- "$3" "$TMP/table"; }

topo_setup "knat-nd-$$-" || exit 2
topo_start_servers 150 || exit 2
CLUSTER="$ROOT/Config/example-cluster.yaml"
sed -e 's/^\(\s*syncPeriod:\).*/\1 2s/' -e 's/^\(\s*minSyncPeriod:\).*/\1 200ms/' \
    -e 's/^healthzBindAddress:.*/healthzBindAddress: 127.0.0.1:10256/' \
    -e 's/^metricsBindAddress:.*/metricsBindAddress: 127.0.0.1:10249/' \
    "$ROOT/Config/kube-proxy-config.yaml" > "$TMP/config.yaml"

# --- 1. both families by default ---------------------------------------------------------------------------
fresh() { ! counter ct_state_invalid_dropped_pkts > /dev/null && ! counter localhost_nps_accepted_pkts > /dev/null; }
exists() { counter "$1" > /dev/null; }
check "fresh namespace: no nfacct objects before kube-natd runs" fresh
once() { N "$BIN" --config "$1" --source "$CLUSTER" --once --backend "$BACKEND" > "$TMP/once.log" 2>&1 || { sed 's/^/     /' "$TMP/once.log" | tail -5; return 1; }; }
check "--once without --ip-family succeeds" once "$TMP/config.yaml"
has4() { in_save save4 nat '^-A KUBE-SERVICES -d 10\.96\.0\.22/32 .*--dport 80 '; }
has6() { in_save save6 nat '^-A KUBE-SERVICES -d fd00:96::22/128 .*--dport 80 '; }
check "--once without --ip-family programs IPv4 (dual 10.96.0.22)" has4
check "--once without --ip-family programs IPv6 (dual fd00:96::22)" has6
check "TCP to the IPv6 ClusterIP [fd00:96::22]:80 is answered by pod-a" answered_by client fd00:96::22 80 pod-a
check "TCP to the IPv4 ClusterIP 10.96.0.22:80 is answered by pod-a" answered_by client 10.96.0.22 80 pod-a
dry_both() {
    N "$BIN" --config "$TMP/config.yaml" --source "$CLUSTER" --dry-run > "$TMP/dry.txt" 2> /dev/null || return 1
    grep -qE -- '^-A KUBE-SERVICES .*-d 10\.96\.0\.22 --dport 80 ' "$TMP/dry.txt" \
        && grep -qE -- '^-A KUBE-SERVICES .*-d fd00:96::22 --dport 80 ' "$TMP/dry.txt"
}
check "--dry-run without --ip-family prints both families on this machine" dry_both

# --- 2. nfacct: created by kube-natd, matched, counted -----------------------------------------------------
check "kube-natd created ct_state_invalid_dropped_pkts" exists ct_state_invalid_dropped_pkts
check "kube-natd created localhost_nps_accepted_pkts" exists localhost_nps_accepted_pkts
# iptables-save writes two spaces after --nfacct-name.
invalid_match() { in_save save4 filter '--ctstate INVALID -m nfacct --nfacct-name +ct_state_invalid_dropped_pkts -j DROP'; }
check "the INVALID drop counts into ct_state_invalid_dropped_pkts (IPv4)" invalid_match
invalid_match6() { in_save save6 filter '--ctstate INVALID -m nfacct --nfacct-name +ct_state_invalid_dropped_pkts -j DROP'; }
check "the INVALID drop counts into ct_state_invalid_dropped_pkts (IPv6)" invalid_match6
localhost_match() { in_save save4 nat '^-A KUBE-NODEPORTS -d 127\.0\.0\.0/8 .*--dport 30086 -m nfacct --nfacct-name +localhost_nps_accepted_pkts '; }
check "the localhost NodePort rule counts into localhost_nps_accepted_pkts" localhost_match
dry_matches() { grep -q -- '-m nfacct --nfacct-name localhost_nps_accepted_pkts' "$TMP/dry.txt"; }
check "the dry run decides nfacct as --once did" dry_matches
counted() {
    local before after
    before=$(counter localhost_nps_accepted_pkts) || return 1
    answered_by node 127.0.0.1 30086 pod-a || return 1
    after=$(counter localhost_nps_accepted_pkts) || return 1
    [ "$after" -gt "$before" ] || { echo "     count $before -> $after"; return 1; }
}
check "a localhost NodePort connection is counted in localhost_nps_accepted_pkts" counted

# --- 3. nodePortAddresses against the namespace's addresses --------------------------------------------------
sed -e 's|^nodePortAddresses:.*|nodePortAddresses: [192.168.77.0/24]|' "$TMP/config.yaml" > "$TMP/npa.yaml"
N ip addr add 192.168.77.5/32 dev c-client
topo_in client ip route add 192.168.77.0/24 via "$TOPO_NODE_IP"
check "--once with nodePortAddresses [192.168.77.0/24]" once "$TMP/npa.yaml"
npa_rules() {
    local jumps; jumps=$(save4 nat > "$TMP/table" && grep -- '-A KUBE-SERVICES .*-j KUBE-NODEPORTS' "$TMP/table")
    echo "$jumps" | grep -q -- '-d 192.168.77.5/32 ' && [ "$(echo "$jumps" | wc -l)" = 1 ] \
        || { echo "     jumps: $jumps"; return 1; }
}
check "one KUBE-NODEPORTS jump, for the namespace's address 192.168.77.5" npa_rules
check "NodePort on 192.168.77.5:30086 is answered from the client" answered_by client 192.168.77.5 30086 pod-a
check "NodePort on 192.168.10.1:30086 (outside nodePortAddresses) is not" not_answered client 192.168.10.1 30086
no_localhost() { save4 nat > "$TMP/table" && ! grep -qE -- '-d 127\.0\.0\.0/8 .*--dport 30086' "$TMP/table"; }
check "localhost NodePorts off: nodePortAddresses holds no IPv4 loopback" no_localhost

# --- 4. the daemon: eligibility from the Node, metrics, addresses on each sync ------------------------------
mkdir "$TMP/manifests"
cp "$CLUSTER" "$TMP/manifests/cluster.yaml"
node_yaml() { # node_yaml TAINTED(yes|no)
    local taints='[]'
    [ "$1" = yes ] && taints='[{key: ToBeDeletedByClusterAutoscaler, value: "1700000000", effect: NoSchedule}]'
    cat > "$TMP/manifests/node.yaml.tmp" << YAML
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24], taints: $taints}
status: {addresses: [{type: InternalIP, address: 192.168.10.1}, {type: InternalIP, address: "fd00:10::1"}]}
YAML
    mv "$TMP/manifests/node.yaml.tmp" "$TMP/manifests/node.yaml"
}
node_yaml yes
sed -e 's|^nodePortAddresses:.*|nodePortAddresses: [192.168.77.0/24, 127.0.0.0/8]|' "$TMP/config.yaml" > "$TMP/daemon.yaml"
# Does this build's manifest source read Node objects? In NodeCIDR mode the Node's podCIDR becomes the detector.
sed -e 's/^detectLocalMode:.*/detectLocalMode: NodeCIDR/' "$TMP/daemon.yaml" > "$TMP/nodecidr.yaml"
NODES=0
N "$BIN" --config "$TMP/nodecidr.yaml" --source "$TMP/manifests" --dry-run 2> /dev/null | grep -q -- '-s 10.244.1.0/24' && NODES=1

ip netns exec "$(topo_ns node)" timeout -k 2 100 "$BIN" --config "$TMP/daemon.yaml" --source "$TMP/manifests" \
    --backend "$BACKEND" > "$TMP/daemon.log" 2>&1 &
DAEMON_PID=$!
curl_in() { N curl -s --max-time 2 "$@"; }
synced() { grep -q 'synced IPv6' "$TMP/daemon.log"; }
synced_both() { until_true 150 synced || { sed 's/^/     /' "$TMP/daemon.log" | tail -10; return 1; }; }
check "daemon: synced both families (no --ip-family)" synced_both
healthz_is() { # healthz_is CODE ELIGIBLE
    local code; code=$(curl_in -o "$TMP/healthz.json" -w '%{http_code}' http://127.0.0.1:10256/healthz)
    [ "$code" = "$1" ] && grep -q "\"nodeEligible\": $2}" "$TMP/healthz.json"
}
livez_ok() { [ "$(curl_in -o /dev/null -w '%{http_code}' http://127.0.0.1:10256/livez)" = 200 ]; }
if [ "$NODES" = 1 ]; then
    tainted() { until_true 100 healthz_is 503 false || { echo "     $(cat "$TMP/healthz.json" 2> /dev/null)"; return 1; }; }
    check "daemon: /healthz 503, \"nodeEligible\": false while the Node is tainted ToBeDeletedByClusterAutoscaler" tainted
    check "daemon: /livez 200 while the Node is tainted" livez_ok
    node_yaml no
    untainted() { until_true 100 healthz_is 200 true || { echo "     $(cat "$TMP/healthz.json" 2> /dev/null)"; return 1; }; }
    check "daemon: /healthz 200 again once the taint is gone" untainted
else
    skip "daemon: /healthz follows the Node's taint (this build's manifest source does not read Node objects)"
    skip "daemon: /livez 200 while the Node is tainted (same)"
    skip "daemon: /healthz 200 again once the taint is gone (same)"
fi
metric() { curl_in http://127.0.0.1:10249/metrics | grep -E "^$1 " | awk '{print $2}'; }
metric_counts() {
    answered_by node 127.0.0.1 30086 pod-a || return 1
    local v; v=$(metric kubeproxy_iptables_localhost_nodeports_accepted_packets_total)
    [ -n "$v" ] && [ "$v" -gt 0 ] || { echo "     metric: '$v'"; return 1; }
}
check "daemon: kubeproxy_iptables_localhost_nodeports_accepted_packets_total counts localhost NodePort packets" metric_counts
has_metric() { [ -n "$(metric kubeproxy_iptables_ct_state_invalid_dropped_packets_total)" ]; }
check "daemon: kubeproxy_iptables_ct_state_invalid_dropped_packets_total is exported" has_metric
N ip addr add 192.168.77.6/32 dev c-client
new_address() { in_save save4 nat '^-A KUBE-SERVICES -d 192\.168\.77\.6/32 .*-j KUBE-NODEPORTS'; }
check "daemon: an address brought up later gets its NodePort jump on a later sync" until_true 100 new_address
still_running() { kill -0 "$DAEMON_PID" 2> /dev/null || { sed 's/^/     /' "$TMP/daemon.log" | tail -5; return 1; }; }
check "daemon: still running (a taint is no reason to restart)" still_running

echo "$SUITE: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
