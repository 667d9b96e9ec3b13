#!/usr/bin/env bash
# Kernel test of kube-natd with real traffic, in throwaway network namespaces only (run as root).
#
#   Tests/kernel/traffic.sh [path/to/kube-natd] [current|v1.23]
#
# The second argument picks the rule layout (default current); the suite then reports as traffic-v1.23. The two
# layouts reach, masquerade and refuse the same flows; where v1.23 drops elsewhere (nat KUBE-MARK-DROP and
# kubelet's filter KUBE-FIREWALL instead of KUBE-PROXY-FIREWALL / KUBE-EXTERNAL-SERVICES), the check says so.
#
# Builds the topology of lib/topology.sh (clients, a node namespace that routes and holds the rules, one
# namespace per pod whose server answers "<pod-name> <source-it-saw>"), programs the node once with
# `kube-natd --once --backend libiptc --ip-family dual` from Config/, then asserts every Service behaviour of
# Config/example-cluster.yaml with TCP and UDP connections. Everything it creates goes on exit, Ctrl-C or failure.
set -uo pipefail
KUBE_NATD=$(readlink -f "${1:-.build/debug/kube-natd}")
LAYOUT=${2:-current}
# BACKEND=libnftnl runs the same suite through the nf_tables backend (iptables-nft tools read its rules).
BACKEND=${BACKEND:-libiptc}
FLAVOR=legacy
SUITE=traffic
[ "$BACKEND" = libnftnl ] && FLAVOR=nft SUITE=traffic-nft
[ "$LAYOUT" = current ] || SUITE="$SUITE-$LAYOUT"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONFIG="$ROOT/Config/kube-proxy-config.yaml"
CLUSTER="$ROOT/Config/example-cluster.yaml"
[ -x "$KUBE_NATD" ] || { echo "$SUITE: $KUBE_NATD not found (swift build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$SUITE: needs root (network namespaces)"; exit 2; }
STARTED=$(date +%s)

# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
TMP=$(mktemp -d /tmp/knat-traffic.XXXXXX)
cleanup() { topo_teardown; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"

# probe NS PROTO HOST PORT [COUNT] [TIMEOUT]: one line per attempt, "<pod> <source> ms=N" or TIMEOUT/REFUSED/...
probe() {
    local ns=$1; shift
    timeout 60 ip netns exec "$(topo_ns "$ns")" python3 "$HERE/lib/probe.py" "$@"
}
answers() { sed 's/ ms=[0-9]*$//' "$1"; }             # attempts without their timing
pods_in() { answers "$1" | awk '{print $1}' | sort -u | tr '\n' ' '; } # the distinct answerers
show() { echo "     got: $(answers "$1" | sort | uniq -c | sed 's/^ *//' | tr '\n' ';' | head -c 300)"; }

# every_answer FILE REGEX: every attempt was answered and matches REGEX (anchored).
every_answer() {
    if [ -s "$1" ] && ! answers "$1" | grep -qvE "^($2)\$"; then return 0; fi
    show "$1"; return 1
}
# reaches_all FILE POD...: each of the pods answered at least once.
reaches_all() {
    local file=$1 pod; shift
    for pod in "$@"; do
        answers "$file" | grep -q "^$pod " || { echo "     never answered by $pod"; show "$file"; return 1; }
    done
}

NODE_ADDRS=""
node_addr_re() { echo "$NODE_ADDRS" | sed 's/\./\\./g' | tr ' ' '|'; } # the node's addresses as a regex

# drop_counter TABLE CHAIN PATTERN: packets counted by the first rule in CHAIN whose text matches PATTERN.
drop_counter() {
    topo_in node iptables-$FLAVOR -t "$1" -L "$2" -n -v -x 2> /dev/null | grep -E -- "$3" | awk 'NR == 1 {print $1}'
}
counted() { # counted BEFORE AFTER WHAT
    [ "${2:-0}" -gt "${1:-0}" ] && return 0
    echo "     $3 counter did not move (${1:-?} -> ${2:-?})"; return 1
}

# --- topology and rules ---------------------------------------------------------------------------------
topo_setup "knat-$$-" || exit 2
topo_start_servers 150 || exit 2
NODE_ADDRS=$(topo_in node ip -o addr show scope global | awk '{sub("/.*", "", $4); print $4}' | sort -u | tr '\n' ' ')
NODE_ADDRS=${NODE_ADDRS% }
echo "topology up: node addresses $NODE_ADDRS; SCTP sockets: $([ "$TOPO_SCTP" = 1 ] && echo yes || echo no)"

# The node's sysctls start at values kube-natd must change (the kernel's defaults in a new namespace may be
# inherited from the host): --once sets them as the daemon does, and nothing here sets them for it.
sysctl_of() { topo_in node cat "/proc/sys/$1" 2> /dev/null; }
topo_in node sysctl -qw net.ipv4.conf.all.route_localnet=0 net.netfilter.nf_conntrack_tcp_timeout_established=1234 \
    net.netfilter.nf_conntrack_tcp_timeout_close_wait=1234 > /dev/null
program() {
    topo_in node "$KUBE_NATD" --config "$CONFIG" --source "$CLUSTER" --once --backend "$BACKEND" --ip-family dual \
        --rule-layout "$LAYOUT" > "$TMP/once.log" 2>&1 || { sed 's/^/     /' "$TMP/once.log"; return 1; }
}
check "kube-natd --once --backend $BACKEND --ip-family dual --rule-layout $LAYOUT programs the node namespace" program
sysctls_set() {
    local v
    v=$(sysctl_of net/ipv4/conf/all/route_localnet); [ "$v" = 1 ] || { echo "     route_localnet=$v"; return 1; }
    v=$(sysctl_of net/netfilter/nf_conntrack_tcp_timeout_established)
    [ "$v" = 86400 ] || { echo "     nf_conntrack_tcp_timeout_established=$v (config: 24h)"; return 1; }
    v=$(sysctl_of net/netfilter/nf_conntrack_tcp_timeout_close_wait)
    [ "$v" = 3600 ] || { echo "     nf_conntrack_tcp_timeout_close_wait=$v (config: 1h)"; return 1; }
    grep -q 'set sysctl net.ipv4.conf.all.route_localnet = 1' "$TMP/once.log" || { echo "     not logged"; return 1; }
}
check "--once sets route_localnet (localhost NodePorts) and the conntrack timeouts, as the daemon does, and logs them" sysctls_set
NODE_RE=$(node_addr_re)

# --- ClusterIP ------------------------------------------------------------------------------------------
probe client tcp 10.96.0.10 80 60 2 > "$TMP/cip-client"
check "ClusterIP 10.96.0.10:80 from the client reaches all 3 endpoints in 60 tries" \
    reaches_all "$TMP/cip-client" pod-a pod-b pod-remote
check "ClusterIP 10.96.0.10:80 from the client: every try answered" \
    every_answer "$TMP/cip-client" "pod-(a|b|remote) .*"
probe pod-dns tcp 10.96.0.10 80 60 2 > "$TMP/cip-pod"
check "ClusterIP 10.96.0.10:80 from a pod reaches all 3 endpoints in 60 tries" \
    reaches_all "$TMP/cip-pod" pod-a pod-b pod-remote

# --- masquerade -----------------------------------------------------------------------------------------
check "masquerade: client (outside clusterCIDR) -> ClusterIP: backends see the node's address" \
    every_answer "$TMP/cip-client" "pod-(a|b|remote) ($NODE_RE)"
check "no masquerade: pod -> ClusterIP: backends see the pod's own address 10.244.1.12" \
    every_answer "$TMP/cip-pod" "pod-(a|b|remote) 10\.244\.1\.12"

# --- NodePort -------------------------------------------------------------------------------------------
probe client tcp "$TOPO_NODE_IP" 30080 10 2 > "$TMP/np"
check "NodePort 192.168.10.1:30080 from the client answered by web-nodeport's endpoints" \
    every_answer "$TMP/np" "pod-(a|remote) .*"
check "masquerade: NodePort 30080 (externalTrafficPolicy Cluster): backend sees the node's address" \
    every_answer "$TMP/np" "pod-(a|remote) ($NODE_RE)"
probe node tcp 127.0.0.1 30080 10 2 > "$TMP/np-lo"
check "NodePort 127.0.0.1:30080 from the node itself answered (localhostNodePorts)" \
    every_answer "$TMP/np-lo" "pod-(a|remote) ($NODE_RE)"

# --- externalIP and LoadBalancer source ranges ----------------------------------------------------------
probe client tcp 192.0.2.20 80 3 2 > "$TMP/extip"
check "externalIP 192.0.2.20:80 from the client answered by pod-b" every_answer "$TMP/extip" "pod-b ($NODE_RE)"
probe client tcp 192.0.2.10 80 3 2 > "$TMP/lb-allowed"
check "LB IP 192.0.2.10:80 from the allowed client (192.168.10.0/24) answered by pod-b" \
    every_answer "$TMP/lb-allowed" "pod-b .*"
# v1.23 marks the packet in nat (KUBE-FW -> KUBE-MARK-DROP, kubelet's mark, ensured by kube-natd); today's layout
# drops it in filter KUBE-PROXY-FIREWALL. The VIP is not the node's own address here, so v1.23's marked packet is
# routed on, un-NATed, to the sink: it reaches no endpoint either way.
if [ "$LAYOUT" = v1.23 ]; then fw_table=nat fw_chain=KUBE-MARK-DROP fw_rule="MARK .*0x8000"
else fw_table=filter fw_chain=KUBE-PROXY-FIREWALL fw_rule="DROP .*192\.0\.2\.10"; fi
fw_before=$(drop_counter $fw_table $fw_chain "$fw_rule")
probe blocked tcp 192.0.2.10 80 1 1.5 > "$TMP/lb-blocked"
fw_after=$(drop_counter $fw_table $fw_chain "$fw_rule")
check "LB IP 192.0.2.10:80 from the blocked client (192.168.20.2): no answer (timeout)" \
    every_answer "$TMP/lb-blocked" TIMEOUT
check "LB IP 192.0.2.10 from the blocked client: caught by $fw_table $fw_chain" \
    counted "$fw_before" "$fw_after" "$fw_chain $fw_rule"
probe blocked tcp 10.96.0.10 80 1 2 > "$TMP/blocked-cip"
check "the blocked client's link works: ClusterIP 10.96.0.10:80 answers it" \
    every_answer "$TMP/blocked-cip" "pod-(a|b|remote) .*"

# --- externalTrafficPolicy Local ------------------------------------------------------------------------
probe client tcp 192.0.2.11 80 10 2 > "$TMP/etp-lb"
check "externalTrafficPolicy Local: LB IP 192.0.2.11 answered only by pod-a, which sees the client 192.168.10.2" \
    every_answer "$TMP/etp-lb" "pod-a 192\.168\.10\.2"
probe client tcp "$TOPO_NODE_IP" 30082 10 2 > "$TMP/etp-np"
check "externalTrafficPolicy Local: NodePort 30082 answered only by pod-a, which sees the client 192.168.10.2" \
    every_answer "$TMP/etp-np" "pod-a 192\.168\.10\.2"
# v1.23: KUBE-XLB marks it, kubelet's KUBE-FIREWALL (ensured by kube-natd) drops it in INPUT.
if [ "$LAYOUT" = v1.23 ]; then etp_chain=KUBE-FIREWALL etp_rule="DROP .*mark match 0x8000"
else etp_chain=KUBE-EXTERNAL-SERVICES etp_rule="DROP .*dpt:30083"; fi
etp_before=$(drop_counter filter $etp_chain "$etp_rule")
probe client tcp "$TOPO_NODE_IP" 30083 1 1.5 > "$TMP/etp-none"
etp_after=$(drop_counter filter $etp_chain "$etp_rule")
check "externalTrafficPolicy Local without local endpoints: NodePort 30083 gets no answer (dropped)" \
    every_answer "$TMP/etp-none" TIMEOUT
check "NodePort 30083: dropped by filter $etp_chain" counted "$etp_before" "$etp_after" "$etp_chain DROP"

# --- internalTrafficPolicy Local, session affinity, no endpoints ----------------------------------------
probe pod-dns tcp 10.96.0.17 80 20 2 > "$TMP/itp"
check "internalTrafficPolicy Local: 10.96.0.17 from a pod answered only by the local endpoint pod-b (20 tries)" \
    every_answer "$TMP/itp" "pod-b 10\.244\.1\.12"
probe client tcp 10.96.0.16 80 20 2 > "$TMP/sticky"
sticky() {
    local n; n=$(answers "$TMP/sticky" | grep -cE '^pod-(a|b|remote) ')
    [ "$n" = 20 ] && [ "$(pods_in "$TMP/sticky" | wc -w)" = 1 ] && return 0
    show "$TMP/sticky"; return 1
}
check "ClientIP affinity: 20 connections to 10.96.0.16 from one client all reach one backend ($(pods_in "$TMP/sticky"))" sticky
probe client tcp 10.96.0.18 80 1 3 > "$TMP/empty"
refused_at_once() {
    local ms; ms=$(sed -n 's/^REFUSED ms=//p' "$TMP/empty")
    [ -n "$ms" ] && [ "$ms" -lt 500 ] && return 0
    show "$TMP/empty"; return 1
}
check "no endpoints: 10.96.0.18:80 refused at once (REJECT, $(sed 's/.*ms=//' "$TMP/empty") ms)" refused_at_once

# --- hairpin --------------------------------------------------------------------------------------------
probe pod-a tcp 10.96.0.10 80 60 2 > "$TMP/hairpin"
hairpin() {
    local seen; seen=$(answers "$TMP/hairpin" | grep -m1 '^pod-a ' | awk '{print $2}')
    [ -n "$seen" ] || { echo "     pod-a never reached itself in 60 tries"; show "$TMP/hairpin"; return 1; }
    [ "$seen" != "${TOPO_POD_IP[a]}" ] && echo " $NODE_ADDRS " | grep -q " $seen " && return 0
    echo "     pod-a saw itself as $seen, not a masqueraded node address"; return 1
}
check "hairpin: pod-a reaching 10.96.0.10 lands on itself, answered, source masqueraded to the node" hairpin

# --- UDP and TCP DNS, Endpoints (v1) --------------------------------------------------------------------
probe pod-a udp 10.96.0.53 53 3 2 > "$TMP/dns-udp"
check "kube-dns 10.96.0.53:53 UDP from a pod answered by pod-dns" every_answer "$TMP/dns-udp" "pod-dns 10\.244\.1\.10"
probe pod-a tcp 10.96.0.53 53 3 2 > "$TMP/dns-tcp"
check "kube-dns 10.96.0.53:53 TCP from a pod answered by pod-dns" every_answer "$TMP/dns-tcp" "pod-dns 10\.244\.1\.10"
probe client tcp 10.96.0.21 8081 3 2 > "$TMP/legacy"
check "Endpoints (v1) Service legacy 10.96.0.21:8081 answered by pod-dns" every_answer "$TMP/legacy" "pod-dns .*"

# --- IPv6 -----------------------------------------------------------------------------------------------
probe client tcp fd00:96::22 80 5 2 > "$TMP/v6-cip"
check "IPv6 ClusterIP [fd00:96::22]:80 from an IPv6 client answered by pod-a ([fd00:244:1::10])" \
    every_answer "$TMP/v6-cip" "pod-a .*"
probe client tcp "$TOPO_NODE_IP6" 30086 5 2 > "$TMP/v6-np"
check "IPv6 NodePort [$TOPO_NODE_IP6]:30086 from an IPv6 client answered by pod-a, source masqueraded to the node" \
    every_answer "$TMP/v6-np" "pod-a ($NODE_RE)"

# --- SCTP: rule level, and traffic where the kernel has SCTP sockets -------------------------------------
topo_in node iptables-$FLAVOR-save > "$TMP/node.v4"
topo_in node ip6tables-$FLAVOR-save > "$TMP/node.v6"
check "SCTP: the kernel holds the sctp ClusterIP rule for 10.96.0.19:9999" \
    grep -qE -- '-A KUBE-SERVICES -d 10\.96\.0\.19/32 -p sctp .*--dport 9999 .*-j KUBE-SVC-' "$TMP/node.v4"
check "SCTP: the kernel holds the sctp DNAT to 10.244.1.12:9999" \
    grep -qE -- '-p sctp .*-j DNAT --to-destination 10\.244\.1\.12:9999' "$TMP/node.v4"

# The same rules through iptables-restore of the dry-run text, in a scratch namespace, give the same tables.
RESTORES=0
# equivalent [LAYOUT [kubelet-aside]]: the node's tables equal a scratch namespace restored from the dry run. With
# kubelet-aside, kubelet's chains (KUBE-FIREWALL, KUBE-MARK-DROP) and the jumps to them are left out of the
# comparison: a layout switch leaves the rules kube-natd only ensures where they are (they may be kubelet's).
equivalent() {
    local rf=no layout=${1:-$LAYOUT} aside=${2:-} restore saved
    saved=$(topo_in node iptables-$FLAVOR-save)
    case "$saved" in *--random-fully*) rf=yes;; esac
    topo_in node "$KUBE_NATD" --config "$CONFIG" --source "$CLUSTER" --dry-run --ip-family dual --random-fully "$rf" \
        --rule-layout "$layout" \
        > "$TMP/dry.txt" 2> "$TMP/dry.log" || { cat "$TMP/dry.log"; return 1; }
    sed '/^# IPv6/,$d' "$TMP/dry.txt" > "$TMP/dry.v4"
    sed -n '/^# IPv6/,$p' "$TMP/dry.txt" > "$TMP/dry.v6"
    RESTORES=$((RESTORES + 1)); restore="restore$RESTORES"
    topo_add_ns "$restore" || return 1
    # The dry run writes the nfacct matches --once writes; --once created their objects, the restore needs them too.
    local o; for o in ct_state_invalid_dropped_pkts localhost_nps_accepted_pkts; do
        topo_in "$restore" python3 "$HERE/nfacct-add.py" $o || return 1; done
    topo_in "$restore" iptables-$FLAVOR-restore --noflush < "$TMP/dry.v4" || return 1
    topo_in "$restore" ip6tables-$FLAVOR-restore --noflush < "$TMP/dry.v6" || return 1
    local fam save diffs=0
    for fam in v4 v6; do
        save=iptables-$FLAVOR-save; [ $fam = v6 ] && save=ip6tables-$FLAVOR-save
        for t in filter nat; do
            topo_in node "$save" -t $t | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/' > "$TMP/a.$fam.$t"
            topo_in "$restore" "$save" -t $t | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/' > "$TMP/b.$fam.$t"
            if [ -n "$aside" ]; then
                sed -i -E '/KUBE-FIREWALL|KUBE-MARK-DROP/d' "$TMP/a.$fam.$t" "$TMP/b.$fam.$t"
            fi
            cmp -s "$TMP/a.$fam.$t" "$TMP/b.$fam.$t" || { diff -u "$TMP/a.$fam.$t" "$TMP/b.$fam.$t" | head -20; diffs=1; }
        done
    done
    [ "$diffs" = 0 ] || return 1
    # Two empty tables are equal too: the comparison only counts when the rules are there.
    grep -q '^:KUBE-SERVICES' "$TMP/a.v4.nat" && grep -q '^:KUBE-SERVICES' "$TMP/a.v6.nat" && return 0
    echo "     the node's nat tables hold no KUBE-SERVICES chain"; return 1
}
check "equivalence: libiptc commit and iptables-restore of the dry-run text give the same filter and nat tables (both families, SCTP included)" equivalent
if [ "$TOPO_SCTP" = 1 ]; then
    probe pod-a sctp 10.96.0.19 9999 3 2 > "$TMP/sctp"
    check "SCTP ClusterIP 10.96.0.19:9999 from a pod answered by pod-dns" every_answer "$TMP/sctp" "pod-dns .*"
