#!/usr/bin/env bash
# Kernel tests of what kube-natd removes of kube-proxy's other modes, in throwaway network namespaces only (root).
#
#   Tests/kernel/cleanup.sh path/to/kube-natd
#
# - Start (as upstream's iptables mode on every start): `--once` (auto, libiptc, libnftnl) and the daemon delete
#   kube-proxy's nftables-mode tables (`table ip kube-proxy`, `table ip6 kube-proxy`, a realistic ruleset loaded
#   with `nft -f`) and nothing else: foreign nft tables, including `table ip kube-proxy-other` and
#   `table inet kube-proxy`, stay byte-identical. `--dry-run` says so and touches nothing.
# - `--cleanup`: the IPVS mode's chains and jumps (IPv4 in iptables-legacy, IPv6 in ip6tables-nft, so both
#   backends' cleanups are exercised), its ipsets (both families' names), the nftables-mode tables, and the
#   dummy `kube-ipvs0` go; foreign rules, chains (also `KUBE-IPVS-EXTRA`), sets and links stay: the legacy saves,
#   `nft list ruleset` and `ipset list -n` are byte-identical to what they were before kube-proxy's state was
#   added. A second `--cleanup` finds nothing. A `kube-ipvs0` that is not a dummy stays and is reported (upstream).
# - What this kernel cannot hold is counted as skipped, with the reason: IPVS virtual servers (no /proc/net/ip_vs),
#   a dummy link (no CONFIG_DUMMY), ipsets (no ipset tool or no ip_set), a kernel without nf_tables. Those paths
#   are unit-tested with a fake host (Tests/NetfilterTests/ProxyModeLeftoversTests.swift).
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CFG="$ROOT/Config/kube-proxy-config.yaml"
EX="$ROOT/Config/example-cluster.yaml"
[ -x "$BIN" ] || { echo "cleanup: $BIN not found (swift build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "cleanup: needs root (network namespaces)"; exit 2; }

PASS=0
FAIL=0
SKIP=0
NAMESPACES=()
DAEMON_PID=""
TMP=$(mktemp -d /tmp/knat-cleanup.XXXXXX)
teardown() {
    [ -n "$DAEMON_PID" ] && kill -KILL "$DAEMON_PID" 2>/dev/null
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
}
trap teardown EXIT
trap 'exit 130' INT TERM

newns() { local ns="kcl-$$-$1"; ip netns add "$ns" || exit 2; NAMESPACES+=("$ns"); ip netns exec "$ns" ip link set lo up; }
delns() { ip netns del "kcl-$$-$1" 2>/dev/null; }
X() { local ns="kcl-$$-$1"; shift; timeout 120 ip netns exec "$ns" "$@"; }
natd() { local ns=$1; shift; X "$ns" "$BIN" "$@"; }
ok() { PASS=$((PASS + 1)); echo "  ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -30 | sed 's/^/       /'; }
skip() { SKIP=$((SKIP + 1)); echo "  skip $1"; }
same() { # same NAME A B: identical files, or the diff
    if cmp -s "$2" "$3"; then ok "$1"; else bad "$1" "$(diff -u "$2" "$3" | head -40)"; fi
}
has() { grep -qF -- "$2" <<< "$1"; } # has TEXT STRING
tables() { X "$1" nft list tables | sort; }
until_true() { # until_true TRIES COMMAND...: every 0.1 s, at most TRIES times
    local n=$1 i; shift
    for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}

# kube-proxy's nftables mode as it leaves a node (pkg/proxy/nftables: one table per family, its base chains,
# sets and verdict maps, a Service and an endpoint), re-typed from its rule layout.
kube_proxy_nft() { # NS
    X "$1" nft -f - <<'NFT'
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy services
add chain ip kube-proxy service-ULMVA6XW-default/kubernetes/tcp/https
add chain ip kube-proxy endpoint-5OJB2KTY-default/kubernetes/tcp/https__192.168.10.1/6443
add chain ip kube-proxy firewall-check
add chain ip kube-proxy filter-prerouting { type filter hook prerouting priority dstnat - 10 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority dstnat ; }
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority srcnat ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy filter-prerouting ct state new jump firewall-check
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy service-ULMVA6XW-default/kubernetes/tcp/https ip daddr 10.96.0.1 tcp dport 443 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-default/kubernetes/tcp/https numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-default/kubernetes/tcp/https__192.168.10.1/6443 }
add rule ip kube-proxy endpoint-5OJB2KTY-default/kubernetes/tcp/https__192.168.10.1/6443 ip saddr 192.168.10.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-default/kubernetes/tcp/https__192.168.10.1/6443 meta l4proto tcp dnat to 192.168.10.1:6443
add element ip kube-proxy cluster-ips { 10.96.0.1 }
add element ip kube-proxy service-ips { 10.96.0.1 . tcp . 443 : goto service-ULMVA6XW-default/kubernetes/tcp/https }
add table ip6 kube-proxy { comment "rules for kube-proxy" ; }
add chain ip6 kube-proxy services
add chain ip6 kube-proxy nat-output { type nat hook output priority -100 ; }
add set ip6 kube-proxy cluster-ips { type ipv6_addr ; comment "Active ClusterIPs" ; }
add map ip6 kube-proxy service-ips { type ipv6_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add rule ip6 kube-proxy services ip6 daddr . meta l4proto . th dport vmap @service-ips
add rule ip6 kube-proxy nat-output jump services
add element ip6 kube-proxy cluster-ips { fd00:96::1 }
NFT
}

# Native nft tables that are not kube-proxy's: similar names, the same name in another family. No rule in an
# ip/ip6 table, so that `--backend libiptc` is not refused for rules living in nf_tables (HostModeDetector).
foreign_nft() { # NS
    X "$1" nft -f - <<'NFT'
table inet filter {
    set allowed { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }
    chain input { type filter hook input priority 10; policy accept; ip saddr @allowed tcp dport 22 counter accept; }
}
table inet kube-proxy {
    chain c { udp dport 53 counter; }
}
table ip kube-proxy-other {
    set s { type ipv4_addr; elements = { 192.0.2.9 } }
    chain c { }
}
NFT
}
foreign_nft_state() { # NS: the foreign tables, byte for byte
    X "$1" nft list table inet filter; X "$1" nft list table inet kube-proxy; X "$1" nft list table ip kube-proxy-other
}

precondition_nft() { # NS WHAT: the fixture loaded what it meant to, or the run stops here
    local t; t=$(tables "$1")
    local want
    for want in "table ip kube-proxy" "table ip6 kube-proxy" "table inet filter" "table inet kube-proxy" "table ip kube-proxy-other"; do
        if ! grep -qx "$want" <<< "$t"; then bad "$2: fixture: $want not loaded" "$t"; return 1; fi
    done
    local n; n=$(X "$1" nft list table ip kube-proxy | grep -c 'chain ')
    if [ "$n" -lt 8 ]; then bad "$2: fixture: table ip kube-proxy has $n chains, want 11" "$(X "$1" nft list table ip kube-proxy)"; return 1; fi
    return 0
}

# ------------------------------------------------------------------------------------------------------------
echo "start: --once deletes table ip/ip6 kube-proxy and nothing else"
for backend in auto libiptc libnftnl; do
    newns s
    foreign_nft s; kube_proxy_nft s
    if ! precondition_nft s "$backend"; then delns s; continue; fi
    foreign_nft_state s > "$TMP/foreign.before"
    args=(--config "$CFG" --source "$EX" --once --ip-family dual)
    [ "$backend" != auto ] && args+=(--backend "$backend")
    if ! out=$(natd s "${args[@]}" 2>&1); then bad "$backend: --once failed" "$out"; delns s; continue; fi
    t=$(tables s)
    if ! grep -qx "table ip kube-proxy" <<< "$t" && ! grep -qx "table ip6 kube-proxy" <<< "$t"; then
        ok "$backend: table ip kube-proxy and table ip6 kube-proxy deleted"
    else
        bad "$backend: a kube-proxy table is still there" "$t"
    fi
    foreign_nft_state s > "$TMP/foreign.after"
    same "$backend: inet filter, inet kube-proxy, ip kube-proxy-other byte-identical" "$TMP/foreign.before" "$TMP/foreign.after"
    if has "$out" "removed nftables table ip kube-proxy" && has "$out" "removed nftables table ip6 kube-proxy"; then
        ok "$backend: the log names both tables removed"
    else
        bad "$backend: the log does not name the removed tables" "$out"
    fi
    # the leftovers went before the backend was chosen: they did not count as "rules living in nf_tables"
    case "$backend" in
        libiptc) if X s iptables-legacy -t nat -S KUBE-SERVICES > /dev/null 2>&1; then ok "libiptc: rules written to legacy x_tables"; else bad "libiptc: no KUBE-SERVICES in legacy nat" "$out"; fi ;;
        *) if X s iptables-nft -t nat -S KUBE-SERVICES > /dev/null 2>&1; then ok "$backend: rules written to nf_tables"; else bad "$backend: no KUBE-SERVICES in nft nat" "$out"; fi ;;
    esac
    # a second start finds nothing to delete and says nothing about it
    out=$(natd s "${args[@]}" 2>&1)
    if ! has "$out" "nftables table"; then ok "$backend: a second --once has nothing to delete"; else bad "$backend: second --once" "$out"; fi
    delns s
