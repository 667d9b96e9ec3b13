#!/usr/bin/env bash
# kube-natd latency by traffic: one EndpointSlice change, from the moment just before its PUT to the first new
# connection answered by the new endpoint, with the daemon following a test apiserver that holds N Services.
#
#   bash Benchmarks/latency.sh [path/to/kube-natd] [SIZES]     (root; `make bench-latency` builds release first)
#
# SIZES: Service counts, default "5000 10000 30000". Environment: SAMPLES (changes timed per size, default 15, after
# one warm-up change), BACKEND (default libnftnl; libiptc works too), PROBE_INTERVAL_US (one new connection per
# this many µs, default 1000), PROBE_TIMEOUT_MS (each connection's budget, default 100).
#
# Everything runs in network namespaces this script creates (Tests/kernel/lib/topology.sh: node, client, pods and
# the rest, none linked to the namespace it runs in) and deletes on exit, failure or interrupt. In the node
# namespace: fake-apiserver (Tools/fake-apiserver) preloaded with `natd-bench generate N` plus one probe Service
# 10.100.0.10:80 whose EndpointSlice names pod-a, and kube-natd as a daemon (--backend libnftnl --ip-family ipv4
# -v 4, the generated configuration: upstream's minSyncPeriod 1 s and syncPeriod 30 s). Each sample waits 1.2 s
# after the last change's sync (so the change is not held by minSyncPeriod), then latency-probe.c (compiled here)
# in the client namespace checks that the old pod answers, takes t0, PUTs the slice with the other pod, and opens a
# new connection every PROBE_INTERVAL_US until the other pod answers: traffic latency = that answer - t0. The
# daemon's own account of the same change is its -v 4 line "change synced: first event to sync done X ms, kernel
# commit Y ms, own Z ms, waited for the sync W ms": from the store receiving the watch event to the sync done, the
# kernel's commit in it (nf_tables: batch sent to acknowledged), the rest (kube-natd's own), and the wait for the
# sync to start. A sample whose change waited over 100 ms behind a sync that started after the previous sample
# (a periodic full sync) is taken again (at most SAMPLES more in all) and counted as held.
#
# Prints per size: traffic p50/p90/max, kube-natd's own time p50 and the kernel's commit p50 beside it, the whole
# event-to-done p50, the samples' connection failures; writes bench-results/latency-<date>.json.
set -uo pipefail
KUBE_NATD=$(readlink -f "${1:-.build/release/kube-natd}")
BIN=$(dirname "$KUBE_NATD")
SIZES=${2:-"5000 10000 30000"}
SAMPLES=${SAMPLES:-15}
BACKEND=${BACKEND:-libnftnl}
PROBE_INTERVAL_US=${PROBE_INTERVAL_US:-1000}
PROBE_TIMEOUT_MS=${PROBE_TIMEOUT_MS:-100}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=$(cd "$HERE/.." && pwd)/bench-results
PORT=18080
API="http://127.0.0.1:$PORT"
PROBE_IP=10.100.0.10 # inside the client's route to 10.96.0.0/12, outside the generator's 10.96.0.0/16 at 30k
STARTED=$SECONDS

die() { echo "latency: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (network namespaces)"
for b in "$KUBE_NATD" "$BIN/natd-bench" "$BIN/fake-apiserver"; do
    [ -x "$b" ] || die "$b not found (swift build -c release)"
done
for tool in ip curl python3; do command -v "$tool" > /dev/null || die "$tool missing (make deps)"; done
CC=${CC:-$(command -v cc || command -v gcc || command -v clang || echo /opt/swift/usr/bin/clang)}
[ -x "$CC" ] || die "no C compiler for the prober (cc, gcc or clang)"
case "$BACKEND" in libnftnl | libiptc) ;; *) die "BACKEND must be libnftnl or libiptc" ;; esac
case "$SAMPLES" in '' | *[!0-9]* | 0) die "SAMPLES must be a positive number" ;; esac

