#!/usr/bin/env bash
# Kernel end-to-end test of kube-natd following an apiserver, with real traffic, in throwaway network
# namespaces only (run as root).
#
#   Tests/kernel/apiserver-e2e.sh [path/to/kube-natd] [path/to/fake-apiserver]
#
# Builds the topology of lib/topology.sh, runs fake-apiserver (Tools/fake-apiserver) and the long-running
# `kube-natd --kubeconfig ... --backend libiptc` inside the node namespace on 127.0.0.1, then changes objects
# on the fake apiserver and asserts what clients see: a new Service flows, scaled endpoints answer, a deleted
# Service stops answering, an apiserver restart changes nothing in the kernel until a real change, and a
# broken Service is logged by name and field while the others keep their rules.
# Everything it creates (namespaces, processes) goes on exit, Ctrl-C or failure.
set -uo pipefail
KUBE_NATD=$(readlink -f "${1:-.build/debug/kube-natd}")
FAKE=$(readlink -f "${2:-$(dirname "$KUBE_NATD")/fake-apiserver}")
# BACKEND=libnftnl runs the same suite through the nf_tables backend.
BACKEND=${BACKEND:-libiptc}
FLAVOR=legacy
SUITE=apiserver-e2e
[ "$BACKEND" = libnftnl ] && FLAVOR=nft SUITE=apiserver-e2e-nft
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$KUBE_NATD" ] || { echo "apiserver-e2e: $KUBE_NATD not found (swift build first)"; exit 2; }
[ -x "$FAKE" ] || { echo "apiserver-e2e: $FAKE not found (swift build --product fake-apiserver)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "apiserver-e2e: needs root (network namespaces)"; exit 2; }
STARTED=$(date +%s)
PORT=6443
API="http://127.0.0.1:$PORT"

# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
TMP=$(mktemp -d /tmp/knat-apiserver-e2e.XXXXXX)
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
. "$HERE/lib/checks.sh"
# wait_for SECONDS COMMAND...: retries every 0.2 s until the command succeeds or time is up.
wait_for() {
    local end=$(($(date +%s) + $1)); shift
    while [ "$(date +%s)" -lt "$end" ]; do "$@" && return 0; sleep 0.2; done
    "$@"
}

# --- the fake apiserver and its objects ------------------------------------------------------------------
# Every object the test puts is also kept in $TMP/objects, so a restarted apiserver comes back with them.
mkdir -p "$TMP/objects"
api() { topo_in node timeout 5 curl -sS -o /dev/null -w '%{http_code}' "$@" 2> "$TMP/curl.err"; }
put() { # put KIND NS NAME JSON
    local file="$TMP/objects/$1-$2-$3.json"
    printf '%s\n' "$4" > "$file"
    local code; code=$(api -X PUT --data-binary "@$file" "$API/control/objects")
    [ "$code" = 200 ] || { echo "     PUT $1 $2/$3: HTTP $code $(cat "$TMP/curl.err")"; return 1; }
}
del() { # del KIND NS NAME
    rm -f "$TMP/objects/$1-$2-$3.json"
    local code; code=$(api -X DELETE "$API/control/objects/$1/$2/$3")
    [ "$code" = 200 ] || { echo "     DELETE $1 $2/$3: HTTP $code"; return 1; }
}
start_fake() { # start_fake START_RESOURCE_VERSION: the apiserver (a new process) with every object kept
    local args=(--listen "127.0.0.1:$PORT" --start-resource-version "$1") f
    for f in "$TMP"/objects/*.json; do [ -e "$f" ] && args+=(--preload "$f"); done
    # Not through topo_in: a shell function in the background is a subshell, and $! would be that subshell, which
    # `stop` would kill while the apiserver went on (the restart then failed to bind, and nothing restarted).
    ip netns exec "$(topo_ns node)" timeout 150 "$FAKE" "${args[@]}" >> "$TMP/fake.log" 2>&1 &
    FAKE_PID=$!
    START_RV=$1
    listening() { kill -0 "$FAKE_PID" 2> /dev/null && grep -q "listening on 127.0.0.1:$PORT, resourceVersion $START_RV\$" "$TMP/fake.log"; }
    wait_for 10 listening && topo_in node timeout 2 curl -sf -o /dev/null "$API/apis/discovery.k8s.io/v1" \
        || { echo "apiserver-e2e: fake-apiserver (resourceVersion $1) did not come up"; tail -5 "$TMP/fake.log"; return 1; }
}

service() { # service NAME CLUSTER_IP PORT
    printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s","namespace":"e2e"},"spec":{"type":"ClusterIP","clusterIP":"%s","clusterIPs":["%s"],"ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","ports":[{"name":"http","port":%s,"protocol":"TCP","targetPort":8080}]}}' \
        "$1" "$2" "$2" "$3"
}
slice() { # slice SERVICE POD_IP...
    local svc=$1 eps="" ip; shift
    for ip in "$@"; do
        eps="$eps${eps:+,}{\"addresses\":[\"$ip\"],\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false},\"nodeName\":\"node-1\"}"
    done
    # The trigger time is now, in RFC3339Nano as the EndpointSlice controller writes it.
    printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%s-abcde","namespace":"e2e","labels":{"kubernetes.io/service-name":"%s","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"%s"}},"addressType":"IPv4","endpoints":[%s],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}' \
        "$svc" "$svc" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$eps"
}
NODE_JSON='{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24"]},"status":{"addresses":[{"type":"InternalIP","address":"192.168.10.1"},{"type":"Hostname","address":"node-1"}]}}'

# --- traffic ---------------------------------------------------------------------------------------------
# probe COUNT: COUNT attempts from the client to web's ClusterIP (or $2:$3), one line each.
probe() {
    timeout 30 ip netns exec "$(topo_ns client)" python3 "$HERE/lib/probe.py" tcp "${2:-10.96.0.10}" "${3:-80}" "$1" 0.5 \
        | sed 's/ ms=[0-9]*$//'
}
answerers() { probe "$@" | awk '/^pod-/ {print $1}' | sort -u | tr '\n' ' '; }
answered_only() { # answered_only "POD..." [HOST PORT]: every attempt answered, only by these pods, each of them seen
    # Balancing is random: ten tries to a two-endpoint Service all reach one pod with probability 1/512 (that made
    # this check flaky). So tries go on, ten at a time and at most 100, until every wanted pod has answered; an
    # attempt that is not answered, or answered by another pod, fails at once.
    local want=$1 got="" batch seen i; shift
    for i in 1 2 3 4 5 6 7 8 9 10; do
        batch=$(probe 10 "$@")
        got="$got$batch"$'\n'
        seen=$(echo "$got" | awk '/^pod-/ {print $1}' | sort -u | tr '\n' ' ')
        if echo "$batch" | grep -qv '^pod-' || [ -z "$batch" ]; then break; fi
        local extra=0 pod
        for pod in $seen; do case " $want " in *" $pod "*) ;; *) extra=1 ;; esac; done
        [ "$extra" = 1 ] && break
        [ "$seen" = "$(echo "$want" | tr ' ' '\n' | sort -u | tr '\n' ' ')" ] && return 0
    done
    LAST="$(echo "$got" | grep -v '^$' | sort | uniq -c | tr '\n' ';')"
    return 1
}
silent() { # silent [HOST PORT]: 3 attempts, none answered
    local got; got=$(probe 3 "$@")
    ! echo "$got" | grep -q '^pod-' && return 0
    LAST="$(echo "$got" | sort | uniq -c | tr '\n' ';')"; return 1
}
LAST=""

# The KUBE-* rules of both tables as the kernel holds them, without counters.
kube_rules() {
    local t
    for t in nat filter; do
        topo_in node iptables-$FLAVOR-save -t "$t" | grep -E '^(\*|:KUBE-|-A KUBE-|-A [A-Z]+ .*-j KUBE-)' \
            | sed 's/ \[[0-9]*:[0-9]*\]$//'
    done
}

# --- topology, apiserver, daemon -------------------------------------------------------------------------
topo_setup "knat-e2e-$$-" || exit 2
topo_start_servers 150 || exit 2
echo "topology up"

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
  syncPeriod: 10s
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

start_fake 1 || exit 1
put Node - node-1 "$NODE_JSON" || exit 1
start_natd() { # start_natd LOG: the daemon in the node namespace, following the fake apiserver
    ip netns exec "$(topo_ns node)" timeout 150 "$KUBE_NATD" --config "$TMP/config.yaml" --backend "$BACKEND" > "$1" 2>&1 &
    NATD_PID=$!
}
start_natd "$TMP/natd.log"
synced_count() { grep -c 'synced' "$TMP/natd.log"; }
if ! wait_for 20 grep -qi 'synced ipv4' "$TMP/natd.log"; then
    echo "apiserver-e2e: kube-natd never synced"; sed 's/^/     /' "$TMP/natd.log" | tail -30; exit 1
fi
echo "kube-natd following $API"

# --- 1. a new Service flows ------------------------------------------------------------------------------
t1() {
    put Service e2e web "$(service web 10.96.0.10 80)" && put EndpointSlice e2e web-abcde "$(slice web 10.244.1.10)" \
        || return 1
    wait_for 15 answered_only "pod-a" && return 0
    echo "     answers: $LAST"; return 1
}
check "new Service and EndpointSlice: ClusterIP 10.96.0.10:80 answered by pod-a" t1

# --- 2. scaling the endpoints ----------------------------------------------------------------------------
t2() {
    put EndpointSlice e2e web-abcde "$(slice web 10.244.1.10 10.244.1.11)" || return 1
    wait_for 15 answered_only "pod-a pod-b" && return 0
    echo "     answers: $LAST"; return 1
}
check "second endpoint in the slice: both pod-a and pod-b answer" t2

# kubeproxy_network_programming_duration_seconds: one observation per slice change, from the slice's
# last-change-trigger-time to the commit that carried it (here both changes were applied within seconds).
# The daemon observes after the commit returns, and traffic flows from the commit on: wait for the observation.
PROG_COUNT="" PROG_SUM=""
programming_counted() {
    local m
    m=$(topo_in node curl -s --max-time 5 http://127.0.0.1:10249/metrics)
    # The IPv4 series: the daemon programs both families by default, each with its own series.
    PROG_COUNT=$(echo "$m" | awk '/^kubeproxy_network_programming_duration_seconds_count\{ip_family="IPv4"\}/ {print $2}')
    PROG_SUM=$(echo "$m" | awk '/^kubeproxy_network_programming_duration_seconds_sum\{ip_family="IPv4"\}/ {print $2}')
    [ -n "$PROG_COUNT" ] && [ "$PROG_COUNT" -ge 2 ]
}
programming_observed() {
    if wait_for 10 programming_counted \
        && awk -v s="$PROG_SUM" -v c="$PROG_COUNT" 'BEGIN{exit !(s > 0 && s / c < 15)}'; then
        echo "     $PROG_COUNT observations, mean $(awk -v s="$PROG_SUM" -v c="$PROG_COUNT" 'BEGIN{printf "%.3f", s / c}') s"
        return 0
    fi
    echo "     count=${PROG_COUNT:-none} sum=${PROG_SUM:-none}"; return 1
}
check "network programming duration observed for each slice change (count >= 2, mean under 15 s)" programming_observed

# A second Service, to show the others keep working through what follows.
put Service e2e other "$(service other 10.96.0.20 80)" && put EndpointSlice e2e other-abcde "$(slice other 10.244.1.12)"
check "second Service 10.96.0.20:80 answered by pod-dns" wait_for 15 answered_only "pod-dns" 10.96.0.20 80

# --- 3. apiserver restart changes nothing until a real change --------------------------------------------
# Conditions, not clocks: the daemon's own log says when it saw the apiserver go and come back, and the sync
# count (/metrics) says when a sync ran after that.
sync_count() {
    topo_in node curl -s --max-time 5 http://127.0.0.1:10249/metrics \
        | awk '/^kubeproxy_sync_proxy_rules_duration_seconds_count/ {s += $2} END {print s + 0}'
}
# synced_after COUNT: a sync finished after the sync count was COUNT (at most 15 s: syncPeriod is 10 s).
synced_after() { local c=$1; moved() { [ "$(sync_count)" -gt "$c" ]; }; wait_for 15 moved; }
logged_after() { # LINE PATTERN: the daemon logged PATTERN after line LINE of its log
    tail -n +"$(($1 + 1))" "$TMP/natd.log" | grep -q "$2"
}
t3() {
    local before i diffs=0 l c
    before=$(kube_rules)
    [ -n "$before" ] || { echo "     no KUBE-* rules to compare"; return 1; }
    l=$(wc -l < "$TMP/natd.log")
    stop "$FAKE_PID"; FAKE_PID=""
    wait_for 15 logged_after "$l" 'failed, retrying with backoff' || { echo "     the daemon never noticed the apiserver was gone"; diffs=1; }
    c=$(sync_count)
    synced_after "$c" || { echo "     no sync while the apiserver was down"; diffs=1; }
    [ "$(kube_rules)" = "$before" ] || { echo "     rules changed while the apiserver was down"; diffs=1; }
    # The new incarnation issues resourceVersions from 1000 and holds the same objects; whether the daemon
    # resumes or relists (the 410 path is covered by KubeSourceTests), the kernel must not change.
    l=$(wc -l < "$TMP/natd.log")
    start_fake 1000 || return 1
    wait_for 30 logged_after "$l" 'recovered after' || { echo "     the daemon did not log its recovery"; diffs=1; }
    c=$(sync_count)
    synced_after "$c" || { echo "     no sync after the recovery"; diffs=1; }
    [ "$(kube_rules)" = "$before" ] || {
        echo "     rules differ after the restart:"; diff <(echo "$before") <(kube_rules) | head -20 | sed 's/^/     /'
        diffs=1
    }
    answered_only "pod-a pod-b" || { echo "     answers after restart: $LAST"; diffs=1; }
    return $diffs
}
check "apiserver killed and restarted with the same objects: KUBE-* rules unchanged" t3
t3b() {
    put EndpointSlice e2e web-abcde "$(slice web 10.244.1.11)" || return 1
    wait_for 15 answered_only "pod-b" && return 0
    echo "     answers: $LAST"; return 1
}
check "after the restart a real change shows up: only pod-b answers" t3b

# --- 4. deleting the Service -----------------------------------------------------------------------------
t4() {
    del Service e2e web || return 1
    wait_for 15 silent && return 0
    echo "     still answered: $LAST"; return 1
}
check "deleted Service: ClusterIP 10.96.0.10:80 no longer answers" t4
check "other Service still answered after the delete" answered_only "pod-dns" 10.96.0.20 80

# --- 5. a broken object ----------------------------------------------------------------------------------
t5() {
    local before; before=$(kube_rules | grep 'e2e/other')
    put Service e2e broken "$(service broken 10.96.0.30 0)" || return 1
    if ! wait_for 10 grep -q 'e2e/broken.*spec\.ports\[0\]\.port' "$TMP/natd.log"; then
        echo "     no log line naming e2e/broken and spec.ports[0].port; kube-natd said:"
        grep -i 'broken' "$TMP/natd.log" | tail -5 | sed 's/^/     /'
        return 1
    fi
    local c; c=$(sync_count)
    synced_after "$c" || { echo "     no sync after the broken object"; return 1; }
    [ -n "$before" ] && [ "$(kube_rules | grep 'e2e/other')" = "$before" ] \
        || { echo "     e2e/other's rules changed"; return 1; }
    answered_only "pod-dns" 10.96.0.20 80 || { echo "     answers: $LAST"; return 1; }
}
check "broken Service (port 0) logged by name and field, other Services' rules intact" t5
grep 'e2e/broken' "$TMP/natd.log" | tail -1 | cut -c1-240 | sed 's/^/     log: /'

# --- 6. an invalid update keeps the last good version, through the watch and through a relist -------------------
# e2e/other is valid and answered; then updated with port 0. Its rules must stay: on the watch event, and after the
# apiserver is restarted (the daemon's watch resumes from a resourceVersion the new apiserver never issued: 410,
# relist holding the invalid version). Each time the invalid version is seen it is logged and counted.
invalid_count() {
    topo_in node curl -s --max-time 5 http://127.0.0.1:10249/metrics \
        | awk '/^kubenatd_invalid_objects_total\{kind="Service"\}/ {print $2}'
}
t6() {
    local before c0 c1 c2 n0 n1
    before=$(kube_rules | grep 'e2e/other')
    [ -n "$before" ] || { echo "     no rules for e2e/other"; return 1; }
    c0=$(invalid_count); n0=$(grep -c 'e2e/other.*invalid update ignored' "$TMP/natd.log")
    put Service e2e other "$(service other 10.96.0.20 0)" || return 1
    counted() { c1=$(invalid_count); awk -v a="${c1:-0}" -v b="${c0:-0}" 'BEGIN{exit !(a > b)}'; }
    wait_for 10 counted || { echo "     kubenatd_invalid_objects_total{kind=Service} did not move (${c0:-?})"; return 1; }
    grep -q 'e2e/other: spec.ports\[0\].port.*invalid update ignored' "$TMP/natd.log" \
        || { echo "     the watch event was not logged with object, field and the last-good decision"; return 1; }
    local c; c=$(sync_count)
    synced_after "$c" || { echo "     no sync after the watch event"; return 1; }
    [ "$(kube_rules | grep 'e2e/other')" = "$before" ] || { echo "     rules changed on the watch event"; return 1; }
    answered_only "pod-dns" 10.96.0.20 80 || { echo "     not answered after the watch event: $LAST"; return 1; }
    # The restarted apiserver holds the invalid version; its resourceVersions start far above the old ones.
    # The reflector's backoff carries over from section 4's restart (client-go resets it only after 2 quiet
    # minutes), so the relist may come after several doubled, jittered delays: wait for this restart's own 410
    # line (not section 4's) as long as the longest delay (30 s cap, full jitter) allows.
    local r0; r0=$(grep -c 'expired (410 Gone); relisting' "$TMP/natd.log")
    stop "$FAKE_PID"; FAKE_PID=""
    start_fake 500000 || return 1
    relisted() { [ "$(grep -c 'expired (410 Gone); relisting' "$TMP/natd.log")" -gt "$r0" ]; }
    wait_for 70 relisted || { echo "     no relist after the restart"; return 1; }
    seen_again() {
        n1=$(grep -c 'e2e/other.*invalid update ignored' "$TMP/natd.log"); [ "$n1" -ge $((n0 + 2)) ]
    }
    wait_for 70 seen_again || { echo "     the relist's invalid version was not logged again ($n0 -> $n1)"; return 1; }
    c2=$(invalid_count)
    awk -v a="${c2:-0}" -v b="${c1:-0}" 'BEGIN{exit !(a > b)}' || { echo "     not counted again (${c1:-?} -> ${c2:-?})"; return 1; }
    c=$(sync_count)
    synced_after "$c" || { echo "     no sync after the relist"; return 1; }
    [ "$(kube_rules | grep 'e2e/other')" = "$before" ] || { echo "     rules changed after the relist"; return 1; }
    answered_only "pod-dns" 10.96.0.20 80 || { echo "     not answered after the relist: $LAST"; return 1; }
}
check "an invalid update (port 0) keeps the last good rules through the watch and through a 410 relist; logged and counted each time" t6

if ! kill -0 "$NATD_PID" 2> /dev/null; then
    bad "kube-natd exited during the test"; tail -20 "$TMP/natd.log" | sed 's/^/     /'
fi
# A fresh start knows no last good version: the invalid Service gets no rules, and the log says so.
t7() {
    stop "$NATD_PID"; NATD_PID=""
    : > "$TMP/natd2.log"
    start_natd "$TMP/natd2.log" || return 1
    fresh() { grep -q 'e2e/other.*no last good version' "$TMP/natd2.log"; }
    wait_for 30 fresh || { echo "     no 'no last good version' line for e2e/other"; grep other "$TMP/natd2.log" | tail -3; return 1; }
    synced() { grep -q 'first sync done' "$TMP/natd2.log"; }
    wait_for 30 synced || return 1
    ! kube_rules | grep 'e2e/other' > /dev/null || { echo "     e2e/other still has rules after a fresh start"; return 1; }
}
check "a fresh start with only the invalid version: no rules for it, logged as having no last good version" t7
if [ "$FAIL" -gt 0 ]; then
    echo "--- kube-natd log (last 40 lines)"; tail -40 "$TMP/natd.log" | cut -c1-300
fi
echo "($(($(date +%s) - STARTED)) s)"
summary "$SUITE"
[ "$FAIL" = 0 ]