done

echo "start: the daemon deletes them too; --dry-run only says so"
newns d
foreign_nft d; kube_proxy_nft d
if precondition_nft d daemon; then
    out=$(natd d --config "$CFG" --source "$EX" --dry-run 2>&1 >/dev/null)
    if has "$out" "would also delete kube-proxy's nftables-mode tables"; then ok "--dry-run says what a start would delete"; else bad "--dry-run does not say it" "$out"; fi
    if grep -qx "table ip kube-proxy" <<< "$(tables d)"; then ok "--dry-run left table ip kube-proxy"; else bad "--dry-run deleted table ip kube-proxy"; fi
    foreign_nft_state d > "$TMP/foreign.before"
    ip netns exec "kcl-$$-d" timeout 60 "$BIN" --config "$CFG" --source "$EX" --backend libnftnl > "$TMP/daemon.log" 2>&1 &
    DAEMON_PID=$!
    gone() { ! grep -q -e "table ip kube-proxy$" -e "table ip6 kube-proxy$" <<< "$(tables d)"; }
    if until_true 100 gone; then ok "daemon: both kube-proxy tables deleted at start"; else bad "daemon: kube-proxy tables still there after 10 s" "$(cat "$TMP/daemon.log")"; fi
    synced() { grep -q "first sync done" "$TMP/daemon.log"; }
    until_true 100 synced || bad "daemon: no sync within 10 s" "$(cat "$TMP/daemon.log")"
    kill -TERM "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=""
    foreign_nft_state d > "$TMP/foreign.after"
    same "daemon: foreign nft tables byte-identical" "$TMP/foreign.before" "$TMP/foreign.after"
    if grep -q "removed nftables table ip kube-proxy, left by kube-proxy's nftables mode" "$TMP/daemon.log"; then ok "daemon: logged what it removed"; else bad "daemon: no log line" "$(head -20 "$TMP/daemon.log")"; fi
