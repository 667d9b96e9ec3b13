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

# A Service whose rules would break a kernel limit (a 240-byte name, which only a manifest can carry: its comments
# pass XT_MAX_COMMENT_LEN) is named with its port and the field, and left out; every other Service is programmed.
LONG=$(printf 'l%.0s' $(seq 240))
cat "$EX" >"$TMP/long.yaml"
cat >>"$TMP/long.yaml" <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: $LONG, namespace: team-a}
spec: {clusterIP: 10.96.0.97, ports: [{name: http, port: 80}]}
YAML
run --config "$CFG" --source "$TMP/long.yaml" --dry-run --ip-family ipv4
cp "$TMP/out" "$TMP/long.txt"
expect "a Service over a kernel limit is named, port and field, and the dry run exits 0" 0 no \
    "Service team-a/$LONG port http \(80/TCP\), IPv4: comment of .* is 2[0-9][0-9] bytes, the kernel takes at most 255"
case "$(tail -1 "$TMP/err")" in *"1 Services left out for kernel limits"*) ok "the summary counts it";; *) bad "summary: $(tail -1 "$TMP/err")";; esac
run --config "$CFG" --source "$EX" --dry-run --ip-family ipv4
if ! grep -q '10.96.0.97' "$TMP/long.txt" && diff -q "$TMP/long.txt" "$TMP/out" >/dev/null; then
    ok "its rules are left out, every other Service's are as without it"
else bad "the long Service's rules are printed, or others changed" "$(diff "$TMP/long.txt" "$TMP/out" | head -5)"; fi

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

