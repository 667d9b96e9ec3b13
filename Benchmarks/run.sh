#!/usr/bin/env bash
# kube-natd benchmark: compile, libiptc sync and iptables-legacy-restore side by side, at 1k/10k/30k Services.
#
#   bash Benchmarks/run.sh [path/to/kube-natd]        (root; `make bench` builds release first)
#
# Environment: SIZES (default "1000 10000 30000"), RUNS (median of, default 5; one warm-up run is extra),
# LARGE_RUNS (default 3): the series at 30k Services and above other than compile (kube-natd --once, in-process
# sync, floor, iptables-legacy-restore, detection): one iptables-legacy-restore of that table takes ~20 s on
# 2 cores, and five of each would not fit. Compile always takes RUNS. NFT_RESTORE_MAX (default 10000): the
# largest size at which iptables-nft-restore of the dry-run text is measured (once: it takes minutes at 10k).
# DAEMON_SAMPLES (default 20): EndpointSlice changes timed through the daemon on libnftnl (p50/p99).
# The x_tables rules live in one network namespace this script creates (knat-bench-<pid>), the nf_tables rules
# in another (knat-benchn-<pid>); both are deleted on exit, failure or interrupt. Prints a table; writes the
# same figures to bench-results/<date>.json.
set -uo pipefail
KUBE_NATD=$(readlink -f "${1:-.build/release/kube-natd}")
BIN=$(dirname "$KUBE_NATD")
NATD_BENCH="$BIN/natd-bench"
SIZES=${SIZES:-"1000 10000 30000"}
RUNS=${RUNS:-5}
LARGE_RUNS=${LARGE_RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_DIR="$HERE/../bench-results"
STARTED=$SECONDS

die() { echo "bench: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (network namespaces)"
[ -x "$KUBE_NATD" ] || die "$KUBE_NATD not found (swift build -c release)"
[ -x "$NATD_BENCH" ] || die "$NATD_BENCH not found (swift build -c release)"
[ -x "$BIN/fake-apiserver" ] || die "$BIN/fake-apiserver not found (swift build -c release)"
for tool in ip iptables-legacy-restore iptables-legacy-save python3 curl; do
    command -v "$tool" >/dev/null || die "$tool missing (make deps)"
done
if [ ! -x /usr/bin/time ]; then
    echo "bench: installing GNU time for peak RSS"
    timeout 300 apt-get install -y -qq time >/dev/null || die "GNU time missing and apt-get install time failed"
fi

NS="knat-bench-$$"
NSN="knat-benchn-$$"
TMP=$(mktemp -d /tmp/knat-bench.XXXXXX)
cleanup() {
    local ns
    for ns in "$NS" "$NSN"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS" || die "cannot create namespace $NS"
ip netns exec "$NS" ip link set lo up
ip netns add "$NSN" || die "cannot create namespace $NSN"
ip netns exec "$NSN" ip link set lo up

# in_ns CMD...: runs CMD inside the namespace (the x_tables one, or $USE_NS), bounded.
in_ns() { timeout 600 ip netns exec "${USE_NS:-$NS}" "$@"; }

# timed OUTFILE CMD...: runs CMD inside the namespace and appends its wall time in ms to OUTFILE. The clock
# is read inside the namespace, so `ip netns exec` itself is not counted; process start-up is.
timed() {
    local out=$1; shift
    timeout 600 ip netns exec "${USE_NS:-$NS}" bash -c '
        s=$EPOCHREALTIME; "$@" >/dev/null 2>>"$LOG"; rc=$?; e=$EPOCHREALTIME
        [ $rc = 0 ] || { echo "bench: failed ($rc): $*" >&2; tail -3 "$LOG" >&2; exit $rc; }
        s=${s/./}; e=${e/./}; echo $(( (10#$e - 10#$s) / 1000 )).$(( ((10#$e - 10#$s) % 1000) / 100 ))' _ "$@" >>"$out" \
        || die "command failed: $*"
}

# empty_tables: filter and nat back to empty built-in chains (what a fresh namespace holds), in one restore.
empty_tables() {
    printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n' \
        | in_ns iptables-legacy-restore || die "cannot empty the tables"
}

# peak_rss_kb OUTFILE CMD...: GNU time's maximum resident set size of CMD, run inside the namespace.
peak_rss() {
    local out=$1; shift
    timeout 600 ip netns exec "${USE_NS:-$NS}" /usr/bin/time -f %M -o "$out" "$@" >/dev/null 2>>"$LOG" || die "command failed: $*"
}

# empty_nft: the nf_tables namespace back to no ruleset at all (what a fresh namespace holds).
empty_nft() { ip netns exec "$NSN" nft flush ruleset || die "cannot flush the nf_tables ruleset"; }

# daemon_bench N DIR RESULTS BACKEND SAMPLES: the daemon on BACKEND against fake-apiserver, in the namespace of
# that backend's tables; writes RESULTS/daemon_BACKEND.json and the event->commit samples (ms, from the daemon's
# own -v 4 account of each change's programming latency).
daemon_bench() {
    local n=$1 d=$2 r=$3 backend=$4 samples=$5 port=18080 i
    local api="http://127.0.0.1:$port"
    local fake_pid natd_pid
    python3 - "$d/base/cluster.json" "$d/changed/cluster.json" "$d" << 'PY' || return 1
import json, sys
base = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in json.load(open(sys.argv[1]))["items"] if o["kind"] == "EndpointSlice"}
changed = [o for o in json.load(open(sys.argv[2]))["items"] if o["kind"] == "EndpointSlice"
           and base[(o["metadata"]["namespace"], o["metadata"]["name"])] != o]
assert len(changed) == 1, f"expected one changed slice, found {len(changed)}"
for name, o in (("slice-a.json", changed[0]), ("slice-b.json", base[(changed[0]["metadata"]["namespace"], changed[0]["metadata"]["name"])])):
    o = json.loads(json.dumps(o))
    o["metadata"].setdefault("annotations", {})["endpoints.kubernetes.io/last-change-trigger-time"] = "TRIGGER_TIME"
    o["metadata"].pop("resourceVersion", None)
    json.dump(o, open(f"{sys.argv[3]}/{name}", "w"))
PY
    cat > "$d/kubeconfig" << KC
apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "$api"}}]
contexts: [{name: bench, context: {cluster: bench, user: bench}}]
current-context: bench
users: [{name: bench, user: {}}]
KC
    { cat "$CFG"; printf 'healthzBindAddress: 127.0.0.1:10256\nmetricsBindAddress: 127.0.0.1:10249\nclientConnection:\n  kubeconfig: %s\n' "$d/kubeconfig"; } > "$d/daemon-config.yaml"
    timeout 900 ip netns exec "${USE_NS:-$NS}" "$BIN/fake-apiserver" --listen "127.0.0.1:$port" --preload "$d/base/cluster.json" \
        > "$d/fake.log" 2>&1 &
    fake_pid=$!
    stop_daemon_bench() { kill "$natd_pid" "$fake_pid" 2>/dev/null; wait "$natd_pid" "$fake_pid" 2>/dev/null; }
    for i in $(seq 1 600); do
        in_ns curl -s -o /dev/null --max-time 2 "$api/api/v1/services?limit=1" && break
        sleep 0.1
    done
    # The generated configuration's node: the daemon waits for its Node's IPs (its bindAddress, 192.168.0.2).
    printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},"spec":{"podCIDR":"10.128.1.0/24"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.0.2"}]}}' \
        | in_ns curl -s -o /dev/null -X PUT --data-binary @- "$api/control/objects" || { stop_daemon_bench; return 1; }
    timeout 900 ip netns exec "${USE_NS:-$NS}" "$KUBE_NATD" --config "$d/daemon-config.yaml" --backend "$backend" \
        --ip-family ipv4 --random-fully no -v 4 > "$d/daemon.log" 2>&1 &
    natd_pid=$!
    for i in $(seq 1 1800); do
        grep -q 'first sync done' "$d/daemon.log" && break
        kill -0 "$natd_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q 'first sync done' "$d/daemon.log" || { echo "bench: daemon never synced" >&2; tail -5 "$d/daemon.log" >&2; stop_daemon_bench; return 1; }
    # $natd_pid is `timeout`; the daemon is its child (ip netns exec execs it).
    local daemon_pid; daemon_pid=$(pgrep -P "$natd_pid" | head -1)
    grep -q kube-natd "/proc/$daemon_pid/comm" 2>/dev/null || { echo "bench: daemon process not found" >&2; stop_daemon_bench; return 1; }
    # Each change's latency as the daemon itself measured it: "network programming IPv4: 1 endpoint changes, ms: X".
    programmed() { grep -c 'network programming IPv4' "$d/daemon.log"; }
    local lat=() rss=() before k ms
    sleep 2
    rss+=("$(awk '/^VmRSS/ {print $2}' "/proc/$daemon_pid/status")")
    for i in $(seq 0 "$samples"); do
        sleep 1.2 # the last sync is older than minSyncPeriod (1 s)
        before=$(programmed)
        if [ $((i % 2)) = 0 ]; then f="$d/slice-a.json"; else f="$d/slice-b.json"; fi
        sed "s/TRIGGER_TIME/$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)/" "$f" \
            | in_ns curl -s -o /dev/null -X PUT --data-binary @- "$api/control/objects" || { stop_daemon_bench; return 1; }
        for k in $(seq 1 600); do
            [ "$(programmed)" -gt "$before" ] && break
            sleep 0.02
        done
        [ "$(programmed)" -gt "$before" ] || { echo "bench: the change never reached the kernel" >&2; tail -n 5 "$d/daemon.log" "$d/fake.log" >&2; stop_daemon_bench; return 1; }
        ms=$(grep 'network programming IPv4' "$d/daemon.log" | tail -1 | sed 's/.*ms: //' | awk '{print $NF}')
        [ "$i" -gt 0 ] && lat+=("$ms")
    done
    sleep 2
    rss+=("$(awk '/^VmRSS/ {print $2}' "/proc/$daemon_pid/status")")
    stop_daemon_bench
    printf '%s\n' "${lat[@]}" > "$r/daemon_${backend}_event_to_commit.raw"
    echo "bench: $n: daemon ($backend) event->commit samples (ms): ${lat[*]}" >&2
    printf '{"rss_between_syncs_kb":%d,"rss_after_changes_kb":%d}\n' "${rss[0]}" "${rss[1]}" > "$r/daemon_${backend}.json"
}

export LOG="$TMP/log"
: >"$LOG"
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: $(date -u +%FT%TZ), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, load average $LOADAVG"
echo "bench: sizes $SIZES, median of $RUNS runs after one warm-up, namespace $NS"

for N in $SIZES; do
    D="$TMP/$N"
    mkdir -p "$D"
    R="$D/results"
    mkdir -p "$R"
    PR=$RUNS
    [ "$N" -ge 30000 ] && PR=$LARGE_RUNS
    echo "$PR" >"$R/process_runs"
    echo "bench: $N Services: generating" >&2
    timeout 300 "$NATD_BENCH" generate "$N" "$D/base" "$D/changed" >"$R/generate.json" || die "generate $N failed"
    CFG="$D/kube-proxy-config.yaml"
    ONCE=("$KUBE_NATD" --config "$CFG" --once --backend libiptc --ip-family ipv4 --random-fully no --nfacct-counters no)
    DRY=("$KUBE_NATD" --config "$CFG" --dry-run --ip-family ipv4 --random-fully no --nfacct-counters no)

    # (1, 2) compile, render, incremental compile; manifest load and decode (in process).
    echo "bench: $N: compile" >&2
    timeout 300 "$NATD_BENCH" compile "$N" "$RUNS" >"$R/compile.json" || die "compile $N failed"
    timeout 300 "${DRY[@]}" --source "$D/base" >"$D/base.txt" 2>>"$LOG" || die "dry-run $N failed"

    # (3) kube-natd --once, libiptc: into empty tables, then steady state (the same rules already there).
    echo "bench: $N: kube-natd --once" >&2
    for i in $(seq 0 "$PR"); do
        empty_tables
        timed "$R/once_empty.raw" "${ONCE[@]}" --source "$D/base"
    done
    for i in $(seq 0 "$PR"); do
        timed "$R/once_steady.raw" "${ONCE[@]}" --source "$D/base"
    done
    # (4) one endpoint changed: alternate between the two sources, so every sync changes one endpoint.
    for i in $(seq 0 "$PR"); do
        if [ $((i % 2)) = 0 ]; then src="$D/changed"; else src="$D/base"; fi
        timed "$R/once_change.raw" "${ONCE[@]}" --source "$src"
    done
    # An even number of runs ends on the changed source: back to the base rules first, untimed.
    if [ $((PR % 2)) = 0 ]; then
        in_ns "${ONCE[@]}" --source "$D/base" >/dev/null 2>>"$LOG" || die "once back to base failed"
    fi
    # (6) peak RSS of kube-natd --once (steady state, the base rules already there), and what kube-natd itself logs
    # for that sync (compile vs commit, iptc_commit per table). -v 4 warns that it does not override --config,
    # but --once takes its log level from the flag.
    timeout 300 ip netns exec "$NS" /usr/bin/time -f %M -o "$R/once_rss.raw" "${ONCE[@]}" --source "$D/base" -v 4 \
        >/dev/null 2>"$R/once_steady.log" || die "once -v 4 failed"

    # (3, 4) the same syncs in process, as the daemon runs them: no process start, no manifest decode, no
    # host-mode detection (the daemon does those once). Full compile + both commits; one-endpoint sync with
    # the compiler's fragment cache warm.
    echo "bench: $N: in-process sync" >&2
    # It also times the manifest load (read + decode) that every --once pays and the daemon does not.
    in_ns "$NATD_BENCH" sync "$CFG" "$D/base" "$D/changed" "$PR" >"$R/sync.json" 2>>"$LOG" || die "sync $N failed"
    # What `--once --backend libiptc` spends deciding legacy vs nft (netfilter-harness detect runs the same
    # detector: two *-nft-save runs, iptables --version, the legacy tables' entry counts from IPT_SO_GET_INFO).
    for i in $(seq 0 "$PR"); do
        timed "$R/detect.raw" "$BIN/netfilter-harness" detect
    done

    # (5) bare libiptc floor: init + refill one small chain + commit, filter and nat, of these tables.
    echo "bench: $N: libiptc floor" >&2
    in_ns "$NATD_BENCH" floor "$PR" >"$R/floor.json" || die "floor $N failed"
    peak_rss "$R/floor_rss.raw" "$NATD_BENCH" floor 1

    # (5) iptables-legacy-restore --noflush of the identical dry-run text: empty, then holding it.
    echo "bench: $N: iptables-legacy-restore" >&2
    for i in $(seq 0 "$PR"); do
        empty_tables
        timed "$R/restore_empty.raw" iptables-legacy-restore --noflush <"$D/base.txt"
    done
    # The last empty-table run left the rules in place. The steady series' warm-up run is the one whose peak
    # RSS is taken (its time is not used: report.py drops each series' first sample).
    timeout 300 ip netns exec "$NS" /usr/bin/time -f %M -o "$R/restore_rss.raw" \
        iptables-legacy-restore --noflush <"$D/base.txt" 2>>"$LOG" || die "restore rss failed"
    echo 0 >>"$R/restore_steady.raw"
    for i in $(seq 1 "$PR"); do
        timed "$R/restore_steady.raw" iptables-legacy-restore --noflush <"$D/base.txt"
    done
    empty_tables

    # (#5) the daemon, following a test apiserver that holds this cluster: one EndpointSlice change, from the
    # watch event to the commit finished (kubeproxy_network_programming_duration_seconds, from the slice's
    # last-change-trigger-time stamped at the PUT), with the last sync older than minSyncPeriod; and its
    # resident memory between syncs. Sizes up to DAEMON_MAX (default 10000): at 30k the initial list alone
    # would not fit the 10-minute budget with the rest.
    if [ "$N" -le "${DAEMON_MAX:-10000}" ]; then
        echo "bench: $N: daemon (libiptc)" >&2
        daemon_bench "$N" "$D" "$R" libiptc "$RUNS" || die "daemon $N failed"
    fi

    # (nf_tables) the same cluster through libnftnl, in the other namespace: --once into an empty ruleset, again
    # onto the same rules (steady), one endpoint changed; in process as the daemon syncs; iptables-nft-restore of
    # the identical dry-run text (once, up to NFT_RESTORE_MAX); the daemon on libnftnl, DAEMON_SAMPLES changes.
    export USE_NS=$NSN
    NONCE=("$KUBE_NATD" --config "$CFG" --once --backend libnftnl --ip-family ipv4 --random-fully no --nfacct-counters no)
    echo "bench: $N: kube-natd --once --backend libnftnl" >&2
    for i in $(seq 0 "$PR"); do
        empty_nft
        timed "$R/nft_once_empty.raw" "${NONCE[@]}" --source "$D/base"
    done
    for i in $(seq 0 "$PR"); do
        timed "$R/nft_once_steady.raw" "${NONCE[@]}" --source "$D/base"
    done
    for i in $(seq 0 "$PR"); do
        if [ $((i % 2)) = 0 ]; then src="$D/changed"; else src="$D/base"; fi
        timed "$R/nft_once_change.raw" "${NONCE[@]}" --source "$src"
    done
    if [ $((PR % 2)) = 0 ]; then
        in_ns "${NONCE[@]}" --source "$D/base" >/dev/null 2>>"$LOG" || die "nft once back to base failed"
    fi
    peak_rss "$R/nft_once_rss.raw" "${NONCE[@]}" --source "$D/base"
    echo "bench: $N: in-process sync (libnftnl)" >&2
    in_ns "$NATD_BENCH" sync "$CFG" "$D/base" "$D/changed" "$PR" libnftnl >"$R/nft_sync.json" 2>>"$LOG" \
        || die "nft sync $N failed"
    if [ "$N" -le "${NFT_RESTORE_MAX:-10000}" ]; then
        echo "bench: $N: iptables-nft-restore (once)" >&2
        empty_nft
        timed "$R/nft_restore_empty.raw" iptables-nft-restore --noflush <"$D/base.txt"
    fi
    empty_nft
    if [ "$N" -le "${NFT_DAEMON_MAX:-30000}" ]; then
        echo "bench: $N: daemon (libnftnl)" >&2
        daemon_bench "$N" "$D" "$R" libnftnl "${DAEMON_SAMPLES:-20}" || die "nft daemon $N failed"
    fi
    empty_nft
    unset USE_NS
    echo "bench: $N done at $((SECONDS - STARTED)) s" >&2
done

mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
JSON="$OUT_DIR/$STAMP.json"
timeout 60 python3 "$HERE/report.py" "$TMP" "$JSON" "$RUNS" "$LOADAVG" "$((SECONDS - STARTED))" $SIZES || die "report failed"
echo "bench: results in $JSON ($((SECONDS - STARTED)) s)"