fi
delns d

# ------------------------------------------------------------------------------------------------------------
echo "--cleanup: kube-proxy's IPVS and nftables modes, foreign state untouched"
newns c
HAVE_IPSET=0
if command -v ipset > /dev/null && X c ipset list -n > /dev/null 2>&1; then HAVE_IPSET=1; fi
# Foreign state first: a rule in every base chain the fixture uses (so no base chain appears only with the
# fixture), a foreign chain with a KUBE- name kube-proxy does not use, a foreign set in use by a foreign rule.
for t in "nat PREROUTING" "nat OUTPUT" "nat POSTROUTING" "filter INPUT" "filter FORWARD" "filter OUTPUT"; do
    set -- $t
    X c iptables-legacy -t "$1" -A "$2" -s 198.51.100.7 -m comment --comment "foreign $2" -j ACCEPT
    X c ip6tables-nft -t "$1" -A "$2" -s 2001:db8:7::7 -m comment --comment "foreign $2" -j ACCEPT
done
X c iptables-legacy -t filter -N KUBE-IPVS-EXTRA
X c iptables-legacy -t filter -A KUBE-IPVS-EXTRA -p udp --dport 4789 -j DROP
X c ip6tables-nft -t filter -N FOREIGN-CHAIN
X c ip6tables-nft -t filter -A FOREIGN-CHAIN -p udp --dport 4789 -j DROP
foreign_nft c
if [ "$HAVE_IPSET" = 1 ]; then
    X c ipset create FOREIGN-SET hash:ip
    X c ipset create KUBE-CLUSTER-IPX hash:ip,port
    X c iptables-legacy -t filter -A INPUT -m set --match-set FOREIGN-SET src -j ACCEPT
fi
X c ip link add keep0 type veth peer name keep1
X c ip link add keep-dummy type dummy 2> /dev/null # another dummy link, which must stay (where dummies exist)
state() { # NS: everything a cleanup could touch, counters aside
    X "$1" iptables-legacy-save | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'
    X "$1" ip6tables-legacy-save | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'
    X "$1" nft list ruleset 2> /dev/null # (its warnings about iptables-nft's tables go to stderr)
    [ "$HAVE_IPSET" = 1 ] && X "$1" ipset list -n | sort
    X "$1" ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | cut -d' ' -f1-2 | sort
}
state c > "$TMP/state.before"