# shellcheck source=../Tests/kernel/lib/topology.sh
source "$HERE/../Tests/kernel/lib/topology.sh"
TMP=$(mktemp -d /tmp/knat-latency.XXXXXX)
FAKE_PID=""
NATD_PID=""
stop() { # stop PID: SIGTERM, a bounded wait, then SIGKILL
    [ -n "$1" ] || return 0
    kill "$1" 2> /dev/null
    timeout 10 tail --pid="$1" -f /dev/null 2> /dev/null || kill -9 "$1" 2> /dev/null
}
stop_cluster() {
    stop "$NATD_PID"; NATD_PID=""
    stop "$FAKE_PID"; FAKE_PID=""
}
cleanup() {
    stop_cluster
    topo_teardown
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$CC" -O2 -Wall -o "$TMP/latency-probe" "$HERE/latency-probe.c" || die "cannot compile latency-probe.c"
topo_setup "knat-lat-$$-" || die "cannot build the topology"
# The pods' servers exit by themselves after 4 hours, whatever happens to this script.
topo_start_servers 14400 || die "the pods' servers did not come up"
NODE_NS=$(topo_ns node)
in_node() { timeout 600 ip netns exec "$NODE_NS" "$@"; }

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "latency: $(date -u +%FT%TZ), kernel $(uname -r), $CPU, $(nproc) CPUs, load average $LOADAVG"
echo "latency: sizes $SIZES, $SAMPLES samples each after one warm-up, backend $BACKEND, a connection every ${PROBE_INTERVAL_US} µs"

# probe_objects DIR: the probe Service and its slice (pod-a) to preload; slice-a.json and slice-b.json to PUT.
probe_objects() {
    local d=$1 pod ip
    printf '{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"probe","namespace":"latency"},"spec":{"type":"ClusterIP","clusterIP":"%s","clusterIPs":["%s"],"ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}}]}\n' \
        "$PROBE_IP" "$PROBE_IP" > "$d/probe-service.json"
    for pod in a b; do
        ip=${TOPO_POD_IP[$pod]}
        printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"probe-1","namespace":"latency","labels":{"kubernetes.io/service-name":"probe","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"TRIGGER_TIME"}},"addressType":"IPv4","endpoints":[{"addresses":["%s"],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node-1"}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}\n' \
            "$ip" > "$d/slice-$pod.json"
    done
    sed 's/"annotations":{[^}]*},//' "$d/slice-a.json" > "$d/probe-slice.json"
}

# changes_logged: the daemon's "change synced" lines so far.
changes_logged() { grep -c 'change synced: ' "$D/daemon.log"; }
# change_after K: "LINE:text" of the first "change synced" line after the K-th that carried a Service or endpoint
# change (a relist that changed nothing also starts a sync, with no change in it).
change_after() {
    grep -n 'change synced: ' "$D/daemon.log" | tail -n +"$(($1 + 1))" | grep -v ' 0 Service and 0 endpoint changes' | head -1
}