# --- kube-proxy's command line -------------------------------------------------------------------------------
# Every upstream flag (cmd/kube-proxy/app/options.go and the component-base logging flags), each in every form
# pflag accepts. Table: NAME KIND VALUE [LINE]: KIND bool or value; LINE (optional) is the line --write-config-to
# must then hold, proving the value arrived. Mode and printing flags are checked apart below.
FLAGS=(
    "feature-gates value AllBeta=false"
    "kubeconfig value $TMP/no-such-kubeconfig kubeconfig: $TMP/no-such-kubeconfig"
    "master value https://10.0.0.1:6443"
    "kube-api-content-type value application/json contentType: application/json"
    "kube-api-burst value 21 burst: 21"
    "kube-api-qps value 7.5 qps: 7.5"
    "hostname-override value Node-7 hostnameOverride: node-7"
    "bind-address value 10.0.0.5 bindAddress: \"10.0.0.5\""
    "healthz-bind-address value 127.0.0.1:10266 healthzBindAddress: \"127.0.0.1:10266\""
    "metrics-bind-address value 127.0.0.1:10259 metricsBindAddress: \"127.0.0.1:10259\""
    "bind-address-hard-fail bool - bindAddressHardFail: true"
    "profiling bool - enableProfiling: true"
    "show-hidden-metrics-for-version value 1.30 showHiddenMetricsForVersion: \"1.30\""
    "proxy-mode value iptables mode: iptables"
    "iptables-masquerade-bit value 15 masqueradeBit: 15"
    "masquerade-all bool - masqueradeAll: true"
    "iptables-localhost-nodeports bool -"
    "iptables-sync-period value 45s syncPeriod: 45s"
    "iptables-min-sync-period value 2s minSyncPeriod: 2s"
    "ipvs-sync-period value 40s"
    "ipvs-min-sync-period value 3s"
    "ipvs-scheduler value rr"
    "ipvs-exclude-cidrs value 10.0.0.0/8"
    "ipvs-strict-arp bool -"
    "ipvs-tcp-timeout value 10s"
    "ipvs-tcpfin-timeout value 11s"
    "ipvs-udp-timeout value 12s"
    "detect-local-mode value NodeCIDR detectLocalMode: NodeCIDR"
    "pod-bridge-interface value cbr0 bridgeInterface: cbr0"
    "pod-interface-name-prefix value veth interfaceNamePrefix: veth"
    "cluster-cidr value 10.244.0.0/16 clusterCIDR: \"10.244.0.0/16\""
    "nodeport-addresses value 192.168.0.0/16 - \"192.168.0.0/16\""
    "oom-score-adj value -500 oomScoreAdj: -500"
    "conntrack-max-per-core value 0 maxPerCore: 0"
    "conntrack-min value 1000 min: 1000"
    "conntrack-tcp-timeout-established value 2h0m0s tcpEstablishedTimeout: 2h0m0s"
    "conntrack-tcp-timeout-close-wait value 30m0s tcpCloseWaitTimeout: 30m0s"
    "conntrack-tcp-be-liberal bool - tcpBeLiberal: true"
    "conntrack-udp-timeout value 30s udpTimeout: 30s"
    "conntrack-udp-timeout-stream value 2m0s udpStreamTimeout: 2m0s"
    "config-sync-period value 5m0s configSyncPeriod: 5m0s"
    "healthz-port value 10256"
    "metrics-port value 10249"
    "logging-format value text format: text"
    "log-flush-frequency value 7s flushFrequency: 7s"
    "v value 3 verbosity: 3"
    "vmodule value proxier=4 - filePattern: proxier"
    "log-json-split-stream bool -"
    "log-json-info-buffer-size value 0"
)
# Forms of NAME: --NAME=VALUE and --NAME VALUE; booleans: bare, =true, =false (and a bare boolean must not take
# the next argument: --dry-run after it is still a flag).
forms() { # forms NAME KIND VALUE: one form per line, arguments separated by a unit separator (\x1f)
    if [ "$2" = bool ]; then
        printf -- '--%s\n--%s=true\n--%s=false\n' "$1" "$1" "$1"
    else
        printf -- '--%s=%s\n--%s\x1f%s\n' "$1" "$3" "$1" "$3"
        [ "$1" = v ] && printf -- '-v=%s\n-v\x1f%s\n-v%s\n' "$3" "$3" "$3"
    fi
}
tested=()
for row in "${FLAGS[@]}"; do
    read -r name kind value line <<<"$row"
    tested+=("$name")
    form_fail=""
    while IFS= read -r form; do
        IFS=$'\x1f' read -r -a args <<<"$form"
        run "${args[@]}" --dry-run --source "$EX"
        rc=$(cat "$TMP/rc")
        if [ "$rc" != 0 ] || ! grep -q '^\*nat' "$TMP/out"; then form_fail+=" '${args[*]}' (exit $rc: $(head -1 "$TMP/err"))"; fi
        if [ -n "$line" ] && [ "$form" != "--$name=false" ]; then
            run "${args[@]}" --write-config-to "$TMP/flag.yaml"
            if [ "$(cat "$TMP/rc")" != 0 ] || ! grep -qF -- "$line" "$TMP/flag.yaml"; then
                form_fail+=" '${args[*]}' (--write-config-to lacks '$line')"
            fi
        fi
    done < <(forms "$name" "$kind" "$value")
    if [ -z "$form_fail" ]; then ok "--$name accepted in every form${line:+, value arrives}"; else bad "--$name:$form_fail"; fi
done
# A bare boolean never takes the next argument; --flag=false turns it off.
run --masquerade-all --dry-run --source "$EX"
expect "bare --masquerade-all before --dry-run: both flags" 0 no ''
run --masquerade-all=false --write-config-to "$TMP/f.yaml" && grep -q 'masqueradeAll: false' "$TMP/f.yaml" &&
    ok "--masquerade-all=false writes masqueradeAll: false" || bad "--masquerade-all=false did not turn it off"
# Every flag the binary's help lists as kube-proxy's is in the table above or checked below (a new flag without
# a test fails here).
"$BIN" --help >"$TMP/help" 2>&1
helped=$(sed -n '/^KUBE-PROXY FLAGS:/,$p' "$TMP/help" | grep -oE '^  (-v, )?    --[a-z-]+|^  -[a-z], --[a-z-]+' | grep -oE -- '--[a-z-]+$' | sed 's/^--//' | sort -u)
special="config write-config-to cleanup init-only version help"
missing=$(comm -23 <(echo "$helped") <(printf '%s\n' "${tested[@]}" $special | sort -u))
[ "$(echo "$helped" | wc -l)" -ge 50 ] && [ -z "$missing" ] && ok "every kube-proxy flag of --help is tested ($(echo "$helped" | wc -l))" ||
    bad "kube-proxy flags in --help without a test: ${missing:-(help listed only $(echo "$helped" | wc -l))}"
