#!/usr/bin/env bash
# Kernel test of the stale UDP conntrack reconciler, in throwaway network namespaces only (run as root).
#
#   Tests/kernel/conntrack.sh path/to/kube-natd
#
# Topology per scenario (fresh namespaces each time, deleted on exit):
#   client 192.168.50.2 --veth-- node (rules, ip_forward=1) --veth /32-- pod A 10.244.1.12
#                                                            --veth /32-- pod B 10.244.2.13
# (IPv6: fd00:50::2, fd00:50::1, /128 routes to fd00:10:244:1::c and fd00:10:244:2::d, forwarding=1).
# A UDP NodePort Service (ClusterIP :53, node port 30053) has endpoint A; a client keeps sending from one
# fixed source port to each frontend and logs who answers. The endpoint is then replaced by B and
# `kube-natd --once` runs again:
#   --conntrack-cleanup true : the stale entries are deleted, the next datagrams reach B (IPv4 and IPv6);
#   --conntrack-cleanup false: the entries survive and the datagrams keep reaching A (why the cleanup matters).
# A UDP flow that is not to a Service frontend keeps its conntrack entry (same id: no flush).
#
# Prints `conntrack: N passed, M failed`; exits non-zero on failure. Runs in about 15 s.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CFG="$ROOT/Config/kube-proxy-config.yaml"
[ -x "$BIN" ] || { echo "conntrack: $BIN not found (swift build first)"; echo "conntrack: 0 passed, 1 failed"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "conntrack: needs root (network namespaces)"; echo "conntrack: 0 passed, 1 failed"; exit 2; }

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"
NAMESPACES=()
PIDS=()
TMP=$(mktemp -d /tmp/knat-ct.XXXXXX)
# Stops what this script started and deletes its namespaces (after each scenario, and on exit).
teardown() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    PIDS=()
    NAMESPACES=()
}
cleanup() {
    teardown
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { PASS=$((PASS + 1)); echo "  ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -20 | sed 's/^/       /'; }
X() { local ns=$1; shift; timeout 20 ip netns exec "$ns" "$@"; }
# Polls a condition every 100 ms for at most $1 seconds.
wait_for() { local limit=$(( $1 * 10 )); shift; local i; for ((i = 0; i < limit; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }

manifest() { # manifest FILE FAMILY(IPv4|IPv6) CLUSTER-IP ENDPOINT-IP
    cat >"$1" <<EOF
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  type: NodePort
  clusterIP: $3
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: 30053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-x1, namespace: kube-system, labels: {kubernetes.io/service-name: dns}}
addressType: $2
ports: [{name: dns, port: 5353, protocol: UDP}]
endpoints: [{addresses: ["$4"], conditions: {ready: true}, nodeName: node-1}]
EOF
}
manifest "$TMP/4a.yaml" IPv4 10.96.0.53 10.244.1.12
manifest "$TMP/4b.yaml" IPv4 10.96.0.53 10.244.2.13
manifest "$TMP/6a.yaml" IPv6 fd00:10:96::53 fd00:10:244:1::c
manifest "$TMP/6b.yaml" IPv6 fd00:10:96::53 fd00:10:244:2::d

# A UDP server that answers every datagram with its name; it exits by itself after 40 s.
cat >"$TMP/server.py" <<'EOF'
import socket, sys, time
name, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
s.settimeout(0.5)
open(ready, "w").close()
end = time.monotonic() + 40
while time.monotonic() < end:
    try:
        _, peer = s.recvfrom(2048)
    except socket.timeout:
        continue
    s.sendto(name.encode(), peer)
EOF
# A client that sends every 100 ms from one fixed source port for at most 20 s and logs each answer
# ("A", "B" or "-" for none within 100 ms), one line per datagram.
cat >"$TMP/client.py" <<'EOF'
import socket, sys, time
dst, dport, sport, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
v6 = ":" in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if v6 else "0.0.0.0", sport))
s.settimeout(0.1)
end = time.monotonic() + 20
with open(log, "w", buffering=1) as out:
    while time.monotonic() < end:
        started = time.monotonic()
        s.sendto(b"q", (dst, dport))
        try:
            data, _ = s.recvfrom(2048)
            out.write(data.decode() + "\n")
        except socket.timeout:
            out.write("-\n")
        time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
EOF

# Addresses per family: client, node (client side), pod A, pod B, ClusterIP.
addresses() { # addresses FAMILY(4|6)
    if [ "$1" = 4 ]; then
        CLIENT=192.168.50.2; NODE=192.168.50.1; POD_A=10.244.1.12; POD_B=10.244.2.13; CLUSTER_IP=10.96.0.53
    else
        CLIENT=fd00:50::2; NODE=fd00:50::1; POD_A=fd00:10:244:1::c; POD_B=fd00:10:244:2::d; CLUSTER_IP=fd00:10:96::53
    fi
}

# topology TAG FAMILY: creates node/client/pod-a/pod-b namespaces named knat-ct-$$-TAG-*.
topology() {
    local t=$1 f=$2 p="knat-ct-$$-$1"
    N="$p-node"; C="$p-client"; A="$p-pa"; B="$p-pb"
    for ns in "$N" "$C" "$A" "$B"; do
        ip netns add "$ns" || return 1
        NAMESPACES+=("$ns")
        ip netns exec "$ns" ip link set lo up
    done
    # Created from inside the node namespace: nothing is added to the host's, even for a moment.
    X "$N" ip link add ctc-$t type veth peer name eth0 netns "$C" || return 1
    X "$N" ip link add cta-$t type veth peer name eth0 netns "$A" || return 1
    X "$N" ip link add ctb-$t type veth peer name eth0 netns "$B" || return 1
    local ns gw addr
    # Pods reach the node point-to-point (a /32 or /128 route each way), as CNIs without a bridge wire them.
    if [ "$f" = 4 ]; then
        X "$N" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        X "$N" ip addr add "$NODE/24" dev ctc-$t
        X "$N" ip addr add 169.254.1.1/32 dev cta-$t
        X "$N" ip addr add 169.254.2.1/32 dev ctb-$t
    else
        X "$N" sysctl -qw net.ipv6.conf.all.forwarding=1
        X "$N" ip -6 addr add "$NODE/64" dev ctc-$t nodad
        X "$N" ip -6 addr add fe80::1/64 dev cta-$t nodad
        X "$N" ip -6 addr add fe80::1/64 dev ctb-$t nodad
    fi
    for ns in "$N:ctc-$t" "$N:cta-$t" "$N:ctb-$t" "$C:eth0" "$A:eth0" "$B:eth0"; do X "${ns%%:*}" ip link set "${ns#*:}" up; done
    if [ "$f" = 4 ]; then
        X "$C" ip addr add "$CLIENT/24" dev eth0
        X "$C" ip route add default via "$NODE"
        for ns in "$A:169.254.1.1:$POD_A" "$B:169.254.2.1:$POD_B"; do
            IFS=: read -r ns gw addr <<<"$ns"
            X "$ns" ip addr add "$addr/32" dev eth0
            X "$ns" ip route add "$gw" dev eth0 scope link
            X "$ns" ip route add default via "$gw" dev eth0
        done
        X "$N" ip route add "$POD_A/32" dev cta-$t
        X "$N" ip route add "$POD_B/32" dev ctb-$t
    else
        X "$C" ip -6 addr add "$CLIENT/64" dev eth0 nodad
        X "$C" ip -6 route add default via "$NODE"
        X "$A" ip -6 addr add "$POD_A/128" dev eth0 nodad
        X "$B" ip -6 addr add "$POD_B/128" dev eth0 nodad
        for ns in "$A" "$B"; do X "$ns" ip -6 route add default via fe80::1 dev eth0; done
        X "$N" ip -6 route add "$POD_A/128" dev cta-$t
        X "$N" ip -6 route add "$POD_B/128" dev ctb-$t
    fi
    ip netns exec "$A" python3 "$TMP/server.py" A 5353 "$TMP/$t-a.ready" >/dev/null 2>&1 &
    PIDS+=($!)
    ip netns exec "$B" python3 "$TMP/server.py" B 5353 "$TMP/$t-b.ready" >/dev/null 2>&1 &
    PIDS+=($!)
    wait_for 5 test -e "$TMP/$t-a.ready" && wait_for 5 test -e "$TMP/$t-b.ready"
}

natd() { X "$N" "$BIN" --config "$CFG" --source "$1" --ip-family "ipv$FAM" --once --backend libiptc "${@:2}" 2>&1; }
answers() { cat "$1" 2>/dev/null | wc -l; }
# answered_since LOG LINE NAME COUNT: at least COUNT answers NAME after line LINE.
answered_since() { [ "$(tail -n +"$(($2 + 1))" "$1" 2>/dev/null | grep -c "^$3\$")" -ge "$4" ]; }
ct_id() { X "$N" conntrack -L -f "ipv$FAM" -p udp --orig-port-src "$1" -o id 2>/dev/null | sed -n 's/.*id=\([0-9]*\).*/\1/p' | head -1; }

scenario() { # scenario TAG FAMILY(4|6) CLEANUP(true|false)
    local t=$1 cleanup=$3 direct="$TMP/$1-direct.log"
    FAM=$2
    addresses "$FAM"
    # The two Service flows: name, destination, port, fixed client source port.
    local FLOWS=("clusterIP $CLUSTER_IP 53 40000" "nodePort $NODE 30053 40002")
    echo "conntrack: IPv$FAM, --conntrack-cleanup $cleanup"
    if ! topology "$t" "$FAM"; then bad "$t: namespaces and servers set up"; return; fi
    local out flow name dst port sport
    if ! out=$(natd "$TMP/${FAM}a.yaml" --conntrack-cleanup "$cleanup"); then bad "$t: --once with endpoint A" "$out"; return; fi
    for flow in "${FLOWS[@]}"; do
        read -r name dst port sport <<<"$flow"
        ip netns exec "$C" python3 "$TMP/client.py" "$dst" "$port" "$sport" "$TMP/$t-$name.log" >/dev/null 2>&1 &
        PIDS+=($!)
    done
    # A flow that is not to a frontend: straight to pod A (routed, not DNATed); its entry must survive.
    ip netns exec "$C" python3 "$TMP/client.py" "$POD_A" 5353 40001 "$direct" >/dev/null 2>&1 &
    PIDS+=($!)
    for flow in "${FLOWS[@]}"; do
        read -r name dst port sport <<<"$flow"
        if ! wait_for 5 answered_since "$TMP/$t-$name.log" 0 A 3; then
            bad "$t: the $name flow is answered by A before the change" "$(sort "$TMP/$t-$name.log" 2>/dev/null | uniq -c)"
            return
        fi
    done
    wait_for 3 answered_since "$direct" 0 A 1
    local direct_id
    direct_id=$(ct_id 40001)
    declare -A mark
    for flow in "${FLOWS[@]}"; do
        read -r name dst port sport <<<"$flow"
        mark[$name]=$(answers "$TMP/$t-$name.log")
    done
    if ! out=$(natd "$TMP/${FAM}b.yaml" --conntrack-cleanup "$cleanup"); then bad "$t: --once with endpoint B" "$out"; return; fi
    if [ "$cleanup" = true ]; then
        if echo "$out" | grep -q "deleted 2 stale UDP entries"; then
            ok "$t: the sync reports the two stale UDP entries deleted ($(echo "$out" | grep -o "ipv$FAM conntrack:.*"))"
        else
            bad "$t: the sync reports the two stale UDP entries deleted" "$out"
        fi
    elif echo "$out" | grep -q "conntrack:"; then
        bad "$t: no conntrack reconciliation when disabled" "$out"
    else
        ok "$t: no conntrack reconciliation when disabled"
    fi
    local log after late
    for flow in "${FLOWS[@]}"; do
        read -r name dst port sport <<<"$flow"
        log="$TMP/$t-$name.log"
        if [ "$cleanup" = true ]; then
            if wait_for 3 answered_since "$log" "${mark[$name]}" B 5; then
                late=$(tail -n 5 "$log" | sort -u | tr '\n' ' ')
                if [ "$late" = "B " ]; then
                    ok "$t: after the sync the same $name flow reaches B and stays there"
                else
                    bad "$t: after the sync the same $name flow reaches B and stays there" "last answers: $late"
                fi
            else
                bad "$t: after the sync the same $name flow reaches B" "$(tail -n +"$((mark[$name] + 1))" "$log" | uniq -c)"
            fi
        else
            # ten answers after the sync (a condition, not a sleep): on A if the stale entry kept the flow
            wait_for 5 answered_since "$log" "${mark[$name]}" A 10
            after=$(tail -n +"$((mark[$name] + 1))" "$log")
            if [ "$(echo "$after" | grep -c '^A$')" -ge 10 ] && ! echo "$after" | grep -q '^B$'; then
                ok "$t: without cleanup the stale entry keeps the $name flow on A ($(echo "$after" | grep -c '^A$') answers)"
            else
                bad "$t: without cleanup the stale entry keeps the $name flow on A" "$(echo "$after" | uniq -c)"
            fi
        fi
    done
    local now_id
    now_id=$(ct_id 40001)
    if [ -n "$direct_id" ] && [ "$direct_id" = "$now_id" ]; then
        ok "$t: a UDP flow to no Service keeps its conntrack entry (id $direct_id)"
    else
        bad "$t: a UDP flow to no Service keeps its conntrack entry" "id before '$direct_id', after '$now_id'"
    fi
}

started=$(date +%s)
scenario on4 4 true
teardown
scenario off4 4 false
teardown
scenario on6 6 true
teardown
echo "conntrack: finished in $(( $(date +%s) - started )) s"
summary conntrack
[ "$FAIL" -eq 0 ]
