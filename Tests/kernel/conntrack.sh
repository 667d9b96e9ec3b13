#!/usr/bin/env bash
# Kernel test of the stale UDP conntrack reconciler, in throwaway network namespaces only (run as root).
#
#   Tests/kernel/conntrack.sh path/to/kube-natd
#
# Topology per scenario (fresh namespaces each time, deleted on exit):
#   client 192.168.50.2 --veth-- node (rules, ip_forward=1) --veth /32-- pod A 10.244.1.12
#                                                            --veth /32-- pod B 10.244.2.13
# A UDP NodePort Service (10.96.0.53:53, node port 30053) has endpoint A; a client keeps sending from one
# fixed source port to each frontend and logs who answers. The endpoint is then replaced by B and `kube-natd --once` runs again:
#   --conntrack-cleanup true : the stale entries are deleted, the next datagrams reach B;
#   --conntrack-cleanup false: the entries survive and the datagrams keep reaching A (why the cleanup matters).
# A UDP flow that is not to a Service frontend keeps its conntrack entry (no flush).
#
# Prints `conntrack: N passed, M failed`; exits non-zero on failure. Runs in about 10 s.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CFG="$ROOT/Config/kube-proxy-config.yaml"
[ -x "$BIN" ] || { echo "conntrack: $BIN not found (swift build first)"; echo "conntrack: 0 passed, 1 failed"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "conntrack: needs root (network namespaces)"; echo "conntrack: 0 passed, 1 failed"; exit 2; }

PASS=0
FAIL=0
NAMESPACES=()
PIDS=()
TMP=$(mktemp -d /tmp/knat-ct.XXXXXX)
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { PASS=$((PASS + 1)); echo "  ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -20 | sed 's/^/       /'; }
X() { local ns=$1; shift; timeout 20 ip netns exec "$ns" "$@"; }
# Polls a condition every 100 ms for at most $1 seconds.
wait_for() { local limit=$(( $1 * 10 )); shift; local i; for ((i = 0; i < limit; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }

manifest() { # manifest FILE ENDPOINT-IP
    cat >"$1" <<EOF
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  type: NodePort
  clusterIP: 10.96.0.53
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: 30053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-x1, namespace: kube-system, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 5353, protocol: UDP}]
endpoints: [{addresses: [$2], conditions: {ready: true}, nodeName: node-1}]
EOF
}
manifest "$TMP/a.yaml" 10.244.1.12
manifest "$TMP/b.yaml" 10.244.2.13

# A UDP server that answers every datagram with its name; it exits by itself after 40 s.
cat >"$TMP/server.py" <<'EOF'
import socket, sys, time
name, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
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
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport))
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

# topology TAG: creates node/client/pod-a/pod-b namespaces named knat-ct-$$-TAG-*.
topology() {
    local t=$1 p="knat-ct-$$-$1"
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
    X "$N" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    X "$N" ip addr add 192.168.50.1/24 dev ctc-$t
    X "$N" ip addr add 169.254.1.1/32 dev cta-$t
    X "$N" ip addr add 169.254.2.1/32 dev ctb-$t
    for i in ctc cta ctb; do X "$N" ip link set $i-$t up; done
    X "$N" ip route add 10.244.1.12/32 dev cta-$t
    X "$N" ip route add 10.244.2.13/32 dev ctb-$t
    X "$C" ip addr add 192.168.50.2/24 dev eth0
    X "$C" ip link set eth0 up
    X "$C" ip route add default via 192.168.50.1
    # Pods reach the node point-to-point, as CNIs without a bridge (Calico) wire them.
    local ns gw addr
    for ns in "$A:169.254.1.1:10.244.1.12" "$B:169.254.2.1:10.244.2.13"; do
        IFS=: read -r ns gw addr <<<"$ns"
        X "$ns" ip addr add "$addr/32" dev eth0
        X "$ns" ip link set eth0 up
        X "$ns" ip route add "$gw" dev eth0 scope link
        X "$ns" ip route add default via "$gw" dev eth0
    done
    ip netns exec "$A" python3 "$TMP/server.py" A 5353 "$TMP/$t-a.ready" >/dev/null 2>&1 &
    PIDS+=($!)
    ip netns exec "$B" python3 "$TMP/server.py" B 5353 "$TMP/$t-b.ready" >/dev/null 2>&1 &
    PIDS+=($!)
    wait_for 5 test -e "$TMP/$t-a.ready" && wait_for 5 test -e "$TMP/$t-b.ready"
}

natd() { X "$N" "$BIN" --config "$CFG" --source "$1" --once --backend libiptc "${@:2}" 2>&1; }
answers() { cat "$1" 2>/dev/null | wc -l; }
# answered_since LOG LINE NAME COUNT: at least COUNT answers NAME after line LINE.
answered_since() { [ "$(tail -n +"$(($2 + 1))" "$1" 2>/dev/null | grep -c "^$3\$")" -ge "$4" ]; }
ct_id() { X "$N" conntrack -L -p udp --orig-port-src "$1" -o id 2>/dev/null | sed -n 's/.*id=\([0-9]*\).*/\1/p' | head -1; }

# The two Service flows every scenario drives: name, destination, port, fixed client source port.
FLOWS=("clusterIP 10.96.0.53 53 40000" "nodePort 192.168.50.1 30053 40002")

scenario() { # scenario TAG CLEANUP(true|false)
    local t=$1 cleanup=$2 direct="$TMP/$1-direct.log"
    echo "conntrack: --conntrack-cleanup $cleanup"
    if ! topology "$t"; then bad "$t: namespaces and servers set up"; return; fi
    local out flow name dst port sport
    if ! out=$(natd "$TMP/a.yaml" --conntrack-cleanup "$cleanup"); then bad "$t: --once with endpoint A" "$out"; return; fi
    for flow in "${FLOWS[@]}"; do
        read -r name dst port sport <<<"$flow"
        ip netns exec "$C" python3 "$TMP/client.py" "$dst" "$port" "$sport" "$TMP/$t-$name.log" >/dev/null 2>&1 &
        PIDS+=($!)
    done
    # A flow that is not to a frontend: straight to pod A (routed, not DNATed); its entry must survive.
    ip netns exec "$C" python3 "$TMP/client.py" 10.244.1.12 5353 40001 "$direct" >/dev/null 2>&1 &
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
    if ! out=$(natd "$TMP/b.yaml" --conntrack-cleanup "$cleanup"); then bad "$t: --once with endpoint B" "$out"; return; fi
    if [ "$cleanup" = true ]; then
        if echo "$out" | grep -q "deleted 2 stale UDP entries"; then
            ok "$t: the sync reports the two stale UDP entries deleted ($(echo "$out" | grep -o 'ipv4 conntrack:.*'))"
        else
            bad "$t: the sync reports the two stale UDP entries deleted" "$out"
        fi
    elif echo "$out" | grep -q "conntrack:"; then
        bad "$t: no conntrack reconciliation when disabled" "$out"
    else
        ok "$t: no conntrack reconciliation when disabled"
    fi
    [ "$cleanup" = false ] && sleep 2
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
scenario on true
scenario off false
echo "conntrack: finished in $(( $(date +%s) - started )) s"
echo "conntrack: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
