#!/usr/bin/env bash
# Kernel tests of `kube-natd --once`, in throwaway network namespaces only (run as root).
#
#   Tests/kernel/equivalence.sh path/to/kube-natd
#
# - Equivalence: for every golden case of both rule layouts (cases/ today's, cases-v1.23/ with --rule-layout v1.23)
#   and both families, `--once` (libiptc) in namespace A and `iptables-legacy-restore --noflush` of `--dry-run` in
#   namespace B give identical iptables-save output.
# - Every golden expectation passes `iptables-legacy-restore --test`.
# - Ownership: foreign rules in nat/filter/mangle are byte-identical after --once, a changed --once and --cleanup.
# - Idempotence and change: a second --once changes nothing; removing a Service removes its chains;
#   adding endpoints adds exactly their chains.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CASES="$ROOT/Tests/RuleCompilerTests/Golden/cases"
CASES_V123="$ROOT/Tests/RuleCompilerTests/Golden/cases-v1.23"
[ -x "$BIN" ] || { echo "equivalence: $BIN not found (swift build first)"; exit 2; }

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"
NAMESPACES=()
TMP=$(mktemp -d /tmp/knat-eq.XXXXXX)
# A private xtables lock (kube-natd's shim and the iptables binaries both read XTABLES_LOCKFILE): the lock test
# never holds the host's /run/xtables.lock.
export XTABLES_LOCKFILE="$TMP/xtables.lock"
HOLDER=""
cleanup() {
    [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# Every namespace holds kube-proxy's nfacct objects: --once creates them itself (--nfacct-counters auto), and the
# dry-run text it is compared with uses them, so restoring that text needs them too (as on a node kube-natd ran on).
newns() { local ns="knat-eq-$$-$1" o; ip netns add "$ns" || exit 2; NAMESPACES+=("$ns"); ip netns exec "$ns" ip link set lo up
    for o in ct_state_invalid_dropped_pkts localhost_nps_accepted_pkts; do ip netns exec "$ns" python3 "$HERE/nfacct-add.py" $o; done; }
delns() { ip netns del "knat-eq-$$-$1" 2>/dev/null; }
X() { local ns="knat-eq-$$-$1"; shift; timeout 60 ip netns exec "$ns" "$@"; }
ok() { PASS=$((PASS + 1)); echo "  ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -20 | sed 's/^/       /'; }
# iptables-save without comments and counters.
save() { local ns=$1 fam=$2; local tool=iptables-legacy-save; [ "$fam" = ipv6 ] && tool=ip6tables-legacy-save
    X "$ns" "$tool" | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'; }
restore() { [ "$1" = ipv6 ] && echo ip6tables-legacy-restore || echo iptables-legacy-restore; }
natd() { local ns=$1; shift; X "$ns" "$BIN" "$@"; }

echo "equivalence: --once vs iptables-legacy-restore of --dry-run, per golden case, layout and family"
for dir in "$CASES"/*/ "$CASES_V123"/*/; do
    name=$(basename "$dir")
    layout=current
    case "$dir" in "$CASES_V123"/*) layout=v1.23; name="v1.23/$name";; esac
    for fam in ipv4 ipv6; do
        newns a; newns b
        args=(--config "$dir/config.yaml" --source "$dir/cluster.yaml" --ip-family "$fam" --random-fully yes
              --rule-layout "$layout")
        if ! out=$(natd a "${args[@]}" --once --backend libiptc 2>&1); then
            bad "$name/$fam: --once failed" "$out"; delns a; delns b; continue
        fi
        if ! natd b "${args[@]}" --dry-run >"$TMP/dry.txt" 2>"$TMP/dry.err"; then
            bad "$name/$fam: --dry-run failed" "$(cat "$TMP/dry.err")"; delns a; delns b; continue
        fi
        if ! out=$(X b "$(restore $fam)" --noflush <"$TMP/dry.txt" 2>&1); then
            bad "$name/$fam: restore of the dry run failed" "$out"; delns a; delns b; continue
        fi
        if diff <(save a $fam) <(save b $fam) >"$TMP/diff.txt"; then
            ok "$name/$fam: libiptc commit == restore of dry run ($(save a $fam | grep -c '^-A') rules)"
        else
            bad "$name/$fam: iptables-save differs" "$(cat "$TMP/diff.txt")"
        fi
        # The snapshot itself (no --random-fully) must pass --test. A case without IPv6 objects has no IPv6
        # snapshot (GoldenTests checks that its IPv6 output is the empty cluster's), so there is nothing to test.
        if [ -f "$dir/expected-$fam.txt" ]; then
            if out=$(X b "$(restore $fam)" --noflush --test <"$dir/expected-$fam.txt" 2>&1); then
                ok "$name/$fam: golden passes $(restore $fam) --test"
            else
                bad "$name/$fam: golden fails --test" "$out"
            fi
        fi
        delns a; delns b
    done
done

echo "ownership: foreign rules survive --once, a changed --once and --cleanup"
EX="$ROOT/Config/example-cluster.yaml"
CFG="$ROOT/Config/kube-proxy-config.yaml"
newns own
for t in "nat PREROUTING" "nat OUTPUT" "nat POSTROUTING" "filter INPUT" "filter FORWARD" "filter OUTPUT"; do
    set -- $t
    need "foreign rule in $1 $2" X own iptables-legacy -t "$1" -A "$2" -s 198.51.100.7 -m comment --comment "foreign $2" -j ACCEPT
    need "foreign IPv6 rule in $1 $2" X own ip6tables-legacy -t "$1" -A "$2" -s 2001:db8:7::7 -m comment --comment "foreign $2" -j ACCEPT
done
need "foreign chain" X own iptables-legacy -t filter -N FOREIGN-CHAIN
need "foreign chain's rule" X own iptables-legacy -t filter -A FOREIGN-CHAIN -p udp --dport 4789 -j DROP
need "foreign mangle rule" X own iptables-legacy -t mangle -A PREROUTING -p tcp --dport 22 -j MARK --set-mark 7
foreign() { { save own ipv4; save own ipv6; } | grep -v -e 'KUBE-' -e '^COMMIT' -e '^\*'; }
foreign >"$TMP/foreign.before"
n=$(grep -c '^-A' "$TMP/foreign.before")
if [ "$n" = 14 ]; then ok "the foreign fixture holds its 14 rules"; else bad "the foreign fixture holds $n rules, not 14" "$(cat "$TMP/foreign.before")"; fi
check_foreign() {
    if diff "$TMP/foreign.before" <(foreign) >"$TMP/diff.txt"; then ok "$1"; else bad "$1" "$(cat "$TMP/diff.txt")"; fi
}
natd own --config "$CFG" --source "$EX" --once --backend libiptc --ip-family dual >/dev/null 2>&1 || bad "--once on example cluster failed"
check_foreign "foreign rules identical after --once"
first=$(X own iptables-legacy -t nat -S PREROUTING | head -2 | tail -1)
case "$first" in *KUBE-SERVICES*) ok "nat PREROUTING jump placed before the foreign rule";; *) bad "jump not first in PREROUTING: $first";; esac
natd own --config "$CFG" --source "$CASES/clusterip/cluster.yaml" --once --backend libiptc --ip-family dual >/dev/null 2>&1 \
    || bad "the changed --once (clusterip case) failed"
check_foreign "foreign rules identical after a changed --once"
natd own --cleanup >/dev/null 2>&1 || bad "--cleanup failed"
check_foreign "foreign rules identical after --cleanup"
left=$( { save own ipv4; save own ipv6; } | grep 'KUBE-' | grep -v 'KUBE-FIREWALL' || true)
if [ -z "$left" ]; then ok "--cleanup removed every KUBE-* chain and jump (KUBE-FIREWALL is kubelet's and stays)"; else bad "--cleanup left" "$left"; fi
delns own

echo "idempotence and change"
newns idem
need "first --once (idempotence)" natd idem --config "$CFG" --source "$EX" --once --backend libiptc >/dev/null 2>&1
save idem ipv4 >"$TMP/s1"
grep -q '^:KUBE-SERVICES' "$TMP/s1" || bad "the first --once wrote no KUBE-SERVICES"
need "second --once (idempotence)" natd idem --config "$CFG" --source "$EX" --once --backend libiptc >/dev/null 2>&1
if diff "$TMP/s1" <(save idem ipv4) >/dev/null; then ok "second --once with the same input leaves iptables-save identical"; else bad "second --once changed the tables"; fi
chains() { save idem ipv4 | grep '^:KUBE-' | cut -d' ' -f1 | sort; }
chains >"$TMP/c1"
# Remove the Service default/sticky (its document and its slice's document).
python3 - "$EX" "$TMP/less.yaml" "$TMP/more.yaml" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
keep = [d for d in docs if "name: sticky" not in d and "service-name: sticky" not in d]
open(sys.argv[2], "w").write("\n---\n".join(keep))
more = [d.replace("- {addresses: [10.244.1.12], conditions: {ready: true}, nodeName: node-1}",
                  "- {addresses: [10.244.1.12], conditions: {ready: true}, nodeName: node-1}\n- {addresses: [10.244.1.14], conditions: {ready: true}, nodeName: node-1}")
        for d in docs]
open(sys.argv[3], "w").write("\n---\n".join(more))
PY
[ "$?" = 0 ] || bad "the less/more manifests could not be written"
cmp -s "$EX" "$TMP/more.yaml" && bad "the more.yaml fixture is the example unchanged (the endpoint line was not found)"
need "--once without sticky" natd idem --config "$CFG" --source "$TMP/less.yaml" --once --backend libiptc >/dev/null 2>&1
chains >"$TMP/c2"
gone=$(comm -23 "$TMP/c1" "$TMP/c2" | tr '\n' ' ')
added=$(comm -13 "$TMP/c1" "$TMP/c2" | tr '\n' ' ')
# default/sticky:http has one SVC chain and three SEP chains.
if [ "$(comm -23 "$TMP/c1" "$TMP/c2" | wc -l)" = 4 ] && [ -z "$added" ] && ! save idem ipv4 | grep 'default/sticky' > /dev/null; then
    ok "removing a Service removed its 4 chains ($gone)"
else
    bad "removing a Service: gone=[$gone] added=[$added]"
fi
need "--once back to the example" natd idem --config "$CFG" --source "$EX" --once --backend libiptc >/dev/null 2>&1
chains >"$TMP/c3"
need "--once with one more endpoint" natd idem --config "$CFG" --source "$TMP/more.yaml" --once --backend libiptc >/dev/null 2>&1
chains >"$TMP/c4"
added=$(comm -13 "$TMP/c3" "$TMP/c4" | wc -l)
gone=$(comm -23 "$TMP/c3" "$TMP/c4" | wc -l)
# The new endpoint joins kube-dns's slice (2 ports): one SEP chain per service port.
if [ "$added" = 2 ] && [ "$gone" = 0 ]; then ok "adding an endpoint added exactly its 2 SEP chains"; else bad "adding an endpoint: added=$added gone=$gone"; fi
delns idem

echo "concurrency: --once waits for another holder of the xtables lock (the private $XTABLES_LOCKFILE)"
newns lock
rm -f "$TMP/held" "$TMP/release"
flock "$XTABLES_LOCKFILE" bash -c 'touch "$1"; for ((i = 0; i < 1200; i++)); do [ -e "$2" ] && exit 0; sleep 0.05; done' \
    _ "$TMP/held" "$TMP/release" &
HOLDER=$!
refused() { [ "$(grep -c 'flock(.*LOCK_NB.*= -1 EAGAIN' "$TMP/lock.trace" 2>/dev/null)" -ge 3 ]; }
if ! wait_for 100 test -e "$TMP/held"; then
    bad "the lock holder never took $XTABLES_LOCKFILE"
else
    X lock strace -f -qq -e trace=flock -o "$TMP/lock.trace" "$BIN" --config "$CFG" --source "$EX" --once --backend libiptc \
        >"$TMP/lock.out" 2>&1 &
    once_pid=$!
    # Waiting means: refused the held lock again and again, still running, nothing written yet.
    if ! wait_for 300 refused; then
        bad "--once never tried the held lock" "$(head -5 "$TMP/lock.trace")"
    elif ! kill -0 "$once_pid" 2>/dev/null; then
        bad "--once finished while the lock was held" "$(cat "$TMP/lock.out")"
    elif X lock iptables-legacy-save -t nat | grep '^:KUBE-SERVICES' > /dev/null; then
        bad "--once wrote KUBE-SERVICES while the lock was held"
    else
        ok "--once tries the held lock, waits, writes nothing meanwhile"
    fi
    touch "$TMP/release"; wait "$HOLDER"; HOLDER=""
    if wait "$once_pid" && X lock iptables-legacy -t nat -S KUBE-SERVICES | grep -q default/web; then
        ok "--once commits once the lock is released"
    else
        bad "--once failed or wrote nothing after the lock was released" "$(cat "$TMP/lock.out")"
    fi
fi
[ -n "$HOLDER" ] && { touch "$TMP/release"; wait "$HOLDER"; HOLDER=""; }
delns lock

summary equivalence
[ "$FAIL" -eq 0 ]