# kube-proxy's IPVS mode (pkg/proxy/ipvs): its sets, chains, rules and prepended jumps, IPv4 in legacy x_tables,
# IPv6 in nf_tables through ip6tables-nft.
ipvs_mode() { # NS TOOL SETPREFIX
    local ns=$1 T=$2 S=$3 c
    local setmatch=()
    for c in KUBE-SERVICES KUBE-POSTROUTING KUBE-NODE-PORT KUBE-LOAD-BALANCER KUBE-MARK-MASQ; do X "$ns" "$T" -t nat -N $c; done
    for c in KUBE-FORWARD KUBE-NODE-PORT KUBE-PROXY-FIREWALL KUBE-SOURCE-RANGES-FIREWALL KUBE-IPVS-FILTER KUBE-IPVS-OUT-FILTER; do X "$ns" "$T" -t filter -N $c; done
    X "$ns" "$T" -t nat -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
    X "$ns" "$T" -t nat -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
    X "$ns" "$T" -t nat -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
    X "$ns" "$T" -t nat -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
    X "$ns" "$T" -t nat -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
    X "$ns" "$T" -t nat -A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
    X "$ns" "$T" -t filter -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
    X "$ns" "$T" -t filter -A KUBE-SOURCE-RANGES-FIREWALL -j DROP
    X "$ns" "$T" -t filter -A KUBE-IPVS-OUT-FILTER -j RETURN
    if [ "$HAVE_IPSET" = 1 ]; then
        X "$ns" "$T" -t nat -A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set ${S}CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
        X "$ns" "$T" -t nat -A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set ${S}NODE-PORT-TCP dst -j KUBE-MARK-MASQ
        X "$ns" "$T" -t filter -A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set ${S}HEALTH-CHECK-NODE-PORT dst -j ACCEPT
        X "$ns" "$T" -t filter -A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load balancer with sourceRange" -m set --match-set ${S}LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL
        X "$ns" "$T" -t filter -A KUBE-IPVS-FILTER -m set --match-set ${S}IPVS-IPS dst -m conntrack --ctstate NEW -j REJECT
    else
        X "$ns" "$T" -t filter -A KUBE-PROXY-FIREWALL -p tcp --dport 443 -j KUBE-SOURCE-RANGES-FIREWALL
    fi
    X "$ns" "$T" -t nat -I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
    X "$ns" "$T" -t nat -I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
    X "$ns" "$T" -t nat -I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
    X "$ns" "$T" -t filter -I FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
    X "$ns" "$T" -t filter -I INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT
    X "$ns" "$T" -t filter -I INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
    X "$ns" "$T" -t filter -I FORWARD -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
    X "$ns" "$T" -t filter -I INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
    X "$ns" "$T" -t filter -I OUTPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER
}
IPVS_SETS4="KUBE-CLUSTER-IP KUBE-NODE-PORT-TCP KUBE-HEALTH-CHECK-NODE-PORT KUBE-LOAD-BALANCER-FW KUBE-IPVS-IPS KUBE-LOOP-BACK"
IPVS_SETS6="KUBE-6-CLUSTER-IP KUBE-6-NODE-PORT-TCP KUBE-6-HEALTH-CHECK-NODE-PORT KUBE-6-LOAD-BALANCER-FW KUBE-6-IPVS-IPS"
if [ "$HAVE_IPSET" = 1 ]; then
    X c ipset create KUBE-CLUSTER-IP hash:ip,port; X c ipset create KUBE-LOAD-BALANCER-FW hash:ip,port
    X c ipset create KUBE-NODE-PORT-TCP bitmap:port range 0-65535; X c ipset create KUBE-HEALTH-CHECK-NODE-PORT bitmap:port range 0-65535
    X c ipset create KUBE-IPVS-IPS hash:ip; X c ipset create KUBE-LOOP-BACK hash:ip,port,ip
    X c ipset add KUBE-CLUSTER-IP 10.96.0.1,tcp:443
    X c ipset create KUBE-6-CLUSTER-IP hash:ip,port family inet6; X c ipset create KUBE-6-LOAD-BALANCER-FW hash:ip,port family inet6
    X c ipset create KUBE-6-NODE-PORT-TCP bitmap:port range 0-65535; X c ipset create KUBE-6-HEALTH-CHECK-NODE-PORT bitmap:port range 0-65535
    X c ipset create KUBE-6-IPVS-IPS hash:ip family inet6
