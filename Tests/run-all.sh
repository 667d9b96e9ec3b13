#!/usr/bin/env bash
# `make test`: every suite, each run even when an earlier one failed, then one overall line.
#
#   Tests/run-all.sh            (from the repository root; SWIFT, MAKE and BIN may be set, as the Makefile does)
#
# One line per suite, "SUITE: N passed, M failed, K skipped", then "make test: N passed, M failed, K skipped";
# exits non-zero when anything failed. A suite that prints no count, or exits non-zero without a failed count,
# counts as one failure; a build that fails counts as one failure (the suites still run and report what they can).
# Each suite's whole output is kept in $RUN_ALL_LOGS (default a temporary directory, printed at the end).
#
# To add a suite: one `suite NAME PARSER COMMAND...` line below. PARSER is `counts` for a script whose last
# matching line is "NAME: N passed, M failed[, K skipped]" (Tests/kernel/lib/checks.sh's summary), `xctest` for
# `swift test` (its "Executed N tests, with [K tests skipped and ]M failures" line), or `status` (exit status only).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
SWIFT=${SWIFT:-$(command -v swift 2> /dev/null || echo /opt/swift/usr/bin/swift)}
MAKE=${MAKE:-make}
BIN=${BIN:-.build/debug/kube-natd}
LOGS=${RUN_ALL_LOGS:-$(mktemp -d /tmp/knat-make-test.XXXXXX)}
mkdir -p "$LOGS"

PASS=0
FAIL=0
SKIP=0
LINES=()

# counts NAME LOG: "p f k" from the suite's summary line, or nothing
counts() {
    local line
    line=$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed" "$2" | tail -1)
    [ -n "$line" ] || return 1
    local p f k=0
    p=$(sed -E 's/^[^:]*: ([0-9]+) passed.*/\1/' <<< "$line")
    f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<< "$line")
    [[ "$line" =~ ,\ ([0-9]+)\ skipped ]] && k=${BASH_REMATCH[1]}
    echo "$p $f $k"
}
# xctest NAME LOG: from the last "Executed N tests, with [K test(s) skipped and ]M failure(s)" line
xctest() {
    local line n k=0 f
    line=$(grep -E 'Executed [0-9]+ tests?, with ' "$2" | tail -1)
    [ -n "$line" ] || return 1
    n=$(sed -E 's/.*Executed ([0-9]+) tests?, with.*/\1/' <<< "$line")
    [[ "$line" =~ with\ ([0-9]+)\ tests?\ skipped ]] && k=${BASH_REMATCH[1]}
    f=$(sed -E 's/.* ([0-9]+) failures?.*/\1/' <<< "$line")
    echo "$((n - k - f)) $f $k"
}
status() { return 1; }

# suite NAME PARSER COMMAND...: runs COMMAND (output to the terminal and to $LOGS/NAME.log), adds its counts
suite() {
    local name=$1 parser=$2; shift 2
    echo "== $name: $*"
    "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]} c p f k
    if c=$("$parser" "$name" "$LOGS/$name.log"); then
        read -r p f k <<< "$c"
    elif [ "$rc" = 0 ]; then
        p=1 f=0 k=0
    else
        p=0 f=1 k=0
    fi
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi # it failed without saying what: one failure
    PASS=$((PASS + p)); FAIL=$((FAIL + f)); SKIP=$((SKIP + k))
    LINES+=("$name: $p passed, $f failed, $k skipped$([ "$rc" != 0 ] && echo " (exit $rc)")")
}

suite build status "$SWIFT" build --build-tests
suite unit xctest "$SWIFT" test --skip-build
suite tsan xctest "$MAKE" --no-print-directory test-tsan SWIFT="$SWIFT"
suite cli counts bash Tests/cli.sh "$BIN"
# The Debian package is built from the static release binary (make release-static), then checked unpacked.
suite release-static status "$MAKE" --no-print-directory release-static deb-deps SWIFT="$SWIFT"
suite package counts bash Tests/package/deb.sh .build/release/kube-natd "$BIN"
suite manifest counts bash Tests/package/manifest.sh .build/release/kube-natd
suite kernel counts bash Tests/kernel/run.sh "$BIN"
suite soak counts "$MAKE" --no-print-directory soak-short SWIFT="$SWIFT"

echo
for l in "${LINES[@]}"; do echo "$l"; done
echo "(logs: $LOGS)"
echo "make test: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" = 0 ]