# one_size N: generate, serve, start the daemon, take the samples into $D/samples.tsv.
one_size() {
    local n=$1 i
    D="$TMP/$n"
    mkdir -p "$D"
    echo "latency: $n Services: generating" >&2
    timeout 600 "$BIN/natd-bench" generate "$n" "$D/base" > "$D/generate.json" || die "natd-bench generate $n failed"
    probe_objects "$D"
    cat > "$D/kubeconfig" << KC
apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "$API"}}]
contexts: [{name: bench, context: {cluster: bench, user: bench}}]
current-context: bench
users: [{name: bench, user: {}}]
KC
    { cat "$D/kube-proxy-config.yaml"; printf 'healthzBindAddress: 127.0.0.1:10256\nmetricsBindAddress: 127.0.0.1:10249\nclientConnection:\n  kubeconfig: %s\n' "$D/kubeconfig"; } > "$D/daemon-config.yaml"
    grep -q 'minSyncPeriod\|syncPeriod' "$D/daemon-config.yaml" && die "the generated configuration sets a sync period; this harness measures upstream's defaults"

    # Not through in_node: a shell function in the background is a subshell, and $! would be that subshell.
    ip netns exec "$NODE_NS" timeout 7200 "$BIN/fake-apiserver" --listen "127.0.0.1:$PORT" \
        --preload "$D/base/cluster.json" --preload "$D/probe-service.json" --preload "$D/probe-slice.json" \
        > "$D/fake.log" 2>&1 &
    FAKE_PID=$!
    for i in $(seq 1 600); do
        in_node curl -s -o /dev/null --max-time 2 "$API/api/v1/services?limit=1" && break
        kill -0 "$FAKE_PID" 2> /dev/null || break
        sleep 0.1
    done
    in_node curl -sf -o /dev/null --max-time 2 "$API/api/v1/services?limit=1" || { tail -5 "$D/fake.log" >&2; die "fake-apiserver did not come up"; }
    # The generated configuration's node: its bindAddress is the node IP the Node lists.
    printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},"spec":{"podCIDR":"10.128.1.0/24"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.0.2"}]}}' \
        | in_node curl -sf -o /dev/null -X PUT --data-binary @- "$API/control/objects" || die "cannot PUT the Node"

    ip netns exec "$NODE_NS" timeout 7200 "$KUBE_NATD" --config "$D/daemon-config.yaml" --backend "$BACKEND" \
        --ip-family ipv4 --random-fully no -v 4 > "$D/daemon.log" 2>&1 &
    NATD_PID=$!
    for i in $(seq 1 6000); do
        grep -q 'first sync done' "$D/daemon.log" && break
        kill -0 "$NATD_PID" 2> /dev/null || break
        sleep 0.1
    done
    grep -q 'first sync done' "$D/daemon.log" || { tail -5 "$D/daemon.log" >&2; die "$n: the daemon never synced"; }
    echo "latency: $n: daemon synced at $((SECONDS - STARTED)) s; sampling" >&2

    # pod-a serves the probe Service now; each sample moves it to the other pod.
    local cur=a next taken=0 tries=0 held=0 before out rc at prev line waited others
    : > "$D/samples.tsv"
    prev=$(wc -l < "$D/daemon.log") # the log line after which this sample's syncs come
    while [ "$taken" -le "$SAMPLES" ]; do
        tries=$((tries + 1))
        [ "$tries" -le $((2 * SAMPLES + 1)) ] || die "$n: $held samples held by other syncs; giving up"
        sleep 1.2 # the last sync is older than minSyncPeriod (1 s)
        if [ "$cur" = a ]; then next=b; else next=a; fi
        before=$(changes_logged)
        out=$(timeout 120 ip netns exec "$(topo_ns client)" "$TMP/latency-probe" "$NODE_NS" 127.0.0.1 "$PORT" \
            "$D/slice-$next.json" "$PROBE_IP" 80 "pod-$cur" "pod-$next" "$PROBE_INTERVAL_US" "$PROBE_TIMEOUT_MS" 60)
        rc=$?
        [ "$rc" = 0 ] || { echo "$out" >&2; tail -n 5 "$D/daemon.log" >&2; die "$n: latency-probe failed ($rc)"; }
        cur=$next
        for i in $(seq 1 300); do
            [ -n "$(change_after "$before")" ] && break
            sleep 0.1
        done
        line=$(change_after "$before")
        [ -n "$line" ] || { tail -n 5 "$D/daemon.log" >&2; die "$n: the daemon logged no change line"; }
        at=${line%%:*}
        line=${line#*:}
        # Syncs logged since the previous sample besides this change's own: a periodic one came in between.
        others=$(awk -v from="$prev" -v upto="$at" 'NR > from && NR < upto && /synced IPv4 /' "$D/daemon.log" | wc -l)
        others=$((others - 1))
        prev=$at
        waited=$(echo "$line" | sed -n 's/.*waited for the sync \([0-9.]*\) ms.*/\1/p')
        [ -n "$waited" ] || die "$n: unreadable change line: $line"
        if [ "$others" -gt 0 ] && awk -v w="$waited" 'BEGIN { exit !(w > 100) }'; then
            held=$((held + 1))
            echo "latency: $n: the change waited ${waited} ms behind a sync that started after the last sample; taken again" >&2
            continue
        fi
        [ "$taken" -gt 0 ] && printf '%s\t%s\n' "$out" "$line" >> "$D/samples.tsv"
        taken=$((taken + 1))
    done
    echo "$held" > "$D/held"
    stop_cluster
    # The next size starts from empty tables, as a fresh node would.
    if [ "$BACKEND" = libnftnl ]; then in_node nft flush ruleset; else
        for t in filter nat mangle; do in_node iptables-legacy -t "$t" -F && in_node iptables-legacy -t "$t" -X; done
    fi
    echo "latency: $n done at $((SECONDS - STARTED)) s" >&2
}

for N in $SIZES; do
    case "$N" in '' | *[!0-9]*) die "sizes are numbers of Services, got $N" ;; esac
    one_size "$N"
