#!/usr/bin/env bash
# `make soak`: kube-natd's daemon against the test apiserver under a seeded stream of changes and faults, for each
# kernel backend, in network namespaces this script creates and deletes (root). See Tests/soak/soak.py.
#
#   Tests/soak/run.sh path/to/bin-dir
#
# Environment: SOAK_S (seconds of churn per backend, default 600), SOAK_SEED (default 1), SOAK_SERVICES (default
# 10000), SOAK_BACKENDS (default: libiptc, and libnftnl where kube-natd has it), SOAK_RATE (changes per second,
# default 4), SOAK_OUT (report directory, default bench-results). Prints `soak: N passed, M failed, 0 skipped` (one per backend)
# and writes bench-results/soak-<UTC time>.json; exits non-zero when any backend missed a target.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/release}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "soak: needs root (network namespaces)"; exit 2; }
for b in kube-natd fake-apiserver; do [ -x "$BIN/$b" ] || { echo "soak: $BIN/$b not found"; exit 2; }; done
SECONDS_PER=${SOAK_S:-600}
SEED=${SOAK_SEED:-1}
SERVICES=${SOAK_SERVICES:-10000}
RATE=${SOAK_RATE:-4}
OUT_DIR=${SOAK_OUT:-$ROOT/bench-results}
if [ -z "${SOAK_BACKENDS:-}" ]; then
    SOAK_BACKENDS=libiptc
    "$BIN/kube-natd" --help 2>&1 | grep -q libnftnl && SOAK_BACKENDS="libiptc libnftnl"
fi
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
TMP=$(mktemp -d /tmp/knat-soak.XXXXXX)

# shellcheck source=../kernel/lib/topology.sh
source "$ROOT/Tests/kernel/lib/topology.sh"
cleanup() { topo_teardown; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=0
FAIL=0
REPORTS=()
for backend in $SOAK_BACKENDS; do
    prefix="knat-soak-$$-$backend-"
    echo "== soak $backend: $SERVICES Services, $SECONDS_PER s, seed $SEED"
    topo_setup "$prefix" || { echo "soak: topology failed"; exit 2; }
    topo_start_servers $((SECONDS_PER + 900)) || { echo "soak: pod servers failed"; exit 2; }
    timeout -k 10 $((SECONDS_PER * 2 + 900)) ip netns exec "$(topo_ns node)" python3 "$HERE/soak.py" \
        --bin "$BIN" --prefix "$prefix" --backend "$backend" --seconds "$SECONDS_PER" --seed "$SEED" \
        --services "$SERVICES" --rate "$RATE" --out "$TMP/$backend.json"
    rc=$?
    if [ "$rc" = 0 ]; then PASS=$((PASS + 1)); else FAIL=$((FAIL + 1)); fi
    [ -s "$TMP/$backend.json" ] && REPORTS+=("$TMP/$backend.json")
    topo_teardown
done

if [ ${#REPORTS[@]} -gt 0 ]; then
    mkdir -p "$OUT_DIR"
    python3 - "$OUT_DIR/soak-$STAMP.json" "$STAMP" "${REPORTS[@]}" << 'PY'
import json, os, platform, sys
out, stamp, files = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = [json.load(open(f)) for f in files]
doc = {"date": stamp, "kernel": platform.release(), "load_average": os.getloadavg(),
       "cpus": os.cpu_count(), "runs": runs}
json.dump(doc, open(out, "w"), indent=1)
print("soak: report written to %s" % out)
PY
fi
echo "soak: $PASS passed, $FAIL failed, 0 skipped"
[ "$FAIL" = 0 ]
