#!/usr/bin/env bash
# Runs every kernel test (root; each script works only in network namespaces it creates and deletes).
#
#   Tests/kernel/run.sh path/to/kube-natd
#
# Prints each suite's own lines, then `kernel: N passed, M failed, K skipped`; exits non-zero when any check failed.
# A suite's last line is `NAME: N passed, M failed[, K skipped]` (lib/checks.sh's summary); a suite without one, or
# that exits non-zero with no failed check, counts as one failure.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
BINDIR=$(dirname "$BIN")
[ "$(id -u)" = 0 ] || { echo "kernel tests need root (network namespaces)"; exit 1; }

PASS=0
FAIL=0
SKIP=0
run_suite() { # run_suite NAME SCRIPT ARGS...
    local name=$1; shift
    echo "== $name"
    local out rc
    out=$(timeout 900 bash "$@" 2>&1); rc=$?
    echo "$out"
    local line p f k
    line=$(echo "$out" | grep -E "^$name: [0-9]+ passed, [0-9]+ failed" | tail -1)
    if [ -z "$line" ]; then
        echo "$name: no summary line (exit $rc)"; FAIL=$((FAIL + 1)); return
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.*, ([0-9]+) failed.*/\1/')
    k=0; [[ "$line" =~ ,\ ([0-9]+)\ skipped ]] && k=${BASH_REMATCH[1]}
    PASS=$((PASS + p)); FAIL=$((FAIL + f)); SKIP=$((SKIP + k))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "$name: exit $rc with no failed check: counted as a failure"; FAIL=$((FAIL + 1)); fi
}

run_suite netfilter-backend "$HERE/netfilter-backend.sh" "$BINDIR/netfilter-harness"
run_suite equivalence "$HERE/equivalence.sh" "$BIN"
run_suite traffic "$HERE/traffic.sh" "$BIN"
run_suite traffic-v1.23 "$HERE/traffic.sh" "$BIN" v1.23
run_suite conntrack "$HERE/conntrack.sh" "$BIN"
run_suite daemon "$HERE/daemon.sh" "$BIN"
run_suite daemon-cli "$HERE/daemon-cli.sh" "$BIN"
run_suite apiserver-e2e "$HERE/apiserver-e2e.sh" "$BIN"
run_suite topology "$HERE/topology.sh" "$BIN"
run_suite apiserver-topology "$HERE/apiserver-topology.sh" "$BIN"
run_suite node "$HERE/node.sh" "$BIN"
# The traffic, daemon, end-to-end, topology and node suites again through the nf_tables backend.
BACKEND=libnftnl run_suite traffic-nft "$HERE/traffic.sh" "$BIN"
BACKEND=libnftnl run_suite traffic-nft-v1.23 "$HERE/traffic.sh" "$BIN" v1.23
BACKEND=libnftnl run_suite daemon-nft "$HERE/daemon.sh" "$BIN"
BACKEND=libnftnl run_suite apiserver-e2e-nft "$HERE/apiserver-e2e.sh" "$BIN"
BACKEND=libnftnl run_suite topology-nft "$HERE/topology.sh" "$BIN"
BACKEND=libnftnl run_suite apiserver-topology-nft "$HERE/apiserver-topology.sh" "$BIN"
BACKEND=libnftnl run_suite node-nft "$HERE/node.sh" "$BIN"
run_suite nftables "$HERE/nftables.sh" "$BIN" "$BINDIR/nft-harness"
run_suite cleanup "$HERE/cleanup.sh" "$BIN"

echo "kernel: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