done

mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
JSON="$OUT_DIR/latency-$STAMP.json"
timeout 60 python3 - "$TMP" "$JSON" "$STAMP" "$(uname -r)" "$CPU" "$(nproc)" "$LOADAVG" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$BACKEND" "$SAMPLES" "$PROBE_INTERVAL_US" "$PROBE_TIMEOUT_MS" "$KUBE_NATD" $SIZES << 'PY' || die "report failed"
import json, math, re, sys
tmp, out, stamp, kernel, cpu, cpus, load0, load1, backend, samples, interval, timeout, binary = sys.argv[1:14]
sizes = [int(s) for s in sys.argv[14:]]

def pct(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]

def field(text, label):
    m = re.search(re.escape(label) + r" (-?[0-9.]+)", text)
    return float(m.group(1)) if m else None

result = {"date": stamp, "kernel": kernel, "cpu": cpu, "cpus": int(cpus), "load_average_start": load0,
          "load_average_end": load1, "kube_natd": binary, "backend": backend, "samples_per_size": int(samples),
          "probe_interval_us": int(interval), "probe_timeout_ms": int(timeout), "sizes": []}
rows = []
for n in sizes:
    taken = []
    for raw in open(f"{tmp}/{n}/samples.tsv"):
        probe, line = raw.rstrip("\n").split("\t", 1)
        p = dict(kv.split("=") for kv in probe.split())
        taken.append({
            "traffic_ms": float(p["new_ms"]), "new_connection_started_ms": float(p["new_sent_ms"]),
            "last_old_answer_ms": float(p["last_old_ms"]), "attempts": int(p["attempts"]),
            "timeouts": int(p["timeouts"]), "refused": int(p["refused"]), "errors": int(p["errors"]),
            "event_to_done_ms": field(line, "first event to sync done"), "kernel_commit_ms": field(line, "kernel commit"),
            "own_ms": field(line, "own"), "waited_for_sync_ms": field(line, "waited for the sync"),
            "compile_ms": field(line, "compile"), "apply_ms": field(line, "apply"),
            "partial": "(partial sync" in line,
        })
    def col(k): return [s[k] for s in taken]
    size = {"services": n, "samples": taken, "held_samples_retaken": int(open(f"{tmp}/{n}/held").read()),
            "traffic_ms": {"p50": pct(col("traffic_ms"), 50), "p90": pct(col("traffic_ms"), 90), "max": max(col("traffic_ms"))},
            "own_ms_p50": pct(col("own_ms"), 50), "kernel_commit_ms_p50": pct(col("kernel_commit_ms"), 50),
            "event_to_done_ms_p50": pct(col("event_to_done_ms"), 50),
            "waited_for_sync_ms_p50": pct(col("waited_for_sync_ms"), 50),
            "failed_connections": sum(s["timeouts"] + s["refused"] + s["errors"] for s in taken)}
    result["sizes"].append(size)
    t = size["traffic_ms"]
    rows.append((n, len(taken), t["p50"], t["p90"], t["max"], size["own_ms_p50"], size["kernel_commit_ms_p50"],
                 size["event_to_done_ms_p50"], size["failed_connections"], size["held_samples_retaken"]))
json.dump(result, open(out, "w"), indent=1)
print(f"{'Services':>9} {'samples':>7} | {'traffic p50':>11} {'p90':>8} {'max':>8} | {'own p50':>8} {'kernel p50':>10} "
      f"{'event->done p50':>15} | {'failed conns':>12} {'retaken':>7}")
for r in rows:
    print(f"{r[0]:>9} {r[1]:>7} | {r[2]:>8.1f} ms {r[3]:>5.1f} ms {r[4]:>5.1f} ms | {r[5]:>5.1f} ms {r[6]:>7.1f} ms "
          f"{r[7]:>12.1f} ms | {r[8]:>12} {r[9]:>7}")
PY
echo "latency: results in $JSON ($((SECONDS - STARTED)) s)"
