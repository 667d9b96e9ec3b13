#!/usr/bin/env bash
# Kernel test of the long-running mode (`kube-natd --source DIR --backend libiptc`), in throwaway network
# namespaces only (run as root).
#
#   Tests/kernel/daemon.sh path/to/kube-natd
#
# Builds the topology of lib/topology.sh, runs the daemon in its node namespace with small sync periods and
# asserts: startup rules, canaries and health endpoints; /metrics; incremental change and SIGHUP; drift repair
# (flushed and deleted chains, a deleted canary) with traffic afterwards; the ETP-Local health-check node port;
# a broken object at runtime; SIGTERM. Everything it creates goes on exit, Ctrl-C or failure.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# BACKEND=libnftnl runs the same suite through the nf_tables backend (iptables-nft tools read and break its rules).
BACKEND=${BACKEND:-libiptc}
FLAVOR=legacy
SUITE=daemon
[ "$BACKEND" = libnftnl ] && FLAVOR=nft SUITE=daemon-nft
[ -x "$BIN" ] || { echo "$SUITE: $BIN not found (swift build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$SUITE: needs root (network namespaces)"; exit 2; }
STARTED=$(date +%s)

# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
TMP=$(mktemp -d /tmp/knat-daemon.XXXXXX)
DAEMON_PID="" # the kube-natd process inside the node namespace
RUNNER_PID="" # the `timeout` wrapping it (its exit status is the daemon's)
cleanup() {
    [ -n "$DAEMON_PID" ] && kill -KILL "$DAEMON_PID" 2> /dev/null
    [ -n "$RUNNER_PID" ] && kill -KILL "$RUNNER_PID" 2> /dev/null
    [ -n "${NOTIFY_PID:-}" ] && kill "$NOTIFY_PID" 2> /dev/null
    topo_teardown
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"
N() { timeout 20 ip netns exec "$(topo_ns node)" "$@"; } # a command in the node namespace
# until_true TENTHS COMMAND...: retry COMMAND every 0.1 s for at most TENTHS tries.
until_true() {
    local n=$1 i; shift
    for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}
# KUBE-* chains and rules of every table, without counters (what kube-natd owns, plus canaries).
owned() { N iptables-$FLAVOR-save | grep -E '^(\*|:KUBE-|-A KUBE-|-A [A-Z]+ .*-j KUBE-)' | sed 's/\[[0-9]*:[0-9]*\]//'; }
curl_in() { N curl -s --max-time 2 "$@"; }
# is_now EXPECTED COMMAND...: COMMAND prints EXPECTED (re-run on every retry of until_true).
is_now() { local want=$1; shift; [ "$("$@")" = "$want" ]; }
hc_code() { curl_in -o /dev/null -w '%{http_code}' http://127.0.0.1:32001/; }
metrics() { curl_in http://127.0.0.1:10249/metrics; }
# metric NAME_WITH_LABEL_REGEX: the value of the first sample whose name+labels match (extended regex).
metric() { metrics | grep -E "^$1 " | head -1 | awk '{print $2}'; }
drift_count() { metric "kubenatd_drift_repairs_total\\{[^}]*table=\"$1\"[^}]*\\}"; }
log_lines() { wc -l < "$TMP/daemon.log"; }
# The first daemon rechecks its manifests only every hour: every edit below is loaded by SIGHUP, so a check can tell
# that SIGHUP (and nothing else) loaded it. (The restore-backend daemon of section 8 keeps the 1 s recheck.)
# reload: SIGHUP, then the daemon's "(SIGHUP)" read logged after it (at most 5 s).
reload() {
    local l; l=$(log_lines)
    kill -HUP "$DAEMON_PID" 2> /dev/null || { echo "     cannot signal the daemon"; return 1; }
    hup_read() { tail -n +"$((l + 1))" "$TMP/daemon.log" | grep -q '(SIGHUP)'; }
    until_true 50 hup_read || { echo "     no (SIGHUP) read logged within 5 s"; return 1; }
}
# syncs_after N: at least N syncs (IPv4 sync duration count) after the value given in $DUR_MARK.
syncs_after() { local d; d=$(metric "$DUR"); [ -n "$d" ] && awk -v a="$d" -v b="$DUR_MARK" -v n="$1" 'BEGIN{exit !(a >= b + n)}'; }
web_answers() { # a TCP request from the client namespace to web's cluster IP is answered by one of its pods
    topo_in client timeout 5 python3 "$HERE/lib/probe.py" tcp 10.96.0.10 80 1 1 2> /dev/null | grep -qE '^pod-(a|b|remote) '
}

# --- topology, config, manifests -------------------------------------------------------------------------
topo_setup "knat-dt-$$-" || exit 2
topo_start_servers 150 || exit 2

sed -e 's/^\(\s*syncPeriod:\).*/\1 2s/' -e 's/^\(\s*minSyncPeriod:\).*/\1 200ms/' \
    -e 's/^healthzBindAddress:.*/healthzBindAddress: 127.0.0.1:10256/' \
    -e 's/^metricsBindAddress:.*/metricsBindAddress: 127.0.0.1:10249/' \
    "$ROOT/Config/kube-proxy-config.yaml" > "$TMP/config.yaml"
mkdir "$TMP/manifests"
# web-local (Service and slice) in a file of its own so the test can rewrite it; the rest unchanged.
python3 - "$ROOT/Config/example-cluster.yaml" "$TMP/manifests" << 'EOF'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
mine = [d for d in docs if "web-local" in d]
rest = [d for d in docs if "web-local" not in d]
open(sys.argv[2] + "/cluster.yaml", "w").write("\n---\n".join(rest) + "\n")
open(sys.argv[2] + "/web-local.yaml", "w").write("\n---\n".join(mine) + "\n")
EOF
cp "$TMP/manifests/web-local.yaml" "$TMP/web-local.orig"

# --- 1. startup --------------------------------------------------------------------------------------------
# A stand-in for systemd's notify socket (a path socket works across network namespaces): every datagram
# the daemon sends is written to a file with the time it arrived.
NOTIFY="$TMP/notify.sock"
timeout 110 python3 - "$NOTIFY" "$TMP/notify.log" << 'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
end = time.time() + 105
with open(sys.argv[2], "a", buffering=1) as out:
    while time.time() < end:
        try:
            data = s.recv(4096).decode()
        except socket.timeout:
            continue
        out.write("%.3f %s\n" % (time.time(), data.replace("\n", " ")))
EOF
NOTIFY_PID=$!
until_true 50 test -S "$NOTIFY"
# route_localnet starts off (a new namespace may inherit the host's): the daemon must turn it on itself.
topo_in node sysctl -qw net.ipv4.conf.all.route_localnet=0 > /dev/null
ip netns exec "$(topo_ns node)" env NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC=2000000 \
    timeout -k 2 110 "$BIN" --config "$TMP/config.yaml" --source "$TMP/manifests" --manifest-recheck-interval 1h \
    --backend "$BACKEND" > "$TMP/daemon.log" 2>&1 &
RUNNER_PID=$!
find_daemon() {
    local p
    for p in $(ip netns pids "$(topo_ns node)" 2> /dev/null); do
        [ "$(cat "/proc/$p/comm" 2> /dev/null)" = kube-natd ] && { DAEMON_PID=$p; return 0; }
    done
    return 1
}
until_true 50 find_daemon || { bad "daemon started"; sed 's/^/     /' "$TMP/daemon.log" | head -20; }

has_web() { N iptables-$FLAVOR -t nat -S KUBE-SERVICES 2> /dev/null | grep -q -- '-d 10.96.0.10/32 .*--dport 80 '; }
startup_rules() {
    until_true 100 has_web || { echo "     nat KUBE-SERVICES has no rule for web 10.96.0.10:80"; tail -5 "$TMP/daemon.log"; return 1; }
    local n; n=$(N iptables-$FLAVOR -t nat -S KUBE-SERVICES | grep -c -- '-A KUBE-SERVICES')
    [ "$n" -ge 7 ] || { echo "     only $n rules in KUBE-SERVICES"; return 1; }
}
check "startup: nat KUBE-SERVICES holds the example cluster's Services" startup_rules
canaries() {
    local t r=0
    for t in mangle nat filter; do
        N iptables-$FLAVOR -t "$t" -S KUBE-PROXY-CANARY > /dev/null 2>&1 || { echo "     no canary in $t"; r=1; }
    done
    return $r
}
check "startup: KUBE-PROXY-CANARY in mangle, nat and filter" canaries
healthz() {
    local hdr body
    until_true 30 curl_in -o /dev/null http://127.0.0.1:10256/healthz
    hdr=$(curl_in -D - -o "$TMP/healthz.json" -w '%{http_code}' http://127.0.0.1:10256/healthz)
    body=$(cat "$TMP/healthz.json" 2> /dev/null)
    echo "$hdr" | tail -1 | grep -q '^200$' || { echo "     status: $(echo "$hdr" | tail -1); body: $body"; return 1; }
    echo "$hdr" | grep -qi '^content-type: application/json' || { echo "     no JSON Content-Type: $hdr"; return 1; }
    echo "$hdr" | grep -qi '^x-content-type-options: nosniff' || { echo "     no nosniff header: $hdr"; return 1; }
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [d[k] for k in ("lastUpdated","currentTime","nodeEligible")]' \
        "$TMP/healthz.json" 2> /dev/null || { echo "     body lacks lastUpdated/currentTime/nodeEligible: $body"; return 1; }
}
check "startup: /healthz 200, application/json, nosniff, lastUpdated/currentTime/nodeEligible" healthz
livez() { [ "$(curl_in -o /dev/null -w '%{http_code}' http://127.0.0.1:10256/livez)" = 200 ]; }
check "startup: /livez 200" livez
ready_sent() {
    until_true 50 grep -q 'READY=1' "$TMP/notify.log" || { echo "     no READY=1 on NOTIFY_SOCKET"; return 1; }
    grep -q 'first sync done' "$TMP/daemon.log" || { echo "     READY sent but no first sync logged"; return 1; }
}
check "systemd: READY=1 sent after the first successful sync" ready_sent
two_watchdogs() { [ "$(grep -c 'WATCHDOG=1' "$TMP/notify.log")" -ge 2 ]; }
watchdog_fed() {
    until_true 60 two_watchdogs \
        || { echo "     $(grep -c 'WATCHDOG=1' "$TMP/notify.log") WATCHDOG=1 datagrams (WATCHDOG_USEC=2s)"; return 1; }
}
check "systemd: the sync loop feeds the watchdog (WATCHDOG=1 at least twice)" watchdog_fed
sysctl_set() {
    local v; v=$(N cat /proc/sys/net/ipv4/conf/all/route_localnet)
    [ "$v" = 1 ] || { echo "     route_localnet is $v, want 1 (localhostNodePorts)"; return 1; }
    v=$(N cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait)
    [ "$v" = 3600 ] || { echo "     nf_conntrack_tcp_timeout_close_wait is $v, want 3600 (conntrack.tcpCloseWaitTimeout 1h)"; return 1; }
    grep -q 'set sysctl net.netfilter.nf_conntrack_tcp_timeout_close_wait = 3600' "$TMP/daemon.log" \
        || { echo "     the sysctl was not logged"; return 1; }
}
check "node: route_localnet and the conntrack sysctls from the config are set in the namespace and logged" sysctl_set
check "startup: TCP to web 10.96.0.10:80 from the client is answered" web_answers

# --- 2. metrics ---------------------------------------------------------------------------------------------
prom_text() {
    metrics > "$TMP/metrics.txt"
    python3 - "$TMP/metrics.txt" << 'EOF'
import re, sys
sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+0-9.eE]+|[-+]?(Inf|NaN)( [0-9]+)?$')
lines = [l for l in open(sys.argv[1]).read().splitlines() if l]
if not lines: print("     empty /metrics"); sys.exit(1)
for l in lines:
    if l.startswith("# HELP ") or l.startswith("# TYPE ") : continue
    if l.startswith("#") or not sample.match(l): print("     not Prometheus text: " + l[:120]); sys.exit(1)
EOF
}
check "metrics: /metrics parses as Prometheus text" prom_text
DUR='kubeproxy_sync_proxy_rules_duration_seconds_count\{ip_family="IPv4"\}'
# The IPv4 series: the daemon programs both families by default (--ip-family auto), each with its own series.
NAT_TOTAL='kubeproxy_sync_proxy_rules_iptables_total\{ip_family="IPv4",table="nat"\}'
LAST_TS='kubeproxy_sync_proxy_rules_last_timestamp_seconds\{ip_family="IPv4"\}'
dur_present() { [ -n "$(metric "$DUR")" ] || { echo "     no $DUR sample"; return 1; }; }
check "metrics: sync duration count for IPv4 present" dur_present
nat_total_matches() {
    local m k
    m=$(metric "$NAT_TOTAL"); k=$(N iptables-$FLAVOR-save -t nat | grep -c '^-A KUBE-')
    [ -n "$m" ] && awk -v a="$m" -v b="$k" 'BEGIN{exit !(a == b)}' && return 0
    echo "     metric nat rules: ${m:-missing}; -A rules in nat KUBE-* chains: $k"; return 1
}
check "metrics: iptables_total{table=nat} equals the -A rules in nat KUBE-* chains" nat_total_matches
DUR0=$(metric "$DUR"); NAT0=$(metric "$NAT_TOTAL"); TS0=$(metric "$LAST_TS")

# --- 3. change: a new Service, incremental; SIGHUP with the old mtime ---------------------------------------
extra() { # extra ENDPOINT_IP: a Service + slice file, always the same length
    cat << EOF
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: extra-x1
  namespace: default
  labels: {kubernetes.io/service-name: extra}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [$1], conditions: {ready: true}, nodeName: node-1}
EOF
}
has_extra() { N iptables-$FLAVOR -t nat -S KUBE-SERVICES 2> /dev/null | grep -q -- '-d 10.96.0.50/32'; }
# A SEP chain of the `extra` Service (other Services use the same pods) DNATing to $1:8080.
# (grep without -q reads to the end: with pipefail, an early exit would make the save's SIGPIPE the result)
has_sep() { N iptables-$FLAVOR-save -t nat | grep -- '-A KUBE-SEP-' | grep -- 'default/extra:http' | grep -- "--to-destination $1:8080" > /dev/null; }
# The first sync is done (READY=1 checked above); later syncs without news re-derive 0 Services.
L0=$(log_lines)
extra 10.244.1.10 > "$TMP/manifests/extra.yaml"
change_seen() {
    reload || return 1
    until_true 20 has_extra || { echo "     10.96.0.50 not in KUBE-SERVICES 2 s after SIGHUP"; tail -3 "$TMP/daemon.log"; return 1; }
}
check "change: a Service added to the manifests reaches the kernel within 2 s of SIGHUP" change_seen
# Periodic full syncs (syncPeriod 2 s) that find nothing new re-derive 0 Services and may land between L0 and
# the change; the first sync that re-derived anything must be the change's, and must have re-derived just `extra`.
one_rederived() {
    rederived() { tail -n +"$((L0 + 1))" "$TMP/daemon.log" | grep 'synced IPv4' | grep -qv ' 0 re-derived'; }
    until_true 20 rederived
    local line; line=$(tail -n +"$((L0 + 1))" "$TMP/daemon.log" | grep 'synced IPv4' | grep -v ' 0 re-derived' | head -1)
    echo "$line" | grep -q ' 1 re-derived' && return 0
    echo "     first sync after the change that re-derived anything: ${line:-none}"; return 1
}
check "change: the sync after it re-derived exactly 1 Service (log)" one_rederived
metrics_moved() {
    local d n t r=0
    until_true 20 eval '[ "$(metric "$DUR")" != "$DUR0" ]'
    d=$(metric "$DUR"); n=$(metric "$NAT_TOTAL"); t=$(metric "$LAST_TS")
    awk -v a="$d" -v b="$DUR0" 'BEGIN{exit !(a > b)}' || { echo "     duration count $DUR0 -> $d"; r=1; }
    awk -v a="$n" -v b="$NAT0" 'BEGIN{exit !(a > b && b > 0)}' || { echo "     nat rules $NAT0 -> $n"; r=1; }
    awk -v a="$t" -v b="$TS0" 'BEGIN{exit !(a > b)}' || { echo "     last timestamp $TS0 -> $t"; r=1; }
    return $r
}
check "metrics: duration count, nat rule total and last timestamp move after the change" metrics_moved
# Same size, same mtime (the new text written beside it, given the old mtime, renamed over it): only SIGHUP can tell
# the daemon the file changed, and the hour-long recheck cannot load it in the meantime.
extra 10.244.1.11 > "$TMP/extra.new"
touch -r "$TMP/manifests/extra.yaml" "$TMP/extra.new"
mv "$TMP/extra.new" "$TMP/manifests/extra.yaml"
DUR_MARK=$(metric "$DUR")
not_before_sighup() {
    [ -n "$DUR_MARK" ] || { echo "     no sync duration count"; return 1; }
    until_true 60 syncs_after 2 || { echo "     no two syncs within 6 s (count $DUR_MARK -> $(metric "$DUR"))"; return 1; }
    ! has_sep 10.244.1.11 || { echo "     the edit was loaded without SIGHUP"; return 1; }
}
check "change: the edit is not loaded before SIGHUP (two syncs later, recheck 1h)" not_before_sighup
sighup() {
    reload || return 1
    until_true 20 has_sep 10.244.1.11 || { echo "     no KUBE-SEP to 10.244.1.11 after SIGHUP"; return 1; }
    ! N iptables-$FLAVOR-save -t nat | grep -- '--to-destination 10.244.1.10:8080' | grep extra > /dev/null ||
        { echo "     extra still has its old endpoint"; return 1; }
}
check "change: SIGHUP picks up an edit made with the old mtime kept (touch -r)" sighup

# --- 4. drift ----------------------------------------------------------------------------------------------
DUR_MARK=$(metric "$DUR"); until_true 60 syncs_after 1 # a whole sync after the last change, not a sleep
owned > "$TMP/owned.before"
# drift NAME TABLE COMMAND...: break the rules with COMMAND, expect repair within syncPeriod (2 s) + margin,
# byte-identical owned rules, one more drift repair counted for TABLE, and web answering again.
drift() {
    local name=$1 table=$2; shift 2
    local c0 c1; c0=$(drift_count "$table"); c0=${c0:-0}
    if ! "$@"; then bad "drift: $name (could not break the rules)"; return; fi
    repaired() { owned > "$TMP/owned.after"; cmp -s "$TMP/owned.before" "$TMP/owned.after"; }
    if ! until_true 45 repaired; then
        bad "drift: $name repaired within one syncPeriod"
        diff "$TMP/owned.before" "$TMP/owned.after" | head -10 | sed 's/^/     /'
        return
    fi
    ok "drift: $name repaired within one syncPeriod, owned rules byte-identical"
    local i; for i in $(seq 1 20); do [ "$(drift_count "$table")" != "$c0" ] && break; sleep 0.1; done
    c1=$(drift_count "$table")
    if awk -v a="${c1:-0}" -v b="$c0" 'BEGIN{exit !(a > b)}'; then ok "drift: $name counted (table=$table $c0 -> $c1)"
    else bad "drift: $name counted in kubenatd_drift_repairs_total{table=$table} ($c0 -> ${c1:-missing})"; fi
}
flush_services() { N iptables-$FLAVOR -t nat -F KUBE-SERVICES; }
delete_sep() { # the first KUBE-SEP chain of web: unhook it from its SVC chain, then flush and delete it
    local svc sep rule
    svc=$(N iptables-$FLAVOR -t nat -S KUBE-SERVICES | grep -- '-d 10.96.0.10/32' | grep -o 'KUBE-SVC-[A-Z0-9]*' | head -1)
    sep=$(N iptables-$FLAVOR -t nat -S "$svc" | grep -o 'KUBE-SEP-[A-Z0-9]*' | head -1)
    [ -n "$sep" ] || { echo "     no KUBE-SEP under $svc"; return 1; }
    rule=$(N iptables-$FLAVOR -t nat -S "$svc" | grep -- "-j $sep" | head -1)
    # shellcheck disable=SC2086 # the rule's words
    eval "N iptables-$FLAVOR -t nat ${rule/-A /-D }" && N iptables-$FLAVOR -t nat -F "$sep" && N iptables-$FLAVOR -t nat -X "$sep"
}
flush_forward() { N iptables-$FLAVOR -t filter -F KUBE-FORWARD; }
delete_canary() { N iptables-$FLAVOR -t mangle -X KUBE-PROXY-CANARY; }
drift "nat -F KUBE-SERVICES" nat flush_services
drift "a KUBE-SEP chain of web deleted" nat delete_sep
drift "filter -F KUBE-FORWARD" filter flush_forward
drift "mangle canary deleted" mangle delete_canary
check "drift: TCP to web 10.96.0.10:80 answered after the repairs" web_answers
grep -q "rules changed behind kube-natd's back" "$TMP/daemon.log" && ok "drift: logged" ||
    bad "drift: 'rules changed behind kube-natd's back' logged"

# --- 5. health-check node port of web-local -----------------------------------------------------------------
HC=http://127.0.0.1:32001/
hc_ok() {
    local code
    until_true 20 is_now 200 hc_code
    code=$(curl_in -o "$TMP/hc.json" -w '%{http_code}' "$HC")
    [ "$code" = 200 ] || { echo "     status ${code:-none}: $(cat "$TMP/hc.json" 2> /dev/null)"; return 1; }
    python3 - "$TMP/hc.json" << 'EOF' || { echo "     body: $(cat "$TMP/hc.json")"; return 1; }
import json, sys
d = json.load(open(sys.argv[1]))
assert d["service"]["namespace"] == "default" and d["service"]["name"] == "web-local"
assert d["localEndpoints"] == 1 and d["serviceProxyHealthy"] is True
EOF
}
check "health check 32001: 200, default/web-local, localEndpoints 1, serviceProxyHealthy" hc_ok
sed 's/nodeName: node-1/nodeName: node-3/' "$TMP/web-local.orig" > "$TMP/manifests/web-local.yaml"
hc_503() {
    reload || return 1
    until_true 30 is_now 503 hc_code && return 0
    echo "     status $(curl_in -o /dev/null -w '%{http_code}' "$HC") with no local endpoint"; return 1
}
check "health check 32001: 503 when web-local has no endpoint on node-1" hc_503
rm "$TMP/manifests/web-local.yaml"
hc_closed() {
    reload || return 1
    refused() { N curl -s --max-time 2 -o /dev/null "$HC"; [ $? = 7 ]; } # curl 7: connection refused
    until_true 30 refused && return 0
    echo "     port 32001 still accepts connections after web-local was removed"; return 1
}
check "health check 32001: port closed once web-local is removed" hc_closed

# --- 6. a broken object at runtime ----------------------------------------------------------------------------
DUR_MARK=$(metric "$DUR"); until_true 60 syncs_after 1 # a whole sync after the last change, not a sleep
owned > "$TMP/owned.before"
cat > "$TMP/manifests/broken.yaml" << 'EOF'
apiVersion: v1
kind: Service
metadata: {name: broken, namespace: default}
spec:
  clusterIP: 10.96.0.60
  ports: [{name: http, port: 0, targetPort: 8080, protocol: TCP}]
EOF
broken_logged() {
    reload || return 1
    logged() { grep 'broken' "$TMP/daemon.log" | grep -q 'spec.ports\[0\].port'; }
    until_true 30 logged && return 0
    echo "     no log line naming default/broken and spec.ports[0].port"; tail -3 "$TMP/daemon.log"; return 1
}
check "broken object: logged with its name and field path" broken_logged
DUR_MARK=$(metric "$DUR")
broken_harmless() {
    # two syncs after the broken object was read: at least one whole sync ran with it
    until_true 60 syncs_after 2 || { echo "     no two syncs within 6 s (count $DUR_MARK -> $(metric "$DUR"))"; return 1; }
    owned > "$TMP/owned.after"
    cmp -s "$TMP/owned.before" "$TMP/owned.after" && web_answers && return 0
    diff "$TMP/owned.before" "$TMP/owned.after" | head -10 | sed 's/^/     /'; return 1
}
check "broken object: every other Service's rules intact, web answers" broken_harmless

# --- 7. SIGTERM ------------------------------------------------------------------------------------------------
sigterm() {
    local rc
    kill -TERM "$DAEMON_PID" 2> /dev/null || { echo "     cannot signal the daemon"; return 1; }
    timeout 5 tail --pid="$DAEMON_PID" -f /dev/null || { echo "     still running 5 s after SIGTERM"; return 1; }
    wait "$RUNNER_PID"; rc=$?
    DAEMON_PID=""; RUNNER_PID=""
    [ -n "${NOTIFY_PID:-}" ] && kill "$NOTIFY_PID" 2> /dev/null
    [ "$rc" = 0 ] || { echo "     exit status $rc"; return 1; }
}
check "SIGTERM: exits 0 within 5 s" sigterm
rules_stay() { has_web && has_extra || { echo "     rules gone after SIGTERM"; return 1; }; }
check "SIGTERM: the rules stay in the kernel" rules_stay

# --- 8. the same daemon through the restore backend: drift and canaries work through the backend protocol ----
ip netns exec "$(topo_ns node)" timeout -k 2 60 "$BIN" --config "$TMP/config.yaml" --source "$TMP/manifests" \
    --backend restore > "$TMP/daemon.log" 2>&1 &
RUNNER_PID=$!
restore_started() {
    until_true 50 find_daemon || { echo "     the daemon did not start"; return 1; }
    synced() { grep -q 'first sync done' "$TMP/daemon.log"; }
    until_true 100 synced || { echo "     no first sync"; tail -5 "$TMP/daemon.log" | sed 's/^/     /'; return 1; }
    grep -q "restore backend (iptables-$FLAVOR-restore)" "$TMP/daemon.log" || { echo "     not the restore backend"; return 1; }
}
check "restore backend: the daemon starts and syncs through iptables-$FLAVOR-restore" restore_started
DUR_MARK=$(metric "$DUR"); until_true 60 syncs_after 1 # a whole sync after the last change, not a sleep
owned > "$TMP/owned.before"
drift "nat -F KUBE-SERVICES (restore backend)" nat flush_services
drift "mangle canary deleted (restore backend)" mangle delete_canary
check "restore backend: TCP to web 10.96.0.10:80 answered after the repairs" web_answers
# This daemon keeps the default 1 s recheck: an edited manifest is loaded without SIGHUP.
L1=$(log_lines)
extra 10.244.1.12 > "$TMP/manifests/extra.yaml"
recheck_loads() {
    until_true 50 has_sep 10.244.1.12 || { echo "     no KUBE-SEP to 10.244.1.12 within 5 s"; return 1; }
    ! tail -n +"$((L1 + 1))" "$TMP/daemon.log" | grep -q '(SIGHUP)' || { echo "     a SIGHUP read was logged"; return 1; }
}
check "restore backend: with the 1 s recheck an edited manifest is loaded without SIGHUP" recheck_loads
kill -TERM "$DAEMON_PID" 2> /dev/null
timeout 5 tail --pid="$DAEMON_PID" -f /dev/null
wait "$RUNNER_PID"
DAEMON_PID=""; RUNNER_PID=""

if [ "$FAIL" -gt 0 ]; then
    echo "     daemon log (last 15 lines):"
    tail -15 "$TMP/daemon.log" | cut -c1-200 | sed 's/^/     /'
fi
echo "$SUITE: run time $(($(date +%s) - STARTED)) s"
summary "$SUITE"
[ "$FAIL" -eq 0 ]