fi
ipvs_mode c iptables-legacy KUBE-
ipvs_mode c ip6tables-nft KUBE-6-
kube_proxy_nft c
HAVE_DUMMY=0
if X c ip link add kube-ipvs0 type dummy 2> /dev/null; then
    HAVE_DUMMY=1
    X c ip addr add 10.96.0.1/32 dev kube-ipvs0
fi
HAVE_IPVS=0
if X c test -e /proc/net/ip_vs && command -v ipvsadm > /dev/null; then
    HAVE_IPVS=1
    X c ipvsadm -A -t 10.96.0.1:443 -s rr && X c ipvsadm -a -t 10.96.0.1:443 -r 192.168.10.1:6443 -m
fi

# Preconditions: the fixture holds what the checks below expect to see removed.
pre=1
for c in KUBE-SERVICES KUBE-POSTROUTING KUBE-NODE-PORT KUBE-LOAD-BALANCER KUBE-MARK-MASQ; do
    X c iptables-legacy -t nat -S $c > /dev/null 2>&1 || { bad "fixture: legacy nat $c missing"; pre=0; }
    X c ip6tables-nft -t nat -S $c > /dev/null 2>&1 || { bad "fixture: ip6tables-nft nat $c missing"; pre=0; }
done
for c in KUBE-FORWARD KUBE-NODE-PORT KUBE-PROXY-FIREWALL KUBE-SOURCE-RANGES-FIREWALL KUBE-IPVS-FILTER KUBE-IPVS-OUT-FILTER; do
    X c iptables-legacy -t filter -S $c > /dev/null 2>&1 || { bad "fixture: legacy filter $c missing"; pre=0; }
    X c ip6tables-nft -t filter -S $c > /dev/null 2>&1 || { bad "fixture: ip6tables-nft filter $c missing"; pre=0; }
done
n4=$(X c iptables-legacy-save | grep -c -- '-j KUBE-\(SERVICES\|POSTROUTING\|FORWARD\|NODE-PORT\|PROXY-FIREWALL\|IPVS-FILTER\|IPVS-OUT-FILTER\)$')
[ "$n4" -ge 9 ] || { bad "fixture: $n4 IPVS-mode jumps in legacy, want 9 or more"; pre=0; }
precondition_nft c cleanup || pre=0
if [ "$HAVE_IPSET" = 1 ]; then
    sets=$(X c ipset list -n)
    for s in $IPVS_SETS4 $IPVS_SETS6 FOREIGN-SET KUBE-CLUSTER-IPX; do grep -qx "$s" <<< "$sets" || { bad "fixture: ipset $s missing"; pre=0; }; done
fi
[ "$pre" = 1 ] && ok "fixture: IPVS-mode chains and jumps in both worlds, nftables-mode tables, ipsets loaded"
if diff -q "$TMP/state.before" <(state c) > /dev/null; then bad "fixture: the state did not change (the comparison below would prove nothing)"; fi

if out=$(natd c --cleanup 2>&1); then ok "--cleanup exits 0"; else bad "--cleanup failed" "$out"; fi
echo "$out" | sed 's/^/       | /'
state c > "$TMP/state.after"
same "--cleanup: legacy saves, nft list ruleset, ipsets and links are exactly the foreign ones again" "$TMP/state.before" "$TMP/state.after"
left=$( { X c iptables-legacy-save; X c ip6tables-nft-save; } | grep -E 'KUBE-(SERVICES|POSTROUTING|NODE-PORT|LOAD-BALANCER|MARK-MASQ|FORWARD|PROXY-FIREWALL|SOURCE-RANGES-FIREWALL|IPVS-FILTER|IPVS-OUT-FILTER)' || true)
if [ -z "$left" ]; then ok "--cleanup: no IPVS-mode chain or jump left in either world"; else bad "--cleanup left" "$left"; fi
# one line per chain removed, named with its table, family and world: 11 IPVS-mode chains in each world
for w in "IPv4, legacy x_tables" "IPv6, nf_tables"; do
    n=$(grep -c "removed chain .* ($w)" <<< "$out")
    if [ "$n" = 11 ] && has "$out" "removed chain filter KUBE-IPVS-OUT-FILTER ($w)"; then ok "--cleanup: one line per chain removed ($w: $n)"; else bad "--cleanup: $n chain lines for $w, want 11" "$out"; fi
