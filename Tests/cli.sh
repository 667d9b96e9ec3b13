#!/usr/bin/env bash
# Command-line behaviour of kube-natd that operators' scripts rely on (no root needed, nothing touches the kernel).
#
#   Tests/cli.sh path/to/kube-natd
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/knat-cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "  ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -10 | sed 's/^/       /'; }
run() { "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"; echo $? >"$TMP/rc"; }
expect() { # expect DESCRIPTION RC STDOUT-EMPTY(yes|no) STDERR-PATTERN
    local rc; rc=$(cat "$TMP/rc")
    if [ "$rc" != "$2" ]; then bad "$1: exit $rc, want $2" "$(cat "$TMP/err")"; return; fi
    if [ "$3" = yes ] && [ -s "$TMP/out" ]; then bad "$1: stdout not empty" "$(head -3 "$TMP/out")"; return; fi
    if [ -n "$4" ] && ! grep -qE -- "$4" "$TMP/err"; then bad "$1: stderr lacks /$4/" "$(cat "$TMP/err")"; return; fi
    ok "$1"
}
CFG=$ROOT/Config/kube-proxy-config.yaml
EX=$ROOT/Config/example-cluster.yaml

bad_cfg() { # bad_cfg DESCRIPTION YAML-LINES PATTERN
    printf 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n%s\n' "$2" >"$TMP/bad.yaml"
    run --config "$TMP/bad.yaml" --source "$EX" --dry-run
    expect "$1" 2 yes "$3"
}
bad_cfg "masqueradeBit out of range" "iptables: {masqueradeBit: 40}" 'iptables.masqueradeBit: must be 0..31, got 40'
bad_cfg "syncPeriod not a duration" "iptables: {syncPeriod: abc}" 'iptables.syncPeriod'
bad_cfg "bad clusterCIDR" "clusterCIDR: 10.0.0.0/33" 'clusterCIDR'
bad_cfg "mode other than iptables" "mode: ipvs" 'mode'
bad_cfg "wrong type" "iptables: {masqueradeAll: [1]}" 'iptables.masqueradeAll'
run --config "$TMP/missing.yaml" --source "$EX" --dry-run
expect "unreadable config file" 2 yes 'missing.yaml'

printf 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nhostnameOverride: node-1\nnoSuchField: 1\niptables: {fancy: true}\nsyncPeriod: 0s\nconntrack: {maxPerCore: null}\n' >"$TMP/unknown.yaml"
run --config "$TMP/unknown.yaml" --source "$EX" --dry-run
expect "unknown fields are warnings, dry run still works" 0 no 'unknown field "noSuchField"'
grep -q 'iptables.fancy' "$TMP/err" && ok "nested unknown field named by path" || bad "nested unknown field not named" "$(cat "$TMP/err")"
grep -q '^\*nat' "$TMP/out" && ok "dry run printed the nat table" || bad "no nat table on stdout"

cat "$EX" >"$TMP/cluster.yaml"
cat >>"$TMP/cluster.yaml" <<'YAML'
---
apiVersion: v1
kind: Service
metadata: {name: broken, namespace: team-a}
spec: {clusterIP: 10.96.0.99, ports: [{port: 0}]}
---
apiVersion: v1
kind: Service
metadata: {name: badrange, namespace: team-a}
spec: {type: LoadBalancer, clusterIP: 10.96.0.98, ports: [{port: 80, nodePort: 31000}], loadBalancerSourceRanges: [not-a-cidr]}
YAML
run --config "$CFG" --source "$EX" --dry-run
cp "$TMP/out" "$TMP/clean.txt"
run --config "$CFG" --source "$TMP/cluster.yaml" --dry-run
expect "bad objects are warnings with file, object and path; exit 0" 0 no 'cluster.yaml.*Service team-a/broken: spec.ports\[0\].port: must be 1-65535, got 0'
last=$(tail -1 "$TMP/err")
case "$last" in *"1 objects skipped, 1 fields ignored"*) ok "last stderr line counts what was skipped: $last";; *) bad "last stderr line: $last";; esac
if diff <(grep -v badrange "$TMP/out") "$TMP/clean.txt" >/dev/null; then ok "other Services' rules unchanged by the bad objects"; else bad "other Services' rules changed"; fi

