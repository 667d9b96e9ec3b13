# Sourced by the kernel test scripts: pass/fail counters and named checks.
# check NAME COMMAND...: runs the command (which prints why it failed) and counts the result.
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
check() {
    local name=$1; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
