# Sourced by the kernel test scripts: pass/fail/skip counters, named checks, set-up steps and bounded waits.
# check NAME COMMAND...: runs the command (which prints why it failed) and counts the result.
# need NAME COMMAND...: a set-up step a later comparison relies on (a fixture, an --once, a rule added by hand):
#     silent when it succeeds, counted as a failure when it does not, so a comparison never passes on a set-up
#     that did not happen. Returns the command's status.
# skip NAME WHY: a check that could not run here (counted and printed, never as passed).
# summary SUITE: the suite's last line, "SUITE: N passed, N failed, N skipped" (run.sh parses it).
# wait_for TENTHS COMMAND...: COMMAND until it succeeds, every 0.1 s, at most TENTHS tries (a condition, not a clock).
PASS=0
FAIL=0
SKIP=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
skip() { SKIP=$((SKIP + 1)); echo "skip $1${2:+: $2}"; }
check() {
    local name=$1; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
need() {
    local name=$1; shift
    "$@" && return 0
    local rc=$?
    bad "set-up: $name (exit $rc)"
    return $rc
}
summary() { echo "$1: $PASS passed, $FAIL failed, $SKIP skipped"; }
wait_for() {
    local n=$1 i; shift
    for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
    return 1
}
