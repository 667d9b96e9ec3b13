#!/usr/bin/env bash
# Kernel tests of the libnftnl backend (`--backend libnftnl`), in throwaway network namespaces only (run as root).
#
#   Tests/kernel/nftables.sh path/to/kube-natd [path/to/nft-harness]
#
# Rules are written with `kube-natd --once --backend libnftnl` and removed with `kube-natd --cleanup`; nft-harness
# (Tools/nft-harness) serves what the CLI does not show: batch sizes and reads of one backend object across
# several applies, readOwned/expectedOwned, canaries, a refused batch, the canonical dump.
#
# - Equivalence: for every golden case of both layouts and both families, `--once` in namespace A and
#   iptables-nft-restore --noflush of `--dry-run` in namespace B give the same `nft -j list ruleset`, the same
#   iptables-nft-save and the same rules expression by expression and xt blob by blob (nft-harness dump);
#   foreign iptables-nft rules and foreign native nft tables placed before stay byte-identical.
# - Forms: the 1.8.7 (all-compat) and 1.8.10 encodings load, save exactly as the 1.8.9 form, and
#   `iptables-nft -C` finds every rule written.
# - Faults injected in the shim (nft-harness --fault): ERESTART until the retry limit, lost replies (ENOBUFS),
#   dumps interrupted again and again: each a clear error or a counted retry, and the kernel as it should be.
# - Ownership, incremental updates, concurrency (ERESTART retry, 10k Services in one batch, a refused batch),
#   drift through readOwned/expectedOwned, cleanup, canaries, ensured rules, traffic and the daemon through the
#   rules, valgrind; the nfacct match against its accounting objects.
#
# SECTIONS="equivalence forms ..." runs a subset (all by default).
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
HARNESS=$(readlink -f "${2:-$(dirname "$BIN")/nft-harness}")
BENCH=$(dirname "$HARNESS")/natd-bench
CASES="$ROOT/Tests/RuleCompilerTests/Golden/cases"
CASES_V123="$ROOT/Tests/RuleCompilerTests/Golden/cases-v1.23"
NORMALIZE="$HERE/lib/nft-normalize.py"
SECTIONS=${SECTIONS:-"equivalence forms ownership incremental concurrency faults drift cleanup canaries ensured traffic scale valgrind"}
[ -x "$BIN" ] || { echo "nftables: $BIN not found (swift build first)"; exit 2; }
[ -x "$HARNESS" ] || { echo "nftables: $HARNESS not found (swift build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "nftables: needs root (network namespaces)"; exit 2; }

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh" # counters, need, skip, summary, wait_for; ok/bad/check below print details
NAMESPACES=()
TMP=$(mktemp -d /tmp/knft-test.XXXXXX)
BGPIDS=()
TOPO_UP=0
cleanup() {
    for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ "$TOPO_UP" = 1 ] && topo_teardown
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# Every namespace holds kube-proxy's nfacct objects: --once creates them itself (--nfacct-counters auto), and the
# dry-run text it is compared with uses them, so restoring that text needs them too (as on a node kube-natd ran on).
newns() { local ns="knft-$$-$1" o; ip netns add "$ns" || exit 2; NAMESPACES+=("$ns"); ip netns exec "$ns" ip link set lo up
    for o in ct_state_invalid_dropped_pkts localhost_nps_accepted_pkts; do ip netns exec "$ns" python3 "$HERE/nfacct-add.py" $o; done; }
delns() { ip netns del "knft-$$-$1" 2>/dev/null; }
X() { local ns="knft-$$-$1"; shift; timeout 300 ip netns exec "$ns" "$@"; }
ok() { PASS=$((PASS + 1)); echo "  ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -30 | sed 's/^/       /'; }
check() { local name=$1; shift; local out; if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi; }
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
same() { # same A B: identical files, or the diff
    cmp -s "$1" "$2" && return 0
    diff -u "$1" "$2" | head -40
    return 1
}
# same_genid G0 G1: two generation ids read, both numbers, equal (two failed reads are not "nothing committed")
same_genid() { [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]] || { echo "generation ids not read: '$1' '$2'"; return 1; }; [ "$1" = "$2" ]; }
tool() { [ "$1" = ipv6 ] && echo "ip6tables-nft$2" || echo "iptables-nft$2"; }
# iptables-nft-save without the date comments and counters.
save() { X "$1" "$(tool "$2" -save)" | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'; }
ruleset() { X "$1" nft -j list ruleset | python3 "$NORMALIZE"; }
# every rule of nat and filter in canonical text (all expressions, xt blobs in hex), kube-natd's tag left out
dump() { for t in filter nat mangle; do X "$1" "$HARNESS" dump --family "$2" --table $t; done | sed -E 's/\t(tag )?(stamp )?$/\t/'; }
H() { local ns=$1; shift; X "$ns" "$HARNESS" "$@"; }
natd() { local ns=$1; shift; X "$ns" "$BIN" "$@"; }
# kube-natd --once through this backend, in the given expression form (the host's is 1.8.9)
once() { local ns=$1 form=$2; shift 2; KNAT_NFT_FORM=$form X "$ns" "$BIN" --once --backend libnftnl "$@"; }
case_args() { # DIR FAMILY: the golden case's flags (layout from its directory)
    local layout=current; case "$1" in "$CASES_V123"/*) layout=v1.23;; esac
    echo --config "$1/config.yaml" --source "$1/cluster.yaml" --ip-family "$2" --random-fully yes --rule-layout $layout
}
case_name() { case "$1" in "$CASES_V123"/*) echo "v1.23/$(basename "$1")";; *) basename "$1";; esac; }

# Foreign state that must survive every apply: a native inet table and a native ip table (nft), iptables-nft
# rules in base chains kube-natd does not use, a foreign user chain.
foreign_setup() { # NS FAMILY
    X "$1" nft -f - <<'NFT'
table inet fw {
    set allowed { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }
    chain input { type filter hook input priority 10; policy accept; ip saddr @allowed tcp dport 22 counter accept; }
}
table ip other {
    chain c { udp dport 53 counter; }
}
NFT
    [ $? = 0 ] || return 1
    local ipt; ipt=$(tool "$2" "")
    local addr=198.51.100.7; [ "$2" = ipv6 ] && addr=2001:db8:7::7
    X "$1" "$ipt" -t nat -A INPUT -s "$addr" -m comment --comment "foreign nat input" -j ACCEPT \
        && X "$1" "$ipt" -t filter -N FOREIGN-CHAIN \
        && X "$1" "$ipt" -t filter -A FOREIGN-CHAIN -p udp --dport 4789 -j DROP \
        && X "$1" "$ipt" -t mangle -A PREROUTING -p tcp --dport 22 -j MARK --set-mark 7
}
foreign_state() { # NS FAMILY: everything of the foreign setup, byte for byte
    X "$1" nft list table inet fw
    X "$1" nft list table ip other
    X "$1" "$(tool "$2" -save)" | grep -v '^#' | grep -e FOREIGN -e 'foreign nat input' -e 'set-mark\|set-xmark 0x7'
}

# ------------------------------------------------------------------------------------------------------------
if want equivalence; then
echo "equivalence: --once --backend libnftnl vs iptables-nft-restore of --dry-run, per golden case, layout and family"
for dir in "$CASES"/*/ "$CASES_V123"/*/; do
    dir=${dir%/}; name=$(case_name "$dir")
    for fam in ipv4 ipv6; do
        newns a; newns b
        if ! need "$name/$fam: foreign fixture in a" foreign_setup a $fam || ! need "$name/$fam: foreign fixture in b" foreign_setup b $fam; then
            delns a; delns b; continue
        fi
        foreign_state a $fam > "$TMP/foreign.before"
        read -ra args <<< "$(case_args "$dir" $fam)"
        if ! out=$(once a 1.8.9 "${args[@]}" 2>&1); then
            bad "$name/$fam: --once failed" "$out"; delns a; delns b; continue
        fi
        if ! natd b "${args[@]}" --dry-run > "$TMP/dry.txt" 2> "$TMP/dry.err"; then
            bad "$name/$fam: --dry-run failed" "$(cat "$TMP/dry.err")"; delns a; delns b; continue
        fi
        if ! out=$(X b "$(tool $fam -restore)" --noflush < "$TMP/dry.txt" 2>&1); then
            bad "$name/$fam: iptables-nft-restore of the dry run failed" "$out"; delns a; delns b; continue
        fi
        n=$(save a $fam | grep -c '^-A')
        save a $fam > "$TMP/sa"; save b $fam > "$TMP/sb"
        check "$name/$fam: iptables-nft-save identical ($n rules)" same "$TMP/sa" "$TMP/sb"
        ruleset a > "$TMP/ja"; ruleset b > "$TMP/jb"
        check "$name/$fam: nft -j list ruleset identical ($(grep -c '^rule' "$TMP/ja") nft rules)" same "$TMP/ja" "$TMP/jb"
        dump a $fam > "$TMP/da"; dump b $fam > "$TMP/db"
        check "$name/$fam: every expression and xt blob identical" same "$TMP/da" "$TMP/db"
        foreign_state a $fam > "$TMP/foreign.after"
        check "$name/$fam: foreign nft tables and iptables rules byte-identical" same "$TMP/foreign.before" "$TMP/foreign.after"
        delns a; delns b
    done
done
# the nfacct match (--nfacct-counters yes) needs its accounting objects, in both namespaces (newns makes them)
for fam in ipv4 ipv6; do
    newns a; newns b
    for ns in a b; do for o in ct_state_invalid_dropped_pkts localhost_nps_accepted_pkts; do
        need "nfacct/$fam: accounting object $o in $ns (made by newns)" X $ns python3 "$HERE/lib/nfacct-get.py" $o > /dev/null; done; done
    args=(--config "$ROOT/Config/kube-proxy-config.yaml" --source "$ROOT/Config/example-cluster.yaml" --ip-family $fam --nfacct-counters yes)
    once a 1.8.9 "${args[@]}" > "$TMP/nfacct.out" 2>&1 || bad "nfacct/$fam: --once failed" "$(cat "$TMP/nfacct.out")"
    need "nfacct/$fam: --dry-run" bash -c "ip netns exec knft-$$-b '$BIN' ${args[*]} --dry-run > '$TMP/nfacct.dry'"
    need "nfacct/$fam: iptables-nft-restore of the dry run" X b "$(tool $fam -restore)" --noflush < "$TMP/nfacct.dry"
    save a $fam > "$TMP/sa"; save b $fam > "$TMP/sb"; dump a $fam > "$TMP/da"; dump b $fam > "$TMP/db"
    check "nfacct/$fam: iptables-nft-save identical ($(grep -c -- '-m nfacct' "$TMP/sa") nfacct rules)" \
        bash -c "grep -q -- '-m nfacct' '$TMP/sa' && cmp -s '$TMP/sa' '$TMP/sb'"
    check "nfacct/$fam: every expression and xt blob identical" same "$TMP/da" "$TMP/db"
    delns a; delns b
done
fi

# iptables-nft -C for every rule iptables-nft-save prints: iptables finds each as its own.
check_every_rule() { # NS FAMILY
    local table="" n=0 failed=0 line
    local ipt; ipt=$(tool "$2" "")
    while IFS= read -r line; do
        case "$line" in
            \**) table=${line#\*} ;;
            -A\ *)
                n=$((n + 1))
                # kube-proxy's text has no --mask (libxt_recent then masks with 16 bytes of ones); save prints
                # the mask, which -C would parse into a different blob
                line=$(echo "$line" | sed -E 's/ --mask [^ ]+//')
                if ! eval "X $1 $ipt -t $table -C ${line#-A }" 2>/dev/null; then
                    echo "not found by -C: -t $table $line"; failed=$((failed + 1))
                fi ;;
        esac
    done < <(X "$1" "$(tool "$2" -save)")
    [ "$n" -gt 0 ] || { echo "no rules"; return 1; }
    [ "$failed" = 0 ]
}

if want forms; then
echo "forms: the 1.8.7 (all-compat) and 1.8.10 encodings save as the 1.8.9 form does and pass iptables-nft -C"
for dir in "$CASES"/*/ "$CASES_V123"/*/; do
    dir=${dir%/}; name=$(case_name "$dir")
    for fam in ipv4 ipv6; do
        read -ra args <<< "$(case_args "$dir" $fam)"
        newns b
        need "$name/$fam: --dry-run" natd b "${args[@]}" --dry-run > "$TMP/dry.txt" 2>/dev/null
        need "$name/$fam: iptables-nft-restore of the dry run (the 1.8.9 reference)" X b "$(tool $fam -restore)" --noflush < "$TMP/dry.txt"
        save b $fam > "$TMP/sb"
        dump b $fam > "$TMP/db"
        for form in 1.8.7 1.8.9 1.8.10; do
            newns a
            if ! out=$(once a $form "${args[@]}" 2>&1); then
                bad "$name/$fam/$form: the kernel refused the form" "$out"; delns a; continue
            fi
            save a $fam > "$TMP/sa"
            check "$name/$fam/$form: iptables-nft-save identical to the 1.8.9 form restored" same "$TMP/sa" "$TMP/sb"
            check "$name/$fam/$form: iptables-nft -C finds every rule" check_every_rule a $fam
            dump a $fam > "$TMP/da"
            # and the expressions really are that release's
            case $form in
                1.8.7) marker_ok() { grep -q 'match name=mark rev=1' "$TMP/da" && ! grep -q 'meta dreg=1 key=3\]' "$TMP/da" \
                           && ! grep -q 'payload dreg=1 base=2' "$TMP/da"; } ;;
                1.8.9) marker_ok() { same "$TMP/da" "$TMP/db"; } ;;
                1.8.10) marker_ok() { # no protocol before an address; IPv4's protocol from the header
                           ! grep -qE 'key=16\].*base=1 offset=(8|12|16|24) ' "$TMP/da" || return 1
                           [ $fam = ipv6 ] || ! grep -q 'meta dreg=1 key=16' "$TMP/da"; } ;;
            esac
            check "$name/$fam/$form: written in the $form expressions, not the 1.8.9 ones" marker_ok
            delns a
        done
        delns b
    done
done
fi

# --- synthetic clusters: v1, v2 (one endpoint of one Service changed), v3 (one Service removed) ------------
GEN="$TMP/gen"
generate() { # SERVICES: writes $GEN/v1 $GEN/v2 $GEN/v3 and $GEN/kube-proxy-config.yaml
    rm -rf "$GEN"; mkdir -p "$GEN"
    "$BENCH" generate "$1" "$GEN/v1" "$GEN/v2" > /dev/null || return 1
    mkdir -p "$GEN/v3"
    python3 - "$GEN/v2/cluster.json" "$GEN/v3/cluster.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["items"] = [i for i in d["items"] if i["metadata"]["name"] not in ("svc7", "svc7-abcde")]
json.dump(d, open(sys.argv[2], "w"))
PY
}
GCFG() { echo "$GEN/kube-proxy-config.yaml"; }
field() { grep -o "$1=[^ ]*" | head -1 | cut -d= -f2; } # field NAME < report
nth_apply() { grep "^apply $1 " ; }                          # the report line of apply N
# `nft -a` listing: "chain<TAB>rule text<TAB>handle", the rule's handle apart
handles() { X "$1" nft -a list table ip nat 2>/dev/null | awk '
    /^\tchain / { chain = $2 }
    /# handle [0-9]+$/ && chain != "" { h = $NF; sub(/ # handle [0-9]+$/, ""); gsub(/^\t+/, ""); print chain "\t" $0 "\t" h }'; }
chains_of() { save "$1" "$2" | grep '^:KUBE-' | cut -d' ' -f1 | sort; }
reference() { # NS FAMILY SOURCE CONFIG: iptables-nft-restore of the dry run into a fresh namespace NS
    need "reference: --dry-run of $3" natd "$1" --config "$4" --source "$3" --ip-family "$2" --dry-run > "$TMP/ref.txt" 2>/dev/null \
        && need "reference: iptables-nft-restore of the dry run of $3" X "$1" "$(tool "$2" -restore)" --noflush < "$TMP/ref.txt"
}

if want ownership; then
echo "ownership: foreign rules in the base chains kube-natd uses, policies, -C/-D on its rules"
EX="$ROOT/Config/example-cluster.yaml"
CFG="$ROOT/Config/kube-proxy-config.yaml"
newns own
need "ownership: foreign fixture" foreign_setup own ipv4
for t in "nat PREROUTING" "nat OUTPUT" "nat POSTROUTING" "filter INPUT" "filter FORWARD" "filter OUTPUT"; do
    set -- $t
    need "ownership: foreign rule in $1 $2" X own iptables-nft -t "$1" -A "$2" -s 198.51.100.8 -m comment --comment "foreign $2" -j ACCEPT
    need "ownership: foreign IPv6 rule in $1 $2" X own ip6tables-nft -t "$1" -A "$2" -s 2001:db8:8::8 -m comment --comment "foreign $2" -j ACCEPT
done
need "ownership: FORWARD policy DROP" X own iptables-nft -P FORWARD DROP
fstate() { foreign_state own ipv4; { save own ipv4; save own ipv6; } | grep -e 'foreign ' -e '^:FORWARD'; }
fstate > "$TMP/f0"
fixture_there() { [ "$(grep -c -- '^-A .*comment "foreign ' "$TMP/f0")" -ge 12 ] && grep -q '^:FORWARD DROP' "$TMP/f0" || { cat "$TMP/f0"; return 1; }; }
check "the foreign fixture is there (12 base-chain rules, FORWARD DROP)" fixture_there
check "--once (dual) over foreign rules" once own 1.8.9 --config "$CFG" --source "$EX" --ip-family dual
fstate > "$TMP/f1"
check "foreign rules, tables and the FORWARD DROP policy byte-identical after apply" same "$TMP/f0" "$TMP/f1"
jumps_on_top() { # every base chain: kube-natd's jumps first, then the foreign rule
    local fam got
    for fam in ipv4 ipv6; do
        for t in "nat PREROUTING" "nat OUTPUT" "nat POSTROUTING" "filter INPUT" "filter FORWARD" "filter OUTPUT"; do
            set -- $t
            got=$(X own "$(tool $fam "")" -t "$1" -S "$2" | grep '^-A' | awk '
                /comment "foreign / { printf "foreign "; next }
                / -j KUBE-/ { sub(/.* -j /, ""); printf "%s ", $1; next }
                { printf "other " }')
            [[ "$got" =~ ^(KUBE-[A-Z-]+\ )+foreign\ $ ]] || { echo "$fam $1 $2: $got"; return 1; }
        done
    done
}
check "kube-natd's jumps first in every base chain, foreign rules after them" jumps_on_top
check "FORWARD policy still DROP" bash -c "ip netns exec knft-$$-own iptables-nft -S FORWARD | grep -qx -- '-P FORWARD DROP'"
check "--once with another source (clusterip)" once own 1.8.9 --config "$CFG" --source "$CASES/clusterip/cluster.yaml" --ip-family dual
fstate > "$TMP/f2"
check "foreign rules byte-identical after a changed apply" same "$TMP/f0" "$TMP/f2"
# A foreign rule inserted above kube-natd's jump: the jump goes back to the top, the foreign rule stays below.
need "ownership: a foreign rule above the jump" X own iptables-nft -t nat -I PREROUTING 1 -s 192.0.2.55 -j RETURN
# A second copy of kube-natd's own jump lower down: upstream keeps exactly one.
need "ownership: a duplicate jump" X own iptables-nft -t nat -A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
H own apply --config "$CFG" --source "$CASES/clusterip/cluster.yaml" --ip-family dual > "$TMP/own.out" 2>&1
pre_fixed() {
    local pre; pre=$(X own iptables-nft -t nat -S PREROUTING | grep '^-A')
    echo "$pre" | sed -n 1p | grep -q -- '-j KUBE-SERVICES' && echo "$pre" | sed -n 2p | grep -q -- '-s 192.0.2.55/32 -j RETURN' \
        || { echo "$pre"; return 1; }
    [ "$(X own iptables-nft -t nat -S OUTPUT | grep -c -- '-j KUBE-SERVICES')" = 1 ] || { X own iptables-nft -t nat -S OUTPUT; return 1; }
    grep -q 'jumpsInserted=1 rulesDeleted=2' "$TMP/own.out" || { cat "$TMP/own.out"; return 1; }
}
check "a misplaced jump is moved back on top (1 insert), a duplicate removed (2 deletes), nothing else" pre_fixed
X own iptables-nft -t nat -D PREROUTING -s 192.0.2.55 -j RETURN
line=$(save own ipv4 | grep -m1 -- '^-A KUBE-SERVICES .*-j KUBE-SVC-')
delete_by_spec() {
    eval "X own iptables-nft -t nat -D ${line#-A }" || return 1
    save own ipv4 | grep -qxF -- "$line" && { echo "still there: $line"; return 1; }
    once own 1.8.9 --config "$CFG" --source "$CASES/clusterip/cluster.yaml" --ip-family dual > /dev/null 2>&1 || return 1
    save own ipv4 | grep -qxF -- "$line"
}
check "iptables-nft -D deletes a kube-natd rule by its spec; the next apply puts it back" delete_by_spec
both_checked() { check_every_rule own ipv4 && check_every_rule own ipv6; }
check "iptables-nft -C finds every rule kube-natd wrote (1.8.9 form, both families)" both_checked
delns own
fi

if want incremental; then
echo "incremental: only what differs is sent; untouched chains keep their rules' handles"
generate 200 || bad "natd-bench generate failed"
newns inc
H inc apply --config "$(GCFG)" --source "$GEN/v1" > "$TMP/inc1.out" 2>&1 || bad "first apply failed" "$(cat "$TMP/inc1.out")"
handles inc > "$TMP/h1"
chains_of inc ipv4 > "$TMP/c1"
# A new process: nothing known, the kernel is read (stateless, as --once).
H inc apply --config "$(GCFG)" --source "$GEN/v2" > "$TMP/inc2.out" 2>&1 || bad "one-endpoint apply failed" "$(cat "$TMP/inc2.out")"
m=$(field messages < "$TMP/inc2.out")
check "one-endpoint change (stateless): $m messages in 1 batch (bound: 10)" bash -c "[ '$m' -ge 1 ] && [ '$m' -le 10 ] && grep -q 'batches=1' '$TMP/inc2.out'"
handles inc > "$TMP/h2"
untouched_keep_handles() {
    # chains whose rules (text) are the same before and after must have the same handles, rule for rule
    python3 - "$TMP/h1" "$TMP/h2" <<'PY'
import sys, collections
def load(p):
    d = collections.OrderedDict()
    for line in open(p):
        chain, text, h = line.rstrip("\n").split("\t")
        d.setdefault(chain, []).append((text, h))
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
same = [c for c in a if c in b and [t for t, _ in a[c]] == [t for t, _ in b[c]]]
moved = [c for c in same if [h for _, h in a[c]] != [h for _, h in b[c]]]
changed = [c for c in a if c not in same] + [c for c in b if c not in a]
print(f"{len(same)} chains untouched, {len(changed)} changed: {' '.join(changed)}")
if moved: print("handles changed in untouched chains:", moved); sys.exit(1)
if len(changed) > 3 or len(same) < 100: sys.exit(1)
PY
}
check "every rule of every untouched chain keeps its kernel handle" untouched_keep_handles
newns ref; reference ref ipv4 "$GEN/v2" "$(GCFG)"
save inc ipv4 > "$TMP/s2"; save ref ipv4 > "$TMP/r2"
check "after the one-endpoint change: iptables-nft-save equals the restore of the new dry run" same "$TMP/s2" "$TMP/r2"
delns ref
H inc apply --config "$(GCFG)" --source "$GEN/v2" > "$TMP/inc3.out" 2>&1
check "second identical apply (new process): the stamp is current, nothing read, no batch" \
    grep -q 'readKernel=false stampCurrent=true: messages=0 batches=0' "$TMP/inc3.out"
H inc apply --config "$(GCFG)" --source "$GEN/v2" --read > "$TMP/inc3r.out" 2>&1
check "second identical apply (new process, every rule read): no batch" grep -q 'readKernel=true stampCurrent=false: messages=0 batches=0' "$TMP/inc3r.out"
X inc nft add table inet other-writer
H inc apply --config "$(GCFG)" --source "$GEN/v2" > "$TMP/inc3o.out" 2>&1
check "after another writer's commit the stamp is stale: the kernel is read, still no batch" grep -q 'readKernel=true stampCurrent=false: messages=0 batches=0' "$TMP/inc3o.out"
natd inc --config "$(GCFG)" --source "$GEN/v2" --dry-run 2>/dev/null | grep '^:KUBE-' | cut -d' ' -f1 | sort > "$TMP/d2"
natd inc --config "$(GCFG)" --source "$GEN/v3" --dry-run 2>/dev/null | grep '^:KUBE-' | cut -d' ' -f1 | sort > "$TMP/d3"
chains_of inc ipv4 > "$TMP/k2"
H inc apply --config "$(GCFG)" --source "$GEN/v3" > "$TMP/inc4.out" 2>&1
chains_of inc ipv4 > "$TMP/k3"
removed_exactly() {
    local want got
    want=$(comm -23 "$TMP/d2" "$TMP/d3" | tr '\n' ' '); got=$(comm -23 "$TMP/k2" "$TMP/k3" | tr '\n' ' ')
    echo "removed: $got"
    [ -n "$want" ] && [ "$want" = "$got" ] && [ -z "$(comm -13 "$TMP/k2" "$TMP/k3")" ]
}
check "removing a Service removes exactly its chains" removed_exactly
delns inc

# The long-lived object (the daemon's): after its own commit the generation id is its own, no dump needed.
newns live
H live apply --config "$(GCFG)" --source "$GEN/v1" --then "$GEN/v2" --then same --then drift --then drift --then "$GEN/v1" > "$TMP/live.out" 2>&1 \
    || bad "long-lived applies failed" "$(cat "$TMP/live.out")"
m2=$(nth_apply 2 < "$TMP/live.out" | field messages)
check "long-lived: one-endpoint change without a dump, $m2 messages (bound: 10)" bash -c \
    "grep '^apply 2 ' '$TMP/live.out' | grep -q 'readKernel=false' && [ '$m2' -ge 1 ] && [ '$m2' -le 10 ]"
check "long-lived: identical apply sends nothing and reads nothing" bash -c \
    "grep '^apply 3 ' '$TMP/live.out' | grep -q 'readKernel=false.*messages=0 batches=0'"
# the first read-back dumps only mangle (no apply wrote it); the second answers from the model
check "long-lived: readOwned answers from the model (no dump) and equals expectedOwned" bash -c \
    "[ \$(grep -c '^no drift' '$TMP/live.out') = 2 ] && grep '^no drift' '$TMP/live.out' | tail -1 | grep -q 'readKernel=false'"
m4=$(nth_apply 4 < "$TMP/live.out" | field messages)
check "long-lived: changing back is $m4 messages (bound: 10)" bash -c "[ '$m4' -ge 1 ] && [ '$m4' -le 10 ]"
newns ref; reference ref ipv4 "$GEN/v1" "$(GCFG)"
save live ipv4 > "$TMP/s4"; save ref ipv4 > "$TMP/r4"
check "long-lived: the result equals the restore of the dry run" same "$TMP/s4" "$TMP/r4"
delns ref; delns live

# As the daemon: one compiler and one evolving state, each apply told the compiler's change, so only the chains
# it names are encoded again (steps 2, 3 and 6 are one-endpoint changes; 4 and 5 remove and re-add a Service,
# which the compiler compiles fully). After the series the kernel holds what a new process's --once writes.
newns evo
H evo apply --evolve --form 1.8.9 --config "$(GCFG)" --source "$GEN/v1" --then "$GEN/v2" --then "$GEN/v1" \
    --then "$GEN/v3" --then "$GEN/v1" --then "$GEN/v2" > "$TMP/evo.out" 2>&1 || bad "evolving applies failed" "$(cat "$TMP/evo.out")"
encoded_only_changes() {
    python3 - "$TMP/evo.out" <<'PY'
import re, sys
steps = [tuple(map(int, m)) for m in re.findall(r"chains encoded=(\d+) reused=(\d+)", open(sys.argv[1]).read())]
print("encoded/reused per apply:", steps)
if len(steps) != 6: sys.exit(1)
total = steps[0][0]
ok = steps[0][1] == 0 and total > 500
for i in (1, 2, 5):  # one endpoint: its SVC and SEP chains (and at most a shared chain) again, the rest reused
    ok = ok and 1 <= steps[i][0] <= 6 and steps[i][0] + steps[i][1] >= total - 10
for i in (3, 4):     # a Service removed or added: a full compile, everything encoded
    ok = ok and steps[i][1] == 0
sys.exit(0 if ok else 1)
PY
}
check "evolving: one-endpoint changes encode only the chains the compiler names" encoded_only_changes
planned_only_changes() {
    python3 - "$TMP/evo.out" <<'PY'
import re, sys
steps = [(int(a), int(b), c == "true")
         for a, b, c in re.findall(r"chains indexed=(\d+) planned=(\d+) incremental=(true|false)", open(sys.argv[1]).read())]
print("indexed/planned/incremental per apply:", steps)
if len(steps) != 6: sys.exit(1)
total = steps[0][0]
ok = not steps[0][2] and total > 500 and steps[0][1] == total
for i in (1, 2, 5):  # one endpoint: the shim parses, hashes and compares only the chains the change names
    ok = ok and steps[i][2] and 1 <= steps[i][0] <= 6 and 1 <= steps[i][1] <= 6
for i in (3, 4):     # a full compile: every chain
    ok = ok and not steps[i][2] and steps[i][0] >= total - 10 and steps[i][1] >= total - 10
sys.exit(0 if ok else 1)
PY
}
check "evolving: one-endpoint changes are parsed, hashed and planned only where they changed" planned_only_changes
newns fresh
once fresh 1.8.9 --config "$(GCFG)" --source "$GEN/v2" --ip-family ipv4 > /dev/null 2>&1 || bad "--once of v2 failed"
dump evo ipv4 > "$TMP/evo.dump"; dump fresh ipv4 > "$TMP/fresh.dump"
same_nonempty() { grep -q 'KUBE-SEP-' "$2" || { echo "no service chains in $2"; return 1; }; same "$1" "$2"; }
check "evolving: after the series every rule equals a new process's --once, expression by expression" \
    same_nonempty "$TMP/evo.dump" "$TMP/fresh.dump"
save evo ipv4 > "$TMP/evo.save"; save fresh ipv4 > "$TMP/fresh.save"
check "evolving: iptables-nft-save equals a new process's --once" same_nonempty "$TMP/evo.save" "$TMP/fresh.save"
delns fresh; delns evo

# The daemon's full sync (start, drift, periodic) hands the compiler's change marked `asFullSync`: only the chains
# the compiler names are encoded again, but the shim compares every chain with the kernel. Steps: 1 v1, 2 v2 (one
# endpoint, partial), 3 full:v1 (one endpoint back, full), 4 full:same (nothing changed), then another writer
# flushes nat KUBE-SERVICES (a chain no change names), 5 full:v2: read, repaired, equal to a new process's --once.
newns fs
rm -f "$TMP/fs.go"
H fs apply --evolve --form 1.8.9 --config "$(GCFG)" --source "$GEN/v1" --then "$GEN/v2" --then "full:$GEN/v1" \
    --then full:same --then "wait:$TMP/fs.go" --then "full:$GEN/v2" > "$TMP/fs.out" 2>&1 &
FSPID=$!; BGPIDS+=("$FSPID")
if wait_for 1200 bash -c "[ \$(grep -c 'chains indexed=' '$TMP/fs.out') -ge 4 ]"; then
    X fs nft flush chain ip nat KUBE-SERVICES || bad "full sync: nft flush chain failed"
else
    bad "full sync: the first four applies did not finish" "$(cat "$TMP/fs.out")"
fi
touch "$TMP/fs.go"
wait "$FSPID" || bad "full-sync applies failed" "$(cat "$TMP/fs.out")"
full_sync_steps() {
    python3 - "$TMP/fs.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
applies = re.findall(r"^apply \d+ .*readKernel=(true|false).*messages=(\d+)", text, re.M)
enc = [tuple(map(int, m)) for m in re.findall(r"chains encoded=(\d+) reused=(\d+)", text)]
plan = [(int(a), int(b), c == "true")
        for a, b, c in re.findall(r"chains indexed=(\d+) planned=(\d+) incremental=(true|false)", text)]
print("readKernel/messages:", applies, "encoded/reused:", enc, "indexed/planned/incremental:", plan)
if len(applies) != 5 or len(enc) != 5 or len(plan) != 5: sys.exit(1)
total = enc[0][0]
ok = total > 500
ok = ok and plan[1][2] and plan[1][1] <= 6  # partial: planned from the change
# full sync of a one-endpoint change: encoded and indexed from the change, every chain compared, nothing read
ok = ok and 1 <= enc[2][0] <= 6 and enc[2][0] + enc[2][1] >= total - 10
ok = ok and 1 <= plan[2][0] <= 6 and not plan[2][2] and plan[2][1] >= total - 10
ok = ok and applies[2][0] == "false" and 1 <= int(applies[2][1]) <= 10
# full sync, nothing changed: nothing encoded again, nothing sent
ok = ok and enc[3][0] == 0 and applies[3][1] == "0"
# full sync after another writer: the kernel read, the flushed chain written back, still encoded from the change
ok = ok and applies[4][0] == "true" and int(applies[4][1]) >= 2 and not plan[4][2]
ok = ok and 1 <= enc[4][0] <= 6
sys.exit(0 if ok else 1)
PY
}
check "full sync: encoded from the change, compared whole, a foreign flush read and repaired" full_sync_steps
newns fresh
once fresh 1.8.9 --config "$(GCFG)" --source "$GEN/v2" --ip-family ipv4 > /dev/null 2>&1 || bad "--once of v2 failed"
dump fs ipv4 > "$TMP/fs.dump"; dump fresh ipv4 > "$TMP/fresh.dump"
check "full sync: after the repair every rule equals a new process's --once" same_nonempty "$TMP/fs.dump" "$TMP/fresh.dump"
delns fresh; delns fs
fi

if want concurrency; then
echo "concurrency: another writer between decision and batch; a refused batch changes nothing"
[ -d "$GEN/v1" ] || generate 200
newns race
# gated_apply NAME ARGS...: nft-harness apply in the background, held by the test gate between the decision and
# the send of its first attempt; returns once it is held there (the racer then commits, and `open_gate` lets it go).
gated_apply() {
    local name=$1; shift
    rm -f "$TMP/$name.gate" "$TMP/$name.gate.ready"
    KNAT_TEST_NFT_GATE_BEFORE_SEND="$TMP/$name.gate" H race apply "$@" > "$TMP/$name.out" 2>&1 &
    GATED=$!; BGPIDS+=("$GATED")
    wait_for 600 test -e "$TMP/$name.gate.ready" || { bad "$name: the apply never reached its gate before the send"; return 1; }
}
open_gate() { touch "$TMP/$1.gate"; wait "$GATED"; }
# A foreign commit lands between the decision and the send: the batch comes back ERESTART and is decided again.
gated_apply race --config "$(GCFG)" --source "$GEN/v1" \
    && need "the racing writer's rule" X race iptables-nft -t filter -A INPUT -s 192.0.2.99 -m comment --comment "racing writer" -j ACCEPT
open_gate race; rc=$?
retried() { # OUT: exit 0 after at least 2 attempts
    local a; a=$(field attempts < "$1"); echo "rc=$rc attempts=${a:-none}"
    [ "$rc" = 0 ] && [ -n "$a" ] && [ "$a" -ge 2 ] || { cat "$1"; return 1; }
}
check "ERESTART from a racing commit: re-read, re-decided, retried" retried "$TMP/race.out"
newns ref; reference ref ipv4 "$GEN/v1" "$(GCFG)"
need "the racing writer's rule in the reference" X ref iptables-nft -t filter -A INPUT -s 192.0.2.99 -m comment --comment "racing writer" -j ACCEPT
save race ipv4 > "$TMP/s"; save ref ipv4 > "$TMP/r"
check "after the retry: the kube rules and the racing writer's rule are all there" same "$TMP/s" "$TMP/r"
# The racer rewrites one of kube-natd's chains in the window: the retry decides again from the new state.
gated_apply race2 --config "$(GCFG)" --source "$GEN/v2" \
    && need "the racer flushes KUBE-SERVICES" X race nft flush chain ip nat KUBE-SERVICES
open_gate race2; rc=$?
check "a racer flushing KUBE-SERVICES in the window forces a retry" retried "$TMP/race2.out"
delns ref; newns ref; reference ref ipv4 "$GEN/v2" "$(GCFG)"
need "the racing writer's rule in the reference" X ref iptables-nft -t filter -A INPUT -s 192.0.2.99 -m comment --comment "racing writer" -j ACCEPT
save race ipv4 > "$TMP/s"; save ref ipv4 > "$TMP/r"
check "... and the retry repaired KUBE-SERVICES: the result equals the reference" same "$TMP/s" "$TMP/r"
delns ref
# A batch the kernel refuses (a jump to a chain that does not exist): nothing of it is applied.
X race nft list ruleset 2>/dev/null > "$TMP/before.nft"; save race ipv4 > "$TMP/before.save"; g0=$(H race genid)
if H race apply --config "$(GCFG)" --source "$GEN/v1" --inject-bad-rule > "$TMP/bad.out" 2>&1; then
    bad "a batch with a rule the kernel refuses succeeded"
else
    check "the refused batch's error names family, table, chain and rule" grep -qE 'ipv4 nat: chain KUBE-SERVICES rule [0-9]+ \(NEWRULE\): No such file or directory' "$TMP/bad.out"
fi
X race nft list ruleset 2>/dev/null > "$TMP/after.nft"; save race ipv4 > "$TMP/after.save"; g1=$(H race genid)
check "after the refused batch: nft list ruleset byte-identical" same "$TMP/before.nft" "$TMP/after.nft"
check "after the refused batch: nothing committed (generation $g0 -> $g1)" same_genid "$g0" "$g1"
delns race
fi

if want faults; then
echo "faults: the shim's error paths, through its test-only fault hook (nft-harness --fault)"
[ -d "$GEN/v1" ] || generate 200
FA=(--config "$(GCFG)" --source "$GEN/v1")
newns fref; reference fref ipv4 "$GEN/v1" "$(GCFG)"; save fref ipv4 > "$TMP/fref"
newns f
# ERESTART on every attempt: the apply gives up after its 5 attempts with a clear error, and nothing is applied.
H f apply "${FA[@]}" --fault batch-erestart:1:1000 > "$TMP/f-giveup.out" 2>&1; rc=$?
gave_up() {
    [ "$rc" != 0 ] || { echo "the apply succeeded"; return 1; }
    grep -q 'gave up after 5 attempts' "$TMP/f-giveup.out" && grep -q 'faults: batch-erestart=5$' "$TMP/f-giveup.out" \
        && ! save f ipv4 | grep '^:KUBE-SERVICES' > /dev/null && return 0
    cat "$TMP/f-giveup.out"; return 1
}
check "ERESTART on every attempt: gives up after 5 attempts, says so, applies nothing" gave_up
# ERESTART twice: the third attempt commits; the result is the reference's.
H f apply "${FA[@]}" --fault batch-erestart:1:2 > "$TMP/f-retry.out" 2>&1; rc=$?
three_attempts() {
    [ "$rc" = 0 ] && [ "$(field attempts < "$TMP/f-retry.out")" = 3 ] && grep -q 'faults: batch-erestart=2$' "$TMP/f-retry.out" \
        && return 0
    cat "$TMP/f-retry.out"; return 1
}
check "ERESTART twice: retried, committed at attempt 3" three_attempts
save f ipv4 > "$TMP/f-now"
check "... and the kernel holds exactly the reference" same "$TMP/f-now" "$TMP/fref"
delns f; newns f
# A lost reply (ENOBUFS) after a batch the kernel did commit: a clear error, and the model is forgotten: the next
# apply of the same object does not trust it. It finds nothing to send, from the stamp the lost batch wrote, or
# (--read: no stamp shortcut) from a read of the kernel.
lost_reply() { # OUT READ-WANTED
    [ "$rc" = 1 ] || { echo "exit $rc, want 1"; cat "$1"; return 1; }
    grep -q "^apply 1 failed: .*reading the batch's replies: No buffer space available" "$1" \
        && grep '^apply 2 ' "$1" | grep -E "$2" | grep -q 'messages=0 batches=0' \
        && grep -q 'faults: batch-enobufs=1$' "$1" && return 0
    cat "$1"; return 1
}
H f apply "${FA[@]}" --fault batch-enobufs --keep-going --then same > "$TMP/f-lost.out" 2>&1; rc=$?
check "lost replies (ENOBUFS): a clear error; the model is not trusted (the stamp says current), nothing resent" \
    lost_reply "$TMP/f-lost.out" 'readKernel=true|stampCurrent=true'
delns f; newns f
H f apply "${FA[@]}" --read --fault batch-enobufs --keep-going --then same > "$TMP/f-lost-read.out" 2>&1; rc=$?
check "lost replies (ENOBUFS), --read: a clear error; the kernel is read again, nothing resent" \
    lost_reply "$TMP/f-lost-read.out" 'readKernel=true'
save f ipv4 > "$TMP/f-now"
check "... and the kernel holds exactly the reference" same "$TMP/f-now" "$TMP/fref"
# Dumps interrupted again and again (a busy writer): the read gives up after 8 reads with a clear error ...
H f apply "${FA[@]}" --read --fault dump-intr:1:100000 > "$TMP/f-intr.out" 2>&1; rc=$?
intr_gave_up() {
    [ "$rc" != 0 ] && grep -q 'the ruleset kept changing while it was read (8 reads)' "$TMP/f-intr.out" \
        && grep -qE 'faults: dump-intr=[0-9]+$' "$TMP/f-intr.out" && return 0
    echo "exit $rc"; cat "$TMP/f-intr.out"; return 1
}
check "dumps interrupted on every read: gives up after 8 reads with a clear error" intr_gave_up
# ... and a few interrupted dumps are read again until one is whole.
H f apply "${FA[@]}" --read --fault dump-intr:1:3 > "$TMP/f-intr3.out" 2>&1; rc=$?
intr_retried() {
    [ "$rc" = 0 ] && grep -q 'faults: dump-intr=3$' "$TMP/f-intr3.out" \
        && grep '^apply 1 ' "$TMP/f-intr3.out" | grep -q 'readKernel=true .*messages=0 batches=0' && return 0
    echo "exit $rc"; cat "$TMP/f-intr3.out"; return 1
}
check "three interrupted dumps: read again, the decision unchanged (nothing to send)" intr_retried
delns f; delns fref
fi

if want drift; then
echo "drift: readOwned vs expectedOwned sees foreign edits; the next apply repairs exactly"
EX="$ROOT/Config/example-cluster.yaml"
CFG="$ROOT/Config/kube-proxy-config.yaml"
newns d; newns ref
args=(--config "$CFG" --source "$EX")
once d 1.8.9 "${args[@]}" > /dev/null 2>&1
reference ref ipv4 "$EX" "$CFG"; save ref ipv4 > "$TMP/ref"
check "freshly applied: no drift" H d drift "${args[@]}"
drifted() { # NAME...: the drift command fails and names each chain
    H d drift "${args[@]}" > "$TMP/drift.out" 2>&1 && { cat "$TMP/drift.out"; return 1; }
    local c; for c in "$@"; do grep -q "nat $c:" "$TMP/drift.out" || { cat "$TMP/drift.out"; return 1; }; done
}
repaired() {
    once d 1.8.9 "${args[@]}" > "$TMP/repair.out" 2>&1 || { cat "$TMP/repair.out"; return 1; }
    save d ipv4 > "$TMP/now"; same "$TMP/now" "$TMP/ref" && H d drift "${args[@]}" > /dev/null
}
X d nft flush chain ip nat KUBE-SERVICES
check "nft flush chain ip nat KUBE-SERVICES is drift" drifted KUBE-SERVICES
check "... and the next apply repairs it exactly" repaired
svc=$(save d ipv4 | grep -m1 -- '^-A KUBE-SVC-.*-j KUBE-SEP-' | awk '{print $2}')
sep=$(save d ipv4 | grep -m1 -- "^-A $svc .*-j KUBE-SEP-" | sed 's/.*-j //')
X d nft flush chain ip nat "$svc"; X d nft delete chain ip nat "$sep"
check "a deleted SEP chain (and its flushed SVC chain) is drift" drifted "$svc" "$sep"
check "... and the next apply repairs it exactly" repaired
X d iptables-nft -t nat -R KUBE-MARK-MASQ 1 -j MARK --or-mark 0x8000
check "a rule replaced by another tool is drift" drifted KUBE-MARK-MASQ
check "... and the next apply repairs it exactly" repaired
delns d; delns ref
fi

if want cleanup; then
echo "cleanup: removes exactly what kube-natd owns"
EX="$ROOT/Config/example-cluster.yaml"
CFG="$ROOT/Config/kube-proxy-config.yaml"
for who in kubelet kube-natd; do
    newns c
    foreign_setup c ipv4
    for t in "nat PREROUTING" "filter INPUT" "filter OUTPUT" "filter FORWARD"; do
        set -- $t
        X c iptables-nft -t "$1" -A "$2" -s 198.51.100.9 -m comment --comment "foreign $2" -j ACCEPT
    done
    if [ $who = kubelet ]; then
        # kubelet's own KUBE-FIREWALL chain and jumps, written before kube-natd (iptables-nft, untagged)
        X c iptables-nft -N KUBE-FIREWALL
        X c iptables-nft -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        X c iptables-nft -I INPUT -j KUBE-FIREWALL
        X c iptables-nft -I OUTPUT -j KUBE-FIREWALL
    fi
    { foreign_state c ipv4; save c ipv4 | grep -v KUBE-; } > "$TMP/c0"
    save c ipv4 | grep 'KUBE-FIREWALL' > "$TMP/k0"
    once c 1.8.9 --config "$CFG" --source "$EX" --ip-family dual > /dev/null 2>&1
    natd c --cleanup > "$TMP/cleanup.out" 2>&1 || bad "$who: kube-natd --cleanup failed" "$(cat "$TMP/cleanup.out")"
    { foreign_state c ipv4; save c ipv4 | grep -v KUBE-; } > "$TMP/c1"
    check "$who: foreign rules, chains, tables byte-identical after cleanup" same "$TMP/c0" "$TMP/c1"
    left=$({ save c ipv4; save c ipv6; } | grep 'KUBE-' | grep -v -e '^:KUBE-FIREWALL ' -e '^-A KUBE-FIREWALL ' || true)
    if [ $who = kubelet ]; then
        # kubelet's jumps stay (kube-natd found them there and never owned them); the chain stays too
        check "kubelet: every KUBE-* chain and jump gone but kubelet's KUBE-FIREWALL and its two jumps" \
            bash -c "[ \"\$(echo '$left' | grep -c .)\" = 2 ] && echo '$left' | grep -q -- '-A INPUT -j KUBE-FIREWALL' && echo '$left' | grep -q -- '-A OUTPUT -j KUBE-FIREWALL'"
    else
        # the KUBE-FIREWALL jumps were kube-natd's (its layout wrote them): they go; the chain stays (kubelet's name)
        check "kube-natd: every KUBE-* jump gone (its own KUBE-FIREWALL jumps too), only the KUBE-FIREWALL chain left" \
            bash -c "[ -z '$left' ] && ip netns exec knft-$$-c iptables-nft-save | grep -q '^:KUBE-FIREWALL '"
    fi
    g0=$(H c genid); need "$who: a second cleanup" natd c --cleanup > "$TMP/cleanup2.out" 2>&1; g1=$(H c genid)
    check "$who: a second cleanup removes nothing and commits nothing" bash -c \
        "grep -q 'cleanup through libnftnl: 0 chains and 0 jumps removed' '$TMP/cleanup2.out' && [[ '$g0' =~ ^[0-9]+\$ ]] && [ '$g0' = '$g1' ]"
    delns c
done
fi

if want canaries; then
echo "canaries"
newns k
check "ensureCanaries (both families)" H k canaries --ip-family dual
check "KUBE-PROXY-CANARY in mangle, nat and filter, both families" bash -c \
    "[ \$(ip netns exec knft-$$-k iptables-nft-save | grep -c '^:KUBE-PROXY-CANARY') = 3 ] && [ \$(ip netns exec knft-$$-k ip6tables-nft-save | grep -c '^:KUBE-PROXY-CANARY') = 3 ]"
g0=$(H k genid); need "canaries again" H k canaries --ip-family dual; g1=$(H k genid)
check "canaries again: nothing committed" same_genid "$g0" "$g1"
check "readOwned lists the canaries" bash -c "[ \$(ip netns exec knft-$$-k '$HARNESS' read --ip-family dual | grep -c 'KUBE-PROXY-CANARY 0 ') = 6 ]"
X k iptables-nft -t nat -X KUBE-PROXY-CANARY
check "a deleted canary is missing from readOwned" bash -c "ip netns exec knft-$$-k '$HARNESS' read > '$TMP/k-read' && ! grep -q 'nat KUBE-PROXY-CANARY' '$TMP/k-read'"
delns k
fi

if want ensured; then
echo "ensured rules (the v1.23 layout's kubelet rules): created when missing, after kube-natd's jumps, never removed"
newns e
X e iptables-nft -A INPUT -s 192.0.2.9 -m comment --comment "foreign INPUT" -j ACCEPT
E="$CASES_V123/loadbalancer-source-ranges"
eargs=(--config "$E/config.yaml" --source "$E/cluster.yaml" --rule-layout v1.23)
check "--once --rule-layout v1.23 (ensures KUBE-MARK-DROP, KUBE-FIREWALL and its jumps)" once e 1.8.9 "${eargs[@]}"
ensured_in_place() {
    local input; input=$(X e iptables-nft -S INPUT | grep '^-A' | awk '
        /comment "foreign / { printf "foreign "; next }
        / -j / { sub(/.* -j /, ""); printf "%s ", $1; next }')
    [ "$input" = "KUBE-NODEPORTS KUBE-EXTERNAL-SERVICES KUBE-FIREWALL foreign " ] || { echo "INPUT: $input"; return 1; }
    X e iptables-nft -t nat -S KUBE-MARK-DROP | grep -q -- '-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000' \
        && X e iptables-nft -S KUBE-FIREWALL | grep -q -- '--mark 0x8000/0x8000 -j DROP'
}
check "ensured rules created, INPUT's right after kube-natd's jumps, the foreign rule last" ensured_in_place
g0=$(H e genid); need "ensured: --once again" once e 1.8.9 "${eargs[@]}" > /dev/null 2>&1; g1=$(H e genid)
check "again: nothing committed (generation $g0 -> $g1)" same_genid "$g0" "$g1"
X e iptables-nft -D INPUT -j KUBE-FIREWALL
X e iptables-nft -A OUTPUT -s 192.0.2.10 -j ACCEPT
X e iptables-nft -D OUTPUT -j KUBE-FIREWALL
X e iptables-nft -A OUTPUT -j KUBE-FIREWALL
once e 1.8.9 "${eargs[@]}" > /dev/null 2>&1
readded_not_moved() {
    ensured_in_place || return 1
    [ "$(X e iptables-nft -S OUTPUT | grep -c -- '-j KUBE-FIREWALL')" = 1 ] && X e iptables-nft -S OUTPUT | tail -1 | grep -q -- '-j KUBE-FIREWALL'
}
check "a removed ensured rule is added again; one present elsewhere in its chain is left where it is" readded_not_moved
natd e --cleanup > /dev/null 2>&1
kept_after_cleanup() {
    X e iptables-nft -S INPUT | grep -q -- '-A INPUT -j KUBE-FIREWALL' && X e iptables-nft -t nat -S KUBE-MARK-DROP | grep -q MARK \
        && ! X e iptables-nft-save | grep -e KUBE-SERVICES -e KUBE-NODEPORTS > /dev/null
}
check "kube-natd --cleanup leaves the ensured rules and kubelet's chains" kept_after_cleanup
delns e
fi

if want traffic; then
echo "traffic: packets through the nf_tables rules (lib/topology.sh), --once and the daemon (drift repair, canaries)"
# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
TOPO_UP=1
if topo_setup "knft-$$-t-" && topo_start_servers 150; then
    CFG="$ROOT/Config/kube-proxy-config.yaml"
    EX="$ROOT/Config/example-cluster.yaml"
    NODE=${TOPO_PREFIX}node
    probe() { local ns=$1; shift; timeout 60 ip netns exec "$(topo_ns "$ns")" python3 "$HERE/lib/probe.py" "$@"; }
    pods() { sed 's/ ms=[0-9]*$//' "$1" | awk '{print $1}' | sort -u | tr '\n' ' '; }
    all_answered() { [ -s "$1" ] && ! sed 's/ ms=[0-9]*$//' "$1" | grep -qvE "^($2)\$" || { echo "got: $(pods "$1")"; return 1; }; }
    check "--once --backend libnftnl --ip-family dual programs the node" bash -c \
        "KNAT_NFT_FORM=1.8.9 timeout 60 ip netns exec $NODE '$BIN' --once --backend libnftnl --ip-family dual --config '$CFG' --source '$EX' > '$TMP/t-once.log' 2>&1"
    probe client tcp 10.96.0.10 80 40 2 > "$TMP/t-cip"
    check "ClusterIP 10.96.0.10:80 from the client reaches pod-a, pod-b and pod-remote, every try answered" bash -c \
        "[ \"\$(sed 's/ ms=[0-9]*\$//' '$TMP/t-cip' | awk '{print \$1}' | sort -u | tr '\n' ' ')\" = 'pod-a pod-b pod-remote ' ] && ! grep -qv '^pod-' '$TMP/t-cip'"
    probe client tcp "$TOPO_NODE_IP" 30080 5 2 > "$TMP/t-np"
    check "NodePort $TOPO_NODE_IP:30080 from the client answered, source masqueraded to the node" \
        all_answered "$TMP/t-np" "pod-(a|remote) (192\.168\.10\.1|10\.244\.1\.1)"
    probe pod-a udp 10.96.0.53 53 3 2 > "$TMP/t-dns"
    check "kube-dns 10.96.0.53:53 UDP from a pod answered by pod-dns" all_answered "$TMP/t-dns" "pod-dns .*"
    probe client tcp fd00:96::22 80 3 2 > "$TMP/t-v6"
    check "IPv6 ClusterIP [fd00:96::22]:80 answered by pod-a" all_answered "$TMP/t-v6" "pod-a .*"
    probe client tcp 10.96.0.18 80 1 3 > "$TMP/t-rej"
    check "a Service without endpoints is refused at once (REJECT)" grep -q '^REFUSED' "$TMP/t-rej"

    # The daemon keeps one backend object: syncs without re-reading, repairs drift, recreates canaries.
    sed -e 's/^\(\s*syncPeriod:\).*/\1 2s/' -e 's/^\(\s*minSyncPeriod:\).*/\1 200ms/' \
        -e 's/^healthzBindAddress:.*/healthzBindAddress: 127.0.0.1:10256/' \
        -e 's/^metricsBindAddress:.*/metricsBindAddress: 127.0.0.1:10249/' "$CFG" > "$TMP/t-config.yaml"
    mkdir -p "$TMP/t-manifests"; cp "$EX" "$TMP/t-manifests/cluster.yaml"
    KNAT_NFT_FORM=1.8.9 ip netns exec "$NODE" timeout -k 2 90 "$BIN" --config "$TMP/t-config.yaml" \
        --source "$TMP/t-manifests" --backend libnftnl --ip-family dual > "$TMP/t-daemon.log" 2>&1 &
    DPID=$!; BGPIDS+=("$DPID")
    synced() { grep -q 'first sync done' "$TMP/t-daemon.log"; }
    for i in $(seq 1 100); do synced && break; sleep 0.1; done
    check "daemon: first sync through libnftnl" bash -c "grep -q 'through libnftnl' '$TMP/t-daemon.log' && grep -q 'first sync done' '$TMP/t-daemon.log'"
    owned_nft() { ip netns exec "$NODE" iptables-nft-save | grep -E '^(\*|:KUBE-|-A KUBE-|-A [A-Z]+ .*-j KUBE-)' | sed 's/\[[0-9]*:[0-9]*\]//'; }
    owned_nft > "$TMP/t-owned"
    repaired_within() { # TENTHS: owned rules back as they were
        local i; for i in $(seq 1 "$1"); do owned_nft | cmp -s - "$TMP/t-owned" && return 0; sleep 0.1; done
        owned_nft | diff "$TMP/t-owned" - | head -10; return 1
    }
    ip netns exec "$NODE" nft flush chain ip nat KUBE-SERVICES
    check "daemon: nft flush chain ip nat KUBE-SERVICES repaired within one syncPeriod" repaired_within 45
    svc=$(ip netns exec "$NODE" iptables-nft -t nat -S KUBE-SERVICES | grep -- '-d 10.96.0.10/32' | grep -o 'KUBE-SVC-[A-Z0-9]*' | head -1)
    sep=$(ip netns exec "$NODE" iptables-nft -t nat -S "$svc" | grep -o 'KUBE-SEP-[A-Z0-9]*' | head -1)
    ip netns exec "$NODE" nft flush chain ip nat "$svc"; ip netns exec "$NODE" nft delete chain ip nat "$sep"
    check "daemon: a deleted SEP chain repaired within one syncPeriod" repaired_within 45
    ip netns exec "$NODE" iptables-nft -t mangle -X KUBE-PROXY-CANARY
    check "daemon: a deleted mangle canary recreated" bash -c \
        "for i in \$(seq 1 45); do ip netns exec $NODE iptables-nft -t mangle -S KUBE-PROXY-CANARY >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1"
    probe client tcp 10.96.0.10 80 10 2 > "$TMP/t-cip2"
    check "daemon: ClusterIP answered after the repairs" all_answered "$TMP/t-cip2" "pod-(a|b|remote) .*"
    kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
    check "daemon: the sync log names no error" bash -c "! grep -E ' error ' '$TMP/t-daemon.log'"
else
    bad "traffic topology could not be set up"
fi
topo_teardown; TOPO_UP=0
fi

if want scale; then
echo "scale: 10k Services x 3 endpoints in one transaction"
G10="$TMP/g10"
mkdir -p "$G10"
"$BENCH" generate 10000 "$G10/v1" "$G10/v2" > /dev/null || bad "natd-bench generate 10000 failed"
C10="$G10/kube-proxy-config.yaml"
newns big
start=$(date +%s%N)
H big apply --config "$C10" --source "$G10/v1" > "$TMP/big1.out" 2>&1 || bad "10k apply failed" "$(cat "$TMP/big1.out")"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
want_rules=$(natd big --config "$C10" --source "$G10/v1" --ip-family ipv4 --dry-run 2>/dev/null | grep -c '^-A')
have_rules=$(save big ipv4 | grep -c '^-A')
check "10k Services: one batch, one attempt, $(field messages < "$TMP/big1.out") messages, ${ms} ms incl. compile" \
    bash -c "grep -q 'batches=1 attempts=1' '$TMP/big1.out'"
check "10k Services: every rule of the dry run is in the kernel ($have_rules of $want_rules)" [ "$want_rules" = "$have_rules" ]
H big apply --config "$C10" --source "$G10/v1" > "$TMP/big2.out" 2>&1
check "10k Services, new process: an identical apply sends nothing (read $(field read < "$TMP/big2.out"))" grep -q 'messages=0 batches=0' "$TMP/big2.out"
H big apply --config "$C10" --source "$G10/v2" > "$TMP/big3.out" 2>&1
m=$(field messages < "$TMP/big3.out")
check "10k Services, new process: one endpoint changed is $m messages (bound: 10)" bash -c "[ '$m' -ge 1 ] && [ '$m' -le 10 ]"
check "10k Services: readOwned equals expectedOwned" H big drift --config "$C10" --source "$G10/v2"
delns big
fi

if want valgrind; then
echo "valgrind: the shim leaks nothing and reads no uninitialised memory"
if ! command -v valgrind > /dev/null; then
    bad "valgrind is not installed (apt-get install valgrind): the shim's memory check cannot run"
else
    # valgrind 3.19 cannot read the DWARF 5 Swift emits: it runs a copy without debug info. Only definite leaks
    # count (the Swift runtime's caches show up as "possibly lost").
    objcopy --strip-debug "$HARNESS" "$TMP/harness-nodebug"
    [ -d "$GEN/v1" ] || generate 200
    newns v
    vg() { # NAME EXPECTED-EXIT ARGS...
        local name=$1 expect=$2; shift 2
        X v valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=3 \
            --log-file="$TMP/vg.$name" "$TMP/harness-nodebug" "$@" > "$TMP/vg.$name.out" 2>&1
        local rc=$?
        if [ "$rc" = "$expect" ] && grep -q 'ERROR SUMMARY: 0 errors' "$TMP/vg.$name"; then
            ok "valgrind $name: no memory errors, no definite leaks"
        else
            bad "valgrind $name: exit $rc (want $expect)" "$(grep -E 'definitely|Invalid|uninitialised|ERROR SUMMARY' -A6 "$TMP/vg.$name" | head -30; cat "$TMP/vg.$name.out" | head -5)"
        fi
    }
    vg first-apply 0 apply --config "$ROOT/Config/kube-proxy-config.yaml" --source "$ROOT/Config/example-cluster.yaml" --ip-family dual --kubelet-ensured
    vg incremental 0 apply --config "$(GCFG)" --source "$GEN/v1" --then "$GEN/v2" --then same --then drift --then "$GEN/v3"
    vg stateless 0 apply --config "$(GCFG)" --source "$GEN/v1" --read
    vg read 0 read --ip-family dual
    vg dump 0 dump --family ipv4 --table nat
    vg refused-batch 1 apply --config "$(GCFG)" --source "$GEN/v2" --inject-bad-rule
    vg canaries 0 canaries --ip-family dual
    vg cleanup 0 cleanup --ip-family dual
    delns v
fi
fi

summary nftables
[ "$FAIL" -eq 0 ]