# The mode flags, without running a mode that touches the host: each refused beside --dry-run (so it was read as
# that mode), each =false accepted.
for mode in cleanup init-only; do
    run "--$mode" --dry-run --source "$EX"
    expect "--$mode (bare) is read as its mode: refused beside --dry-run" 2 yes "--dry-run and --$mode cannot be combined"
    run "--$mode=true" --dry-run --source "$EX"
    expect "--$mode=true is read as its mode too" 2 yes "--dry-run and --$mode cannot be combined"
    run "--$mode=false" --dry-run --source "$EX"
    expect "--$mode=false: a dry run" 0 no ''
done
for form in "--config=$CFG" "--config $CFG"; do
    # shellcheck disable=SC2086
    run $form --dry-run --source "$EX"
    expect "$form" 0 no ''
done
for form in "--write-config-to=$TMP/w1.yaml" "--write-config-to $TMP/w1.yaml"; do
    rm -f "$TMP/w1.yaml"
    # shellcheck disable=SC2086
    run $form
    [ "$(cat "$TMP/rc")" = 0 ] && grep -q '^kind: KubeProxyConfiguration' "$TMP/w1.yaml" && ok "$form writes the file" || bad "$form"
done
for form in --help -h --help=true; do
    run $form
    expect "$form: exit 0" 0 no ''
    grep -q -- '--masquerade-all' "$TMP/out" && grep -q -- '--dry-run' "$TMP/out" && ok "$form lists kube-proxy's and kube-natd's flags" || bad "$form output"
done
for form in --version --version=true --version=raw; do
    run $form
    expect "$form: exit 0" 0 no ''
    grep -q '^kube-natd' "$TMP/out" && ok "$form prints kube-natd's version" || bad "$form printed '$(head -1 "$TMP/out")'"
done
run --version=false --help=false --dry-run --source "$EX"
expect "--version=false --help=false: a dry run" 0 no ''
# Precedence: under --config only --hostname-override and the logging flags apply; the rest are reported once.
run --config "$CFG" --masquerade-all --masquerade-all --hostname-override Flag-Node -v=6 --write-config-to "$TMP/p.yaml"
expect "--config with flags" 0 yes 'flag --masquerade-all is ignored because --config is given'
[ "$(grep -c 'masquerade-all is ignored' "$TMP/err")" = 1 ] && ok "an ignored flag is reported once" || bad "ignored flag reported $(grep -c 'masquerade-all is ignored' "$TMP/err") times"
grep -q 'masqueradeAll: false' "$TMP/p.yaml" && grep -q 'hostnameOverride: flag-node' "$TMP/p.yaml" && grep -q 'verbosity: 6' "$TMP/p.yaml" &&
    ok "under --config: the file's masqueradeAll, the flag's hostname and -v" || bad "precedence under --config" "$(grep -E 'masqueradeAll|hostnameOverride|verbosity' "$TMP/p.yaml")"
run --ipvs-scheduler rr --ipvs-scheduler lc --profiling --dry-run --source "$EX"
expect "not-applicable flags are accepted" 0 no 'flag --ipvs-scheduler has no effect in kube-natd'
[ "$(grep -c 'ipvs-scheduler has no effect' "$TMP/err")" = 1 ] && grep -q 'flag --profiling has no effect' "$TMP/err" &&
    ok "not-applicable flags are reported once each" || bad "not-applicable reports" "$(cat "$TMP/err")"
