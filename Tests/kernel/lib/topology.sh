# shellcheck shell=bash
# The traffic topology for kube-natd's kernel tests and `make demo`, in network namespaces only (root).
#
#   source Tests/kernel/lib/topology.sh
#   trap topo_teardown EXIT INT TERM
#   topo_setup "knat-$$-" || exit 2      # namespaces, links, addresses, routes, forwarding (node namespace only)
#   topo_start_servers 150 || exit 2     # one answering server per pod, each exits by itself after 150 s
#   topo_in node iptables-legacy -t nat -S
#   topo_teardown                        # kills the servers, deletes every namespace it made
#
# Addresses are the ones Config/example-cluster.yaml was written for:
#
#   client  192.168.10.2/24 fd00:10::2/64 --eth0--c-client-- node 192.168.10.1 fd00:10::1
#   blocked 192.168.20.2/24               --eth0--c-blocked- node 192.168.20.1   (outside web-lb's source range)
#   pod-a      10.244.1.10/32 fd00:244:1::10/128 --eth0--p-a------ node 10.244.1.1 fd00:244:1::1
#   pod-b      10.244.1.11/32                    --eth0--p-b------ node 10.244.1.1
#   pod-dns    10.244.1.12/32                    --eth0--p-dns---- node 10.244.1.1
#   pod-remote 10.244.2.10/32                    --eth0--p-remote- node 10.244.1.1
#
# Every pod has its own point-to-point veth to the node (a /32 on the pod, a host route on the node), not a
# bridge: without br_netfilter, bridged pod-to-pod replies would skip conntrack and never be un-DNATed.
# pod-remote is wired to this node too, but the rules treat it as node-2's because its endpoints say so.
# The node's default routes lead through its "upstream" veth to a sink namespace that drops everything, so a
# packet no rule DNATs is routed (and reaches the filter FORWARD chain) instead of refused by the routing table.
# Nothing is created in, or linked to, the namespace the caller runs in.

TOPO_PREFIX=""
TOPO_NAMESPACES=()
TOPO_SERVER_PIDS=()
TOPO_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOPO_SCTP=0 # 1 when the pods' kernel has SCTP sockets (set by topo_setup)

# Pods: name, IPv4 address, IPv6 address (or -), server ports.
TOPO_PODS=(a b dns remote)
declare -A TOPO_POD_IP=([a]=10.244.1.10 [b]=10.244.1.11 [dns]=10.244.1.12 [remote]=10.244.2.10)
declare -A TOPO_POD_IP6=([a]=fd00:244:1::10 [b]=- [dns]=- [remote]=-)
declare -A TOPO_POD_PORTS=([a]="--tcp 8080" [b]="--tcp 8080" [dns]="--tcp 8080 --tcp 5353 --udp 5353" [remote]="--tcp 8080")
TOPO_NODE_IP=192.168.10.1
TOPO_NODE_IP6=fd00:10::1
TOPO_NODE_POD_GW=10.244.1.1
TOPO_NODE_POD_GW6=fd00:244:1::1
TOPO_CLIENT_IP=192.168.10.2
TOPO_CLIENT_IP6=fd00:10::2
TOPO_BLOCKED_IP=192.168.20.2

topo_ns() { echo "${TOPO_PREFIX}$1"; }                  # topo_ns NAME: the full namespace name
topo_in() { local ns; ns=$(topo_ns "$1"); shift; ip netns exec "$ns" "$@"; } # topo_in NAME COMMAND...

_topo_do() { # run a setup step; say which one failed
    "$@" || { echo "topology: failed: $*" >&2; return 1; }
}

_topo_newns() {
    local ns; ns=$(topo_ns "$1")
    _topo_do ip netns add "$ns" || return 1
    TOPO_NAMESPACES+=("$ns")
    _topo_do ip -n "$ns" link set lo up || return 1
    # No DAD: addresses are usable at once instead of after a second of tentative state.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 > /dev/null
}

# topo_add_ns NAME: one more empty namespace (loopback up), deleted by topo_teardown with the rest.
topo_add_ns() { _topo_newns "$1"; }

# _topo_link NODE_IF PEER_NS: a veth pair made inside the node namespace, its peer moved to PEER_NS as eth0.
_topo_link() {
    local node peer; node=$(topo_ns node); peer=$(topo_ns "$2")
    _topo_do ip -n "$node" link add "$1" type veth peer name eth0 netns "$peer" || return 1
    _topo_do ip -n "$node" link set "$1" up && _topo_do ip -n "$peer" link set eth0 up
}