else
    skip "SCTP ClusterIP 10.96.0.19:9999 from a pod answered by pod-dns" "this kernel has no SCTP sockets (rule-level checks above only)"
fi

# --- switching layouts on a loaded node --------------------------------------------------------------------
# Restarting with the other --rule-layout replaces one layout with the other in one commit per table: traffic to a
# ClusterIP is answered throughout, and the result equals the other layout restored into an empty namespace
# (nothing of the first layout is left behind). Then back again.
switch_to() { # switch_to LAYOUT: --once with it while a client keeps connecting; every attempt answered
    local to=$1 commits
    probe client tcp 10.96.0.10 80 400 2 > "$TMP/switch-$to" &
    local prober=$!
    wait_for 50 test -s "$TMP/switch-$to" # the client is connecting (its first answer is in) before the switch
    topo_in node "$KUBE_NATD" --config "$CONFIG" --source "$CLUSTER" --once --backend "$BACKEND" --ip-family dual \
        --rule-layout "$to" -v 4 > "$TMP/switch-$to.log" 2>&1 || { sed 's/^/     /' "$TMP/switch-$to.log"; return 1; }
    wait "$prober"
    commits=$(grep -cE 'commit=[0-9.]+s' "$TMP/switch-$to.log")
    [ "$commits" -le 4 ] || { echo "     $commits commits for two tables in two families"; return 1; }
    every_answer "$TMP/switch-$to" "pod-(a|b|remote) .*" || return 1
    equivalent "$to" kubelet-aside || return 1
    # kubelet's rules: each exactly once (ensured, never duplicated), and the ones the layout needs are there.
    local dup need
    dup=$(topo_in node iptables-$FLAVOR-save | grep -E '^-A .*(KUBE-FIREWALL|KUBE-MARK-DROP)' | sort | uniq -d)
    [ -z "$dup" ] || { echo "     duplicated: $dup"; return 1; }
    if [ "$to" = v1.23 ]; then
        local saved; saved=$(topo_in node iptables-$FLAVOR-save)
        for need in '-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000' '-A INPUT -j KUBE-FIREWALL' \
            '-A OUTPUT -j KUBE-FIREWALL' 'kubernetes firewall for dropping marked packets'; do
            grep -qF -- "$need" <<< "$saved" || { echo "     missing: $need"; return 1; }
        done
    fi
}
other=current; [ "$LAYOUT" = current ] && other=v1.23
check "layout switch $LAYOUT -> $other under traffic: one commit per table, every try answered, no stale chain left" \
    switch_to "$other"
check "layout switch $other -> $LAYOUT under traffic: one commit per table, every try answered, no stale chain left" \
    switch_to "$LAYOUT"

echo "$SUITE: $PASS passed, $FAIL failed, $SKIP skipped ($(($(date +%s) - STARTED)) s)"
[ "$FAIL" = 0 ]