run --config "$CFG" --source "$EX" --dry-run --ip-family ipv6
expect "IPv6 dry run" 0 no ''
grep -q 'fd00:96::22' "$TMP/out" && ! grep -q '10.96.0.22' "$TMP/out" && ok "IPv6 dry run holds only IPv6 addresses" || bad "IPv6 dry run family mix"

run --config "$CFG" --write-config-to "$TMP/effective.yaml"
expect "--write-config-to" 0 yes ''
grep -q 'masqueradeBit: 14' "$TMP/effective.yaml" && ok "effective config has defaults" || bad "effective config lacks defaults"
run --config "$TMP/effective.yaml" --source "$EX" --dry-run
diff -q "$TMP/out" "$TMP/clean.txt" >/dev/null && ok "written config round-trips to the same rules" || bad "written config gives other rules"

run --config "$CFG" --validate --source "$TMP/cluster.yaml"
expect "--validate lists object errors and exits 2" 2 yes 'team-a/broken'

# Conflicting modes and invalid values are usage errors in every mode: exit 2, named, nothing on stdout.
run --config "$CFG" --source "$EX" --dry-run --once
expect "--dry-run with --once is refused, both named" 2 yes '--dry-run and --once cannot be combined'
run --config "$CFG" --source "$EX" --cleanup --validate
expect "--cleanup with --validate is refused" 2 yes '--cleanup and --validate cannot be combined'
run --config "$CFG" --source "$EX" --dry-run --backend nosuch
expect "--dry-run --backend nosuch: the unknown backend is an error" 2 yes "'nosuch' is invalid for '--backend"
run --config "$CFG" --source "$EX" --dry-run --rule-layout v9
expect "--rule-layout v9 is an error" 2 yes "'v9' is invalid for '--rule-layout"
run --config "$CFG" --source "$EX" --dry-run --poll-interval soon
expect "--poll-interval soon is an error even in a dry run" 2 yes '--poll-interval: expected a positive duration'
run --config "$CFG" --source "$EX" --once --random-fully perhaps
expect "--random-fully perhaps is an error" 2 yes "'perhaps' is invalid for '--random-fully"

# --random-fully auto decides as kube-proxy does, from the host's iptables version (>= 1.6.2), in a dry run too:
# the dry run prints what --once would write here.
version=$(iptables --version 2> /dev/null)
run --config "$CFG" --source "$EX" --dry-run
case "$version" in
iptables\ v1.[6-9]*|iptables\ v[2-9]*)
    grep -q -- '-j MASQUERADE --random-fully' "$TMP/out" && ok "dry run with $version: MASQUERADE --random-fully" ||
        bad "dry run with $version lacks --random-fully";;
*) bad "iptables --version printed '$version': this test expects iptables >= 1.6.2 (make deps installs it)";;
esac
run --config "$CFG" --source "$EX" --dry-run --random-fully no
grep -q -- '-j MASQUERADE$' "$TMP/out" && ! grep -q -- '--random-fully' "$TMP/out" &&
    ok "--random-fully no: plain MASQUERADE" || bad "--random-fully no still prints --random-fully"

UNIT="$TMP/kube-natd.service"
sed "s#/usr/local/bin/kube-natd#$BIN#" "$ROOT/Config/kube-natd.service" >"$UNIT"
if out=$(systemd-analyze verify "$UNIT" 2>&1); then ok "systemd-analyze verify accepts Config/kube-natd.service"; else bad "systemd unit rejected" "$out"; fi
grep -q '^Type=notify' "$UNIT" && grep -q '^WatchdogSec=' "$UNIT" && ok "unit is Type=notify with a watchdog" || bad "unit lacks Type=notify or WatchdogSec"

echo "cli: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