# Errors: exit 2, the flag named, nothing on stdout.
run --feature-gates NoSuchGate=true --dry-run --source "$EX"
expect "unknown feature gate: exit 2, gate named" 2 yes '--feature-gates: featureGates.NoSuchGate: unrecognized feature gate'
run --feature-gates TopologyAwareHints=false --dry-run --source "$EX"
expect "a locked gate turned off: exit 2" 2 yes 'cannot set feature gate TopologyAwareHints to false'
run --feature-gates WatchFromStorageWithoutResourceVersion=true --dry-run --source "$EX"
expect "a gate locked off turned on: exit 2" 2 yes 'cannot set feature gate WatchFromStorageWithoutResourceVersion to true, feature is locked to false'
run --feature-gates KMSv1=true,AllAlpha=true --dry-run --source "$EX"
expect "a deprecated gate: accepted with upstream's warning" 0 no '^warning: Setting deprecated feature gate KMSv1=true\. It will be removed in a future release\.$'
run --proxy-mode ipvs --dry-run --source "$EX"
expect "--proxy-mode ipvs: exit 2, iptables only" 2 yes '--proxy-mode: mode: kube-natd implements iptables mode only, got "ipvs"'
run --proxy-mode=nftables --dry-run --source "$EX"
expect "--proxy-mode=nftables: exit 2" 2 yes 'iptables mode only, got "nftables"'
run --kube-api-qps fast --dry-run --source "$EX"
expect "--kube-api-qps fast: exit 2, flag named" 2 yes '--kube-api-qps: invalid argument "fast"'
run --masquerade-all=perhaps --dry-run --source "$EX"
expect "--masquerade-all=perhaps: exit 2" 2 yes '--masquerade-all: invalid argument "perhaps"'
run --dry-run --source "$EX" --conntrack-min
expect "--conntrack-min without a value: exit 2" 2 yes '--conntrack-min: flag needs an argument'
run --no-such-flag --dry-run --source "$EX"
expect "an unknown flag is still an error" 2 yes 'no-such-flag'

# --- printing into a reader that leaves early ----------------------------------------------------------------
# Decided: the process ends as SIGPIPE ends `iptables-save | head` (status 141), with nothing on stderr; a reader
# that happens to read everything first gives 0. Never a backtrace, "Fatal error" or status 132/134/139.
# closed_pipe ARGS...: runs kube-natd with stdout a pipe whose reader has already closed (deterministic EPIPE).
closed_pipe() {
    python3 - "$BIN" "$@" >"$TMP/cp" <<'PY'
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
p = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)
os.close(w)
print(p.returncode if p.returncode >= 0 else 128 - p.returncode)
sys.stdout.write(p.stderr.decode(errors="replace"))
PY
}
BIG="$TMP/big.yaml"
python3 - "$BIG" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write("---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d, namespace: big}\n"
                "spec: {clusterIP: 10.97.%d.%d, ports: [{port: 80, protocol: TCP}]}\n" % (i, i // 250, i % 250 + 1))
PY
# --write-config-to into standard output through a symlink of our own, not /dev/stdout: a kube-natd that replaced
# the path by rename (as one did) would then replace only this link.
ln -s /proc/self/fd/1 "$TMP/stdout"
printing_modes=("--dry-run --source $EX" "--dry-run --source $BIG" "--help" "-h" "--version" "--validate --source $EX"
    "--write-config-to $TMP/stdout" "--config $CFG --dry-run --source $EX --ip-family dual")
for m in "${printing_modes[@]}"; do
    # shellcheck disable=SC2086
    closed_pipe $m
    rc=$(head -1 "$TMP/cp"); tail -n +2 "$TMP/cp" >"$TMP/cp.err"
    case "$m" in --validate*) want="0";; *) want="141";; esac
    if [ "$rc" = "$want" ] && ! grep -qiE 'fatal error|backtrac|crashed|broken pipe' "$TMP/cp.err"; then
        ok "$m into a closed pipe: status $rc, no error text"
    else
        bad "$m into a closed pipe: status $rc (want $want)" "$(head -5 "$TMP/cp.err")"
    fi
    for reader in "head -c1" "true"; do
        # shellcheck disable=SC2086
        "$BIN" $m 2>"$TMP/pe" | $reader >/dev/null; rc=${PIPESTATUS[0]}
        if { [ "$rc" = 0 ] || [ "$rc" = 141 ]; } && ! grep -qiE 'fatal error|backtrac|crashed' "$TMP/pe"; then
            ok "$m | $reader: status $rc, no backtrace"
        else
            bad "$m | $reader: status $rc" "$(head -5 "$TMP/pe")"
        fi
    done
done

UNIT="$TMP/kube-natd.service"
sed "s#/usr/local/bin/kube-natd#$BIN#" "$ROOT/Config/kube-natd.service" >"$UNIT"
if out=$(systemd-analyze verify "$UNIT" 2>&1); then ok "systemd-analyze verify accepts Config/kube-natd.service"; else bad "systemd unit rejected" "$out"; fi
grep -q '^Type=notify' "$UNIT" && grep -q '^WatchdogSec=' "$UNIT" && ok "unit is Type=notify with a watchdog" || bad "unit lacks Type=notify or WatchdogSec"

echo "cli: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