topo_setup() { # topo_setup PREFIX
    TOPO_PREFIX=$1
    local n c b p pod
    _topo_newns node || return 1
    n=$(topo_ns node)
    # Routing only: route_localnet and the conntrack settings are kube-natd's to set (the tests check that it does).
    _topo_do ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 > /dev/null || return 1
    # The default route leads to a sink namespace that forwards nothing and has no route back.
    _topo_newns sink || return 1
    _topo_link upstream sink || return 1
    _topo_do ip -n "$n" addr add 172.31.255.1/30 dev upstream || return 1
    _topo_do ip -n "$n" addr add fd00:ffff::1/64 dev upstream nodad || return 1
    _topo_do ip -n "$(topo_ns sink)" addr add 172.31.255.2/30 dev eth0 || return 1
    _topo_do ip -n "$(topo_ns sink)" addr add fd00:ffff::2/64 dev eth0 nodad || return 1
    _topo_do ip -n "$n" route add default via 172.31.255.2 || return 1
    _topo_do ip -n "$n" -6 route add default via fd00:ffff::2 || return 1

    _topo_newns client || return 1
    c=$(topo_ns client)
    _topo_link c-client client || return 1
    _topo_do ip -n "$n" addr add "$TOPO_NODE_IP/24" dev c-client || return 1
    _topo_do ip -n "$n" addr add "$TOPO_NODE_IP6/64" dev c-client nodad || return 1
    _topo_do ip -n "$c" addr add "$TOPO_CLIENT_IP/24" dev eth0 || return 1
    _topo_do ip -n "$c" addr add "$TOPO_CLIENT_IP6/64" dev eth0 nodad || return 1
    for p in 10.96.0.0/12 192.0.2.0/24; do _topo_do ip -n "$c" route add "$p" via "$TOPO_NODE_IP" || return 1; done
    _topo_do ip -n "$c" -6 route add fd00:96::/64 via "$TOPO_NODE_IP6" || return 1

    _topo_newns blocked || return 1
    b=$(topo_ns blocked)
    _topo_link c-blocked blocked || return 1
    _topo_do ip -n "$n" addr add 192.168.20.1/24 dev c-blocked || return 1
    _topo_do ip -n "$b" addr add "$TOPO_BLOCKED_IP/24" dev eth0 || return 1
    for p in 10.96.0.0/12 192.0.2.0/24; do _topo_do ip -n "$b" route add "$p" via 192.168.20.1 || return 1; done

    for pod in "${TOPO_PODS[@]}"; do
        _topo_newns "pod-$pod" || return 1
        p=$(topo_ns "pod-$pod")
        _topo_link "p-$pod" "pod-$pod" || return 1
        _topo_do ip -n "$n" addr add "$TOPO_NODE_POD_GW/32" dev "p-$pod" || return 1
        _topo_do ip -n "$n" route add "${TOPO_POD_IP[$pod]}/32" dev "p-$pod" || return 1
        _topo_do ip -n "$p" addr add "${TOPO_POD_IP[$pod]}/32" dev eth0 || return 1
        _topo_do ip -n "$p" route add "$TOPO_NODE_POD_GW" dev eth0 scope link || return 1
        _topo_do ip -n "$p" route add default via "$TOPO_NODE_POD_GW" dev eth0 || return 1
        if [ "${TOPO_POD_IP6[$pod]}" != - ]; then
            _topo_do ip -n "$n" addr add "$TOPO_NODE_POD_GW6/128" dev "p-$pod" nodad || return 1
            _topo_do ip -n "$n" -6 route add "${TOPO_POD_IP6[$pod]}/128" dev "p-$pod" || return 1
            _topo_do ip -n "$p" addr add "${TOPO_POD_IP6[$pod]}/128" dev eth0 nodad || return 1
            _topo_do ip -n "$p" -6 route add "$TOPO_NODE_POD_GW6" dev eth0 || return 1
            _topo_do ip -n "$p" -6 route add default via "$TOPO_NODE_POD_GW6" dev eth0 || return 1
        fi
    done

    # Link-local addresses come up without DAD, but give the kernel a bounded moment to finish.
    local i
    for i in $(seq 1 20); do
        [ -z "$(ip -n "$n" -6 addr show tentative)" ] && break
        sleep 0.1
    done
    if ip netns exec "$n" python3 -c \
        'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)' 2> /dev/null; then
        TOPO_SCTP=1
        TOPO_POD_PORTS[dns]="${TOPO_POD_PORTS[dns]} --sctp 9999"
    fi
    return 0
}

# topo_start_servers LIFETIME: one backend-server.py per pod, answering "<pod-name> <source-seen>"; each exits
# by itself after LIFETIME seconds. Waits (bounded) until every server accepts connections.
topo_start_servers() {
    local lifetime=$1 pod i
    for pod in "${TOPO_PODS[@]}"; do
        # shellcheck disable=SC2086 # the port list is words on purpose
        ip netns exec "$(topo_ns "pod-$pod")" timeout -k 2 "$lifetime" \
            python3 "$TOPO_LIB/backend-server.py" "pod-$pod" "$lifetime" ${TOPO_POD_PORTS[$pod]} &
        TOPO_SERVER_PIDS+=($!)
    done
    for pod in "${TOPO_PODS[@]}"; do
        for i in $(seq 1 50); do
            topo_in "pod-$pod" python3 "$TOPO_LIB/probe.py" tcp 127.0.0.1 8080 1 0.5 | grep -q "^pod-$pod " && break
            [ "$i" = 50 ] && { echo "topology: server in pod-$pod did not come up" >&2; return 1; }
            sleep 0.1
        done
    done
}

# topo_teardown: stops the servers this library started and deletes every namespace it created. Safe to call
# twice, and from a trap.
topo_teardown() {
    local pid ns
    for pid in "${TOPO_SERVER_PIDS[@]}"; do kill "$pid" 2> /dev/null; done
    for ns in "${TOPO_NAMESPACES[@]}"; do
        # Anything still running inside our own namespaces was started by us (a probe cut short by Ctrl-C).
        for pid in $(ip netns pids "$ns" 2> /dev/null); do kill "$pid" 2> /dev/null; done
    done
    for pid in "${TOPO_SERVER_PIDS[@]}"; do
        timeout 5 tail --pid="$pid" -f /dev/null 2> /dev/null
    done
    for ns in "${TOPO_NAMESPACES[@]}"; do ip netns del "$ns" 2> /dev/null; done
    TOPO_SERVER_PIDS=()
    TOPO_NAMESPACES=()
}