done
if X c iptables-legacy -t filter -S KUBE-IPVS-EXTRA > /dev/null 2>&1; then ok "--cleanup: foreign chain KUBE-IPVS-EXTRA kept"; else bad "--cleanup deleted KUBE-IPVS-EXTRA"; fi
if has "$out" "removed nftables table ip kube-proxy" && has "$out" "removed nftables table ip6 kube-proxy"; then ok "--cleanup: reports both nftables tables"; else bad "--cleanup: nftables tables not reported" "$out"; fi
if has "$out" "cleanup done (IPv4 and IPv6):"; then ok "--cleanup: prints a summary"; else bad "--cleanup: no summary" "$out"; fi
if [ "$HAVE_IPSET" = 1 ]; then
    sets=$(X c ipset list -n)
    gone=1; for s in $IPVS_SETS4 $IPVS_SETS6; do grep -qx "$s" <<< "$sets" && gone=0; done
    if [ "$gone" = 1 ]; then ok "--cleanup: the IPVS mode's ipsets of both families destroyed"; else bad "--cleanup left IPVS ipsets" "$sets"; fi
    if grep -qx FOREIGN-SET <<< "$sets" && grep -qx KUBE-CLUSTER-IPX <<< "$sets"; then ok "--cleanup: FOREIGN-SET (in use) and KUBE-CLUSTER-IPX kept"; else bad "--cleanup removed a foreign set" "$sets"; fi
    n=$(grep -c "removed ipset " <<< "$out")
    want=$(echo $IPVS_SETS4 $IPVS_SETS6 | wc -w)
    if [ "$n" = "$want" ]; then ok "--cleanup: one line per ipset ($n)"; else bad "--cleanup: $n ipset lines, want $want" "$out"; fi
else
    skip "ipsets: no working ipset tool or no ip_set in this kernel (unit-tested with a fake host)"
fi
if [ "$HAVE_DUMMY" = 1 ]; then
    if ! X c ip link show kube-ipvs0 > /dev/null 2>&1; then ok "--cleanup: dummy kube-ipvs0 deleted"; else bad "--cleanup left kube-ipvs0"; fi
    if has "$out" "removed device kube-ipvs0"; then ok "--cleanup: reports kube-ipvs0"; else bad "--cleanup: kube-ipvs0 not reported" "$out"; fi
else
    skip "dummy kube-ipvs0: this kernel has no dummy link type (CONFIG_DUMMY); deletion unit-tested with a fake host"
fi
if [ "$HAVE_IPVS" = 1 ]; then
    if [ -z "$(X c ipvsadm -Sn)" ]; then ok "--cleanup: IPVS virtual servers flushed"; else bad "--cleanup left virtual servers" "$(X c ipvsadm -Ln)"; fi
else
    if has "$out" "skipped IPVS virtual servers: the kernel has no IPVS"; then ok "--cleanup: says the kernel has no IPVS"; else bad "--cleanup: no word about IPVS" "$out"; fi
    skip "IPVS virtual servers: this kernel has no IPVS (/proc/net/ip_vs absent) or no ipvsadm; flush unit-tested with a fake host"
fi
if out2=$(natd c --cleanup 2>&1) && has "$out2" ": 0 iptables chains, 0 jumps, 0 nftables tables, 0 IPVS virtual servers, 0 ipsets, 0 devices removed"; then
    ok "a second --cleanup finds nothing"
else
    bad "second --cleanup" "$out2"
fi
state c > "$TMP/state.again"
same "a second --cleanup changes nothing" "$TMP/state.before" "$TMP/state.again"
delns c

echo "--cleanup: a kube-ipvs0 that is not a dummy stays, as upstream's DeleteDummyDevice refuses it"
newns v
X v ip link add kube-ipvs0 type veth peer name kube-ipvs0-peer
if out=$(natd v --cleanup 2>&1); then bad "--cleanup exited 0 with a veth named kube-ipvs0" "$out"; else ok "--cleanup exits non-zero"; fi
if has "$out" "could not remove device kube-ipvs0: a veth link, not the dummy device"; then ok "--cleanup says why"; else bad "--cleanup: no reason given" "$out"; fi
if X v ip link show kube-ipvs0 > /dev/null 2>&1; then ok "the veth kube-ipvs0 is still there"; else bad "the veth kube-ipvs0 was deleted"; fi
delns v

skip "a kernel without nf_tables: this one has it built in (no namespace can hide it); the quiet skip is unit-tested with a fake host"

echo "cleanup: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
