#!/usr/bin/env bash
# Kernel test of the netfilter backends, in throwaway network namespaces only (run as root).
#
#   Tests/kernel/netfilter-backend.sh [path/to/netfilter-harness]
#
# For IPv4 and IPv6: the libiptc commit and iptables-legacy-restore of the dry-run text must give the same
# iptables-save output and the same raw-entry digests; foreign rules survive apply, re-apply and cleanup;
# applies are idempotent; stale chains go; ensured rules are added where missing and never removed; the one
# decision engine sees every drift and repairs it, through either table reader; the xtables lock is honoured;
# the text passes restore --test; valgrind finds no memory errors or leaks in the shim.
set -uo pipefail
HARNESS=${1:-.build/debug/netfilter-harness}
HARNESS=$(readlink -f "$HARNESS")
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$HARNESS" ] || { echo "netfilter-backend: harness $HARNESS not found (swift build first)"; exit 2; }
VALGRIND=${VALGRIND:-1} # 0: skip the valgrind runs on purpose (counted as skipped; they fail when valgrind is missing)
# FAMILIES="ipv4": one family only (a quicker run while working on the shim)

# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"
NAMESPACES=()
TMP=$(mktemp -d /tmp/knat-nb.XXXXXX)
LOCK_PID=""
# A private xtables lock: the shim and the iptables binaries both read XTABLES_LOCKFILE, so the lock tests hold and
# wait on this file, never on the host's /run/xtables.lock.
export XTABLES_LOCKFILE="$TMP/xtables.lock"

cleanup() {
    [ -n "$LOCK_PID" ] && kill "$LOCK_PID" 2>/dev/null
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

newns() { # newns NAME: creates knat-nb-<pid>-NAME, records it for deletion
    local ns="knat-nb-$$-$1"
    ip netns add "$ns" || { echo "cannot create namespace $ns"; exit 2; }
    NAMESPACES+=("$ns")
    ip netns exec "$ns" ip link set lo up
}
delns() {
    local ns="knat-nb-$$-$1"
    ip netns del "$ns" 2>/dev/null
}
X() { local ns="knat-nb-$$-$1"; shift; ip netns exec "$ns" "$@"; }

same_files() { # same_files A B: identical, or show the diff
    if cmp -s "$1" "$2"; then return 0; fi
    diff -u "$1" "$2" | head -40
    return 1
}

# hold_lock NAME: a process holds $XTABLES_LOCKFILE until release_lock; returns once it holds it.
hold_lock() {
    rm -f "$TMP/lock.held" "$TMP/lock.release"
    flock "$XTABLES_LOCKFILE" bash -c 'touch "$1"; for ((i = 0; i < 1200; i++)); do [ -e "$2" ] && exit 0; sleep 0.05; done' \
        _ "$TMP/lock.held" "$TMP/lock.release" &
    LOCK_PID=$!
    wait_for 100 test -e "$TMP/lock.held" || { echo "the lock holder never took $XTABLES_LOCKFILE"; release_lock; return 1; }
}
release_lock() { touch "$TMP/lock.release"; [ -n "$LOCK_PID" ] && wait "$LOCK_PID" 2>/dev/null; LOCK_PID=""; }
# refused_or_queued TRACE: the traced apply was refused the lock at least 3 times (the shim polls with LOCK_NB), or
# a process waits for it in /proc/locks (iptables-restore blocks in flock).
refused_or_queued() {
    [ "$(grep -c 'flock(.*LOCK_NB.*= -1 EAGAIN' "$1" 2>/dev/null || true)" -ge 3 ] 2>/dev/null && return 0
    local ino; ino=$(stat -c %i "$XTABLES_LOCKFILE")
    grep -E -- "-> FLOCK .*:$ino " /proc/locks > /dev/null
}
# lock_honoured NS "HARNESS ARGS" libiptc|restore: while the lock is held the apply tries it, waits and changes
# nothing; once released it succeeds (and the libiptc report says it waited).
lock_honoured() {
    local ns=$1 args=$2 kind=$3 pid rc
    hold_lock "$kind" || return 1
    rm -f "$TMP/lock.trace"
    # shellcheck disable=SC2086 # the harness's words
    X "$ns" strace -f -qq -e trace=flock -o "$TMP/lock.trace" "$HARNESS" $args --family "$FAMILY" 2> "$TMP/lockreport" &
    pid=$!
    if ! wait_for 300 refused_or_queued "$TMP/lock.trace"; then
        release_lock; wait "$pid"
        echo "the apply never tried the held lock (exit status once released: $?)"; cat "$TMP/lock.trace" | head -5; return 1
    fi
    if ! kill -0 "$pid" 2>/dev/null; then release_lock; echo "the apply finished while the lock was held"; return 1; fi
    # (the save to a file first: `save | grep -q` under pipefail fails when grep stops reading early)
    X "$ns" "$SAVE" > "$TMP/lock.save" || { release_lock; wait "$pid"; echo "$SAVE failed"; return 1; }
    if grep -q '^:KUBE-' "$TMP/lock.save"; then release_lock; wait "$pid"; echo "KUBE- chains written while the lock was held"; return 1; fi
    release_lock
    wait "$pid"; rc=$?
    [ "$rc" = 0 ] || { echo "apply exit $rc after the lock was released"; cat "$TMP/lockreport"; return 1; }
    X "$ns" "$SAVE" > "$TMP/lock.save" && grep -q '^:KUBE-SERVICES' "$TMP/lock.save" || { echo "no KUBE-SERVICES after the apply"; return 1; }
    if [ "$kind" = libiptc ]; then
        grep -qE 'lockWait=0*[.]0*[1-9]|lockWait=[1-9]' "$TMP/lockreport" || { echo "report: $(head -3 "$TMP/lockreport")"; return 1; }
    fi
}

for FAMILY in ${FAMILIES:-ipv4 ipv6}; do
    if [ "$FAMILY" = ipv4 ]; then P=iptables; else P=ip6tables; fi
    SAVE="$P-legacy-save"
    RESTORE="$P-legacy-restore"
    IPT="$P-legacy"
    H() { X "$1" "$HARNESS" "${@:2}" --family "$FAMILY"; }
    save() { X "$1" "$SAVE" "${@:2}" | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'; }
    digests() { for t in filter nat; do H "$1" list --table $t; done; }

    # --- libiptc commit vs iptables-restore of the dry-run text -------------------------------------
    newns a; newns b
    need "$FAMILY: dry-run text" H a apply --backend dry-run > "$TMP/$FAMILY.v1.txt"
    check "$FAMILY: libiptc apply" H a apply --backend libiptc
    check "$FAMILY: restore of dry-run text" X b "$RESTORE" --noflush < "$TMP/$FAMILY.v1.txt"
    save a > "$TMP/a1"; save b > "$TMP/b1"
    check "$FAMILY: libiptc and restore give identical iptables-save" same_files "$TMP/a1" "$TMP/b1"
    digests a > "$TMP/da1"; digests b > "$TMP/db1"
    check "$FAMILY: libiptc and restore give identical raw entries (digests)" same_files "$TMP/da1" "$TMP/db1"
    KNAT_TEST_READ_VIA_LIBIPTC=1 digests a > "$TMP/da1lib"
    check "$FAMILY: the raw-entry reader lists what libiptc lists (chains, order, digests)" \
        same_files "$TMP/da1" "$TMP/da1lib"
    check "$FAMILY: every IR element present" grep -q -- '--probability 0.33333333349' "$TMP/a1"
    check "$FAMILY: restore --test accepts the dry-run text" bash -c \
        "ip netns exec knat-nb-$$-b $RESTORE --test --noflush < '$TMP/$FAMILY.v1.txt'"
    delns a; delns b

    # --- the nfacct match needs its accounting object; same comparison with it ----------------------
    newns a; newns b
    need "$FAMILY: nfacct object in both namespaces" bash -c \
        "ip netns exec knat-nb-$$-a python3 '$HERE/nfacct-add.py' knat-test && ip netns exec knat-nb-$$-b python3 '$HERE/nfacct-add.py' knat-test"
    need "$FAMILY: dry-run text with nfacct" H a apply --backend dry-run --nfacct > "$TMP/$FAMILY.nfacct.txt"
    check "$FAMILY: libiptc apply with nfacct" H a apply --backend libiptc --nfacct
    check "$FAMILY: restore with nfacct" X b "$RESTORE" --noflush < "$TMP/$FAMILY.nfacct.txt"
    save a > "$TMP/an"; save b > "$TMP/bn"
    check "$FAMILY: nfacct rule identical in iptables-save" same_files "$TMP/an" "$TMP/bn"
    digests a > "$TMP/dan"; digests b > "$TMP/dbn"
    check "$FAMILY: nfacct rule identical raw entries" same_files "$TMP/dan" "$TMP/dbn"
    delns a; delns b
    newns a; newns b
    need "$FAMILY: libiptc apply (drift fixture)" H a apply --backend libiptc
    need "$FAMILY: restore (drift fixture)" X b "$RESTORE" --noflush < "$TMP/$FAMILY.v1.txt"

    check "$FAMILY: read-back digests equal the ruleset's own (no drift)" H a drift
    need "$FAMILY: a rule added by hand to KUBE-MARK-MASQ" X a "$IPT" -t nat -A KUBE-MARK-MASQ -j RETURN
    # drift exits 1 when it finds drift and 4 on an error: a crash is not a finding.
    drift_seen() { # CHAIN: drift exits 1 and names the chain
        local rc; H a drift > "$TMP/drift.out" 2>&1; rc=$?
        [ "$rc" = 1 ] && grep -q "^drift: nat $1: " "$TMP/drift.out" && return 0
        echo "drift exit $rc:"; cat "$TMP/drift.out"; return 1
    }
    check "$FAMILY: a rule added by hand is seen as drift (exit 1, KUBE-MARK-MASQ named)" drift_seen KUBE-MARK-MASQ
    need "$FAMILY: the repairing apply" H a apply --backend libiptc > "$TMP/repair.out" 2>&1
    save a > "$TMP/a1again"
    check "$FAMILY: second apply is idempotent" same_files "$TMP/a1" "$TMP/a1again"
    # Only the drifted chain is rewritten; the untouched table is not committed at all.
    only_drifted_rewritten() {
        grep -q "nat: .* flushed=1 unchanged=[1-9][0-9]* " "$TMP/repair.out" \
            && grep -q "filter: .*commit=skipped(unchanged) .* flushed=0 " "$TMP/repair.out" && return 0
        cat "$TMP/repair.out"; return 1
    }
    check "$FAMILY: the repair rewrote only the drifted chain, filter not committed" only_drifted_rewritten
    steady_skips_commit() {
        H a apply --backend libiptc > "$TMP/steady.out" 2>&1 || return 1
        [ "$(grep -c 'commit=skipped(unchanged) created=0 flushed=0 ' "$TMP/steady.out")" = 2 ] && return 0
        cat "$TMP/steady.out"; return 1
    }
    check "$FAMILY: an apply onto identical tables commits neither table" steady_skips_commit
    # Same rule count and size, different content: the comparison is of bytes, not of counts.
    need "$FAMILY: nat KUBE-MARK-MASQ rule 1 replaced" X a "$IPT" -t nat -R KUBE-MARK-MASQ 1 -j MARK --set-xmark 0x8000/0x8000
    need "$FAMILY: filter KUBE-FORWARD rule 1 replaced" X a "$IPT" -t filter -R KUBE-FORWARD 1 -m conntrack --ctstate INVALID -j ACCEPT
    save a > "$TMP/a1drifted"
    check "$FAMILY: the replacements changed the tables" bash -c "! cmp -s '$TMP/a1' '$TMP/a1drifted'"
    need "$FAMILY: the repairing apply (replaced rules)" H a apply --backend libiptc > "$TMP/replaced.out" 2>&1
    save a > "$TMP/a1replaced"
    check "$FAMILY: a same-size replaced rule is seen and repaired" same_files "$TMP/a1" "$TMP/a1replaced"

    # --- a bad rule: refused with its place, the last good rules stay ------------------------------
    broken_is_refused() {
        if H a apply --backend libiptc --variant 3 2> "$TMP/broken"; then echo "apply succeeded"; return 1; fi
        cat "$TMP/broken"
        grep -q 'nat: chain KUBE-SERVICES rule 2: jump to missing chain KUBE-SVC-MISSINGMISSINGMI' "$TMP/broken"
    }
    check "$FAMILY: bad rule refused, error names table, chain and rule" broken_is_refused
    save a > "$TMP/a1broken"
    check "$FAMILY: nat and filter unchanged after the refused apply" same_files "$TMP/a1" "$TMP/a1broken"

    # --- changed ruleset: stale service chains and listed deletions go ----------------------------
    need "$FAMILY: KUBE-SEP-GONE... in a" X a "$IPT" -t nat -N KUBE-SEP-GONEGONEGONEGONE
    need "$FAMILY: KUBE-SEP-GONE... in b" X b "$IPT" -t nat -N KUBE-SEP-GONEGONEGONEGONE
    check "$FAMILY: libiptc apply variant 2" H a apply --backend libiptc --variant 2
    check "$FAMILY: restore backend apply variant 2" H b apply --backend restore-legacy --variant 2
    save a > "$TMP/a2"; save b > "$TMP/b2"
    check "$FAMILY: variant 2 identical between libiptc and restore backends" same_files "$TMP/a2" "$TMP/b2"
    digests a > "$TMP/da2"; digests b > "$TMP/db2"
    check "$FAMILY: variant 2 identical raw entries" same_files "$TMP/da2" "$TMP/db2"
    check "$FAMILY: stale KUBE-SEP chain deleted" bash -c "! grep -q 'KUBE-SEP-AAAAAAAAAAAAAAA2' '$TMP/a2'"
    check "$FAMILY: deletedChains chain deleted" bash -c "! grep -q 'KUBE-SEP-GONE' '$TMP/a2'"
    check "$FAMILY: new KUBE-SVL chain present" grep -q ':KUBE-SVL-AAAAAAAAAAAAAAAA' "$TMP/a2"
    delns a; delns b

    # --- foreign rules survive apply, re-apply and cleanup ------------------------------------------
    newns f
    foreign_rules() {
        X f "$IPT" -t nat -A PREROUTING -p tcp --dport 2222 -j REDIRECT --to-ports 22 \
            && X f "$IPT" -t nat -A OUTPUT -p udp --dport 5353 -j RETURN \
            && X f "$IPT" -t nat -A POSTROUTING -o lo -j RETURN \
            && X f "$IPT" -t filter -A INPUT -p tcp --dport 22 -j ACCEPT \
            && X f "$IPT" -t filter -A FORWARD -i lo -j ACCEPT \
            && X f "$IPT" -t filter -A OUTPUT -m comment --comment "foreign output rule" -j ACCEPT \
            && X f "$IPT" -t filter -N FOREIGN-CHAIN \
            && X f "$IPT" -t filter -A FOREIGN-CHAIN -p udp --dport 53 -j ACCEPT \
            && X f "$IPT" -t filter -A INPUT -j FOREIGN-CHAIN \
            && X f "$IPT" -t mangle -A PREROUTING -p tcp --dport 80 -j MARK --set-mark 7
    }
    need "$FAMILY: nine foreign rules and a foreign chain" foreign_rules
    save f > "$TMP/f0"
    check "$FAMILY: the foreign fixture is in the tables (9 rules)" bash -c "[ \$(grep -c '^-A' '$TMP/f0') = 9 ]"
    detect_legacy() { # only legacy rules in this namespace: the wrapper-script logic must pick legacy
        local d; d=$(X f "$HARNESS" detect); echo "detect: $d"; [ "${d%%$'\t'*}" = legacy ]
    }
    check "$FAMILY: host mode detection picks legacy" detect_legacy
    foreign() { grep -v 'KUBE-' "$1"; }
    foreign "$TMP/f0" > "$TMP/f0.foreign"
    check "$FAMILY: apply over foreign rules" H f apply --backend libiptc
    save f > "$TMP/f1"; foreign "$TMP/f1" > "$TMP/f1.foreign"
    check "$FAMILY: foreign rules byte-identical after apply" same_files "$TMP/f0.foreign" "$TMP/f1.foreign"
    first_rule_is_ours() { # TABLE CHAIN: the first rule of a base chain is a kube-natd jump
        X f "$IPT" -t "$1" -S "$2" | sed -n 2p | grep -q -- '-j KUBE-'
    }
    check "$FAMILY: nat PREROUTING jump at the top" first_rule_is_ours nat PREROUTING
    check "$FAMILY: filter INPUT jumps at the top" first_rule_is_ours filter INPUT
    jumps_in_order() { # the base-chain jumps appear exactly once each, in the harness's order, at the top
        local got
        got=$(X f "$IPT" -t filter -S FORWARD | grep -- '-j KUBE-' | sed 's/.*-j //' | tr '\n' ' ')
        [ "$got" = "KUBE-EXTERNAL-SERVICES KUBE-SERVICES KUBE-FORWARD KUBE-PROXY-FIREWALL " ] || { echo "FORWARD jumps: $got"; return 1; }
        [ "$(X f "$IPT" -t filter -S FORWARD | sed -n 6p)" = "-A FORWARD -i lo -j ACCEPT" ]
    }
    check "$FAMILY: FORWARD jumps once each, in order, foreign rule after them" jumps_in_order
    check "$FAMILY: re-apply over foreign rules (variant 2)" H f apply --backend libiptc --variant 2
    save f > "$TMP/f2"; foreign "$TMP/f2" > "$TMP/f2.foreign"
    check "$FAMILY: foreign rules byte-identical after re-apply" same_files "$TMP/f0.foreign" "$TMP/f2.foreign"
    check "$FAMILY: jumps not duplicated by re-apply" bash -c \
        "[ \$(grep -c -- '-A PREROUTING .*-j KUBE-SERVICES' '$TMP/f2') = 1 ]"
    # A jump moved below a foreign rule (someone -I'd above it) is moved back to the top, not duplicated.
    need "$FAMILY: a foreign rule inserted above the jump" X f "$IPT" -t nat -I PREROUTING 1 -p tcp --dport 2223 -j RETURN
    check "$FAMILY: the insert put a foreign rule on top" bash -c "! ip netns exec knat-nb-$$-f $IPT -t nat -S PREROUTING | sed -n 2p | grep -q -- '-j KUBE-'"
    need "$FAMILY: the re-apply after the insert" H f apply --backend libiptc --variant 2
    check "$FAMILY: jump restored to the top after a foreign insert" first_rule_is_ours nat PREROUTING
    need "$FAMILY: the inserted foreign rule removed" X f "$IPT" -t nat -D PREROUTING -p tcp --dport 2223 -j RETURN
    check "$FAMILY: canary chains" H f canary
    check "$FAMILY: canary in mangle, nat, filter" bash -c \
        "[ \$(ip netns exec knat-nb-$$-f $SAVE | grep -c '^:KUBE-PROXY-CANARY') = 3 ]"
    check "$FAMILY: cleanup" H f cleanup
    save f > "$TMP/f3"
    check "$FAMILY: cleanup leaves exactly the foreign rules" same_files "$TMP/f0" "$TMP/f3"
    delns f

    # --- ensured rules (kubelet's, which the v1.23 layout relies on): added when missing, never owned -
    ensured_once() { # FILE: kubelet's chains and rules, each exactly once
        local line
        for line in ":KUBE-MARK-DROP - [0:0]" "-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000" \
            ":KUBE-FIREWALL - [0:0]" "-A INPUT -j KUBE-FIREWALL" "-A OUTPUT -j KUBE-FIREWALL" \
            '-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP'; do
            [ "$(grep -cxF -- "$line" "$1")" = 1 ] || { echo "not exactly once in $1: $line"; return 1; }
        done
    }
    after_jumps() { # NS CHAIN JUMPS: kube-natd's JUMPS jumps, then the ensured jump, then the rest
        local rules; rules=$(X "$1" "$IPT" -t filter -S "$2" | tail -n +2)
        [ "$(echo "$rules" | head -n "$3" | grep -c -- ' -j KUBE-')" = "$3" ] \
            && [ "$(echo "$rules" | sed -n "$(($3 + 1))p")" = "-A $2 -j KUBE-FIREWALL" ] && return 0
        echo "$rules"; return 1
    }
    no_commit() { # FILE: an apply report in which neither table was committed
        [ "$(grep -c 'commit=skipped(unchanged) created=0 flushed=0 ' "$1")" = 2 ] && return 0
        cat "$1"; return 1
    }
    newns e
    X e "$IPT" -t filter -A INPUT -p tcp --dport 22 -j ACCEPT
    check "$FAMILY: ensured: apply creates the missing chains and rules" H e apply --backend libiptc --ensured
    save e > "$TMP/e1"
    check "$FAMILY: ensured: each chain and rule exactly once" ensured_once "$TMP/e1"
    check "$FAMILY: ensured: INPUT's rule right after kube-natd's 3 jumps" after_jumps e INPUT 3
    check "$FAMILY: ensured: the foreign INPUT rule after it" bash -c \
        "[ \"\$(ip netns exec knat-nb-$$-e $IPT -t filter -S INPUT | sed -n 6p)\" = '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT' ]"
    check "$FAMILY: ensured: OUTPUT's rule right after kube-natd's 2 jumps" after_jumps e OUTPUT 2
    H e apply --backend libiptc --ensured > "$TMP/e2.out" 2>&1
    check "$FAMILY: ensured: a second apply commits neither table" no_commit "$TMP/e2.out"
    save e > "$TMP/e2"
    check "$FAMILY: ensured: ... and adds no duplicate" same_files "$TMP/e1" "$TMP/e2"
    H e apply --backend libiptc --variant 2 > /dev/null 2>&1
    save e > "$TMP/e3"
    check "$FAMILY: ensured: a later apply without them keeps them" ensured_once "$TMP/e3"
    H e cleanup > /dev/null 2>&1
    save e > "$TMP/e4"
    check "$FAMILY: ensured: cleanup keeps them" ensured_once "$TMP/e4"
    check "$FAMILY: ensured: cleanup removed kube-natd's own chains" bash -c "! grep -q -e KUBE-SERVICES -e KUBE-SEP- '$TMP/e4'"
    delns e
    # kubelet's rules already there (its own order: the base-chain jumps last): identical rules are left alone.
    newns k
    H k apply --backend libiptc > /dev/null 2>&1
    X k "$IPT" -t nat -N KUBE-MARK-DROP
    X k "$IPT" -t nat -A KUBE-MARK-DROP -j MARK --or-mark 0x8000
    X k "$IPT" -t filter -N KUBE-FIREWALL
    X k "$IPT" -t filter -A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" \
        -m mark --mark 0x8000/0x8000 -j DROP
    X k "$IPT" -t filter -A INPUT -p tcp --dport 22 -j ACCEPT
    X k "$IPT" -t filter -A INPUT -j KUBE-FIREWALL
    X k "$IPT" -t filter -A OUTPUT -j KUBE-FIREWALL
    save k > "$TMP/k0"
    H k apply --backend libiptc --ensured > "$TMP/k1.out" 2>&1
    check "$FAMILY: ensured: identical rules already present: no commit" no_commit "$TMP/k1.out"
    save k > "$TMP/k1"
    check "$FAMILY: ensured: identical rules already present: left where they are, no duplicate" \
        same_files "$TMP/k0" "$TMP/k1"
    delns k

    # --- the xtables lock (the private one, $XTABLES_LOCKFILE) -----------------------------------------
    # An apply honours the lock when, while another process holds it, it tries the lock and is refused (strace sees
    # its flock calls refused, or /proc/locks shows it queued on the file), changes nothing, and finishes only once
    # the holder lets go. Conditions throughout: the holder says it holds the lock; no sleeps.
    newns l
    check "$FAMILY: apply waits for the xtables lock, then succeeds" lock_honoured l "apply --backend libiptc" libiptc
    lock_timeout() {
        hold_lock timeout || return 1
        local rc; H l apply --backend libiptc --lock-timeout-ms 200 2> "$TMP/lockfail"; rc=$?
        release_lock
        [ "$rc" != 0 ] || { echo "apply with a 200 ms lock timeout succeeded while the lock was held"; return 1; }
        grep -q "cannot take $XTABLES_LOCKFILE" "$TMP/lockfail" && return 0
        cat "$TMP/lockfail"; return 1
    }
    check "$FAMILY: lock timeout while the lock is held is a clear error naming the lock" lock_timeout
    delns l; newns l
    check "$FAMILY: restore backend waits for the lock too" lock_honoured l "apply --backend restore-legacy" restore
    delns l

    # --- a writer that ignores the lock: commit sees EAGAIN, the apply starts over, nothing is lost -
    newns r
    # The shim's test gate holds the first attempt between iptc_init and iptc_commit until the gate file exists (the
    # --scale ruleset has only a nat table); the writer (on another lock file) adds its 12 nat rules inside that
    # window, so the first commit must see EAGAIN.
    rm -f "$TMP/gate-commit" "$TMP/gate-commit.ready"
    KNAT_TEST_GATE_BEFORE_COMMIT="$TMP/gate-commit" H r apply --backend libiptc --scale 200 2> "$TMP/race" &
    APPLY=$!
    if wait_for 600 test -e "$TMP/gate-commit.ready"; then
        need "$FAMILY: the racing writer's 12 rules" X r bash -c \
            "for i in \$(seq 1 12); do XTABLES_LOCKFILE=$TMP/racing.lock $IPT -t nat -A POSTROUTING -j RETURN || exit 1; done"
    else
        bad "$FAMILY: the apply never reached its gate before iptc_commit"
    fi
    touch "$TMP/gate-commit"
    wait "$APPLY"
    race_rc=$?
    retried() {
        local attempts; attempts=$(grep -o 'attempts=[0-9]*' "$TMP/race" | head -1 | cut -d= -f2)
        echo "exit $race_rc, attempts: ${attempts:-none}"
        [ "$race_rc" = 0 ] && [ -n "$attempts" ] && [ "$attempts" -ge 2 ]
    }
    check "$FAMILY: EAGAIN from a racing writer is retried from iptc_init" retried
    check "$FAMILY: the racing writer's rules all survive" bash -c \
        "[ \$(ip netns exec knat-nb-$$-r $IPT -t nat -S POSTROUTING | grep -c -- '-j RETURN') = 12 ]"
    delns r
    # The same writer between the read and iptc_init: the plan (made from the read) deletes kube-natd's jump by
    # position to move it back on top; the writer's insert shifts the positions, so the executor must notice that
    # the rule there is no longer the planned one and start over, never deleting a foreign rule.
    newns w
    need "$FAMILY: first apply (shift fixture)" H w apply --backend libiptc > /dev/null 2>&1
    need "$FAMILY: a foreign rule above the jump" X w "$IPT" -t nat -I PREROUTING 1 -p udp --dport 5001 -j RETURN
    rm -f "$TMP/gate-init" "$TMP/gate-init.ready"
    KNAT_TEST_GATE_BEFORE_INIT="$TMP/gate-init" H w apply --backend libiptc 2> "$TMP/shift" &
    APPLY=$!
    if wait_for 600 test -e "$TMP/gate-init.ready"; then
        need "$FAMILY: the racing writer's insert" \
            X w env XTABLES_LOCKFILE="$TMP/racing.lock" "$IPT" -t nat -I PREROUTING 1 -p udp --dport 5002 -j RETURN
    else
        bad "$FAMILY: the apply never reached its gate before iptc_init"
    fi
    touch "$TMP/gate-init"
    wait "$APPLY"
    shift_rc=$?
    replanned() {
        local attempts rules; attempts=$(grep -o 'nat: attempts=[0-9]*' "$TMP/shift" | cut -d= -f2)
        rules=$(X w "$IPT" -t nat -S PREROUTING | tail -n +2)
        [ "$shift_rc" = 0 ] && [ -n "$attempts" ] && [ "$attempts" -ge 2 ] \
            && [ "$(echo "$rules" | sed -n 1p | grep -c -- '-j KUBE-SERVICES')" = 1 ] \
            && [ "$(echo "$rules" | grep -c -- '-j KUBE-SERVICES')" = 1 ] \
            && echo "$rules" | grep -q -- '--dport 5001 -j RETURN' && echo "$rules" | grep -q -- '--dport 5002 -j RETURN' \
            && return 0
        echo "exit $shift_rc, attempts: ${attempts:-none}"; echo "$rules"; cat "$TMP/shift"; return 1
    }
    check "$FAMILY: a table changed between the read and iptc_init is read again; no foreign rule deleted" replanned
    delns w

    # --- one decision engine: the check and the apply are one comparison ----------------------------
    # Each process applies for the first time, so each apply here reads the table, decides, and writes only what
    # the decision says. Every drift below must be decided "differed", committed, and repaired to the earlier save
    # exactly; foreign additions must not count (else steady state is never reached). The sequence runs with the
    # raw-entry reader and again with libiptc's cache as the reader (the fallback for a layout the raw walk does
    # not recognise): one engine, so the same decisions.
    if [ "$FAMILY" = ipv4 ]; then FOREIGN_ADDR=192.0.2.7/32; else FOREIGN_ADDR=2001:db8::7/128; fi
    verdicts() { # verdicts FILE: "filter=<verdict> nat=<verdict>" from an apply report
        local f n
        f=$(grep -o 'filter: .*check=[0-9.]*s([a-z]*)' "$1" | grep -o '([a-z]*)' | tr -d '()')
        n=$(grep -o 'nat: .*check=[0-9.]*s([a-z]*)' "$1" | grep -o '([a-z]*)' | tr -d '()')
        echo "filter=${f:-none} nat=${n:-none}"
    }
    committed_as_decided() { # FILE: a table decided "unchanged" was not committed, one decided "differed" was
        ! grep -E '\(unchanged\)' "$1" | grep -qv 'commit=skipped' && ! grep -E '\(differed\)' "$1" | grep -q 'commit=skipped' \
            && return 0
        echo "commit does not follow the decision:"; cat "$1"; return 1
    }
    expect_check() { # expect_check "filter=X nat=Y": apply, compare the verdicts and commits, and the result with c0
        H c apply --backend libiptc --ensured > "$TMP/check.out" 2>&1 || { cat "$TMP/check.out"; return 1; }
        local got; got=$(verdicts "$TMP/check.out")
        [ "$got" = "$1" ] || { echo "check verdicts: $got, want $1"; cat "$TMP/check.out"; return 1; }
        committed_as_decided "$TMP/check.out" || return 1
        save c > "$TMP/c1"
        same_files "$TMP/c0" "$TMP/c1"
    }
    engine_checks() { # engine_checks raw|libiptc
        local R=$1
        [ "$R" = libiptc ] && local -x KNAT_TEST_READ_VIA_LIBIPTC=1
        newns c
        H c apply --backend libiptc --ensured > /dev/null 2>&1
        X c "$IPT" -t filter -A INPUT -p udp --dport 53 -j ACCEPT # a foreign rule after the ensured jump
        save c > "$TMP/c0"
        check "$FAMILY/$R: identical tables are unchanged, no commit" expect_check "filter=unchanged nat=unchanged"
        steady_without_check() {
            H c apply --backend libiptc --ensured --no-check > "$TMP/nocheck.out" 2>&1 || return 1
            no_commit "$TMP/nocheck.out"
        }
        check "$FAMILY/$R: read through iptc_init, the same decision: nothing to change" steady_without_check
        X c "$IPT" -t nat -A KUBE-MARK-MASQ -j RETURN
        check "$FAMILY/$R: a rule appended to an owned chain" expect_check "filter=unchanged nat=differed"
        X c "$IPT" -t nat -R KUBE-MARK-MASQ 1 -j MARK --set-xmark 0x8000/0x8000
        check "$FAMILY/$R: a same-size replaced rule (other mark)" expect_check "filter=unchanged nat=differed"
        X c "$IPT" -t filter -D KUBE-FORWARD 1
        check "$FAMILY/$R: a rule deleted from an owned filter chain" expect_check "filter=differed nat=unchanged"
        X c "$IPT" -t nat -F KUBE-SERVICES
        check "$FAMILY/$R: an owned chain flushed" expect_check "filter=unchanged nat=differed"
        X c "$IPT" -t nat -N KUBE-SEP-STALESTALESTALE1
        check "$FAMILY/$R: a stale service chain present" expect_check "filter=unchanged nat=differed"
        # A foreign rule above kube-natd's jump: the jump goes back to the top, the foreign rule stays below it.
        X c "$IPT" -t nat -I PREROUTING 1 -s "$FOREIGN_ADDR" -j RETURN
        jump_back_on_top() {
            H c apply --backend libiptc --ensured > "$TMP/check.out" 2>&1 || { cat "$TMP/check.out"; return 1; }
            local got; got=$(verdicts "$TMP/check.out")
            [ "$got" = "filter=unchanged nat=differed" ] || { echo "check verdicts: $got"; cat "$TMP/check.out"; return 1; }
            committed_as_decided "$TMP/check.out" || return 1
            X c "$IPT" -t nat -S PREROUTING > "$TMP/pre"
            [ "$(sed -n 2p "$TMP/pre")" = "$(grep -m1 -- '^-A PREROUTING ' "$TMP/c0")" ] \
                && sed -n 3p "$TMP/pre" | grep -q -- "-j RETURN" || { cat "$TMP/pre"; return 1; }
            X c "$IPT" -t nat -D PREROUTING -s "$FOREIGN_ADDR" -j RETURN
        }
        check "$FAMILY/$R: a foreign rule above kube-natd's jump" jump_back_on_top
        # A second copy of kube-natd's own jump further down the base chain: upstream keeps exactly one.
        local jump; jump=$(grep -m1 -- '^-A PREROUTING ' "$TMP/c0")
        eval "X c $IPT -t nat $jump"
        check "$FAMILY/$R: a duplicate kube-natd jump in a base chain" expect_check "filter=unchanged nat=differed"
        # The same matches jumping to another chain of the same size: jump targets are compared by chain.
        local line index retarget
        line=$(grep -m1 -- '^-A KUBE-SERVICES .*-j KUBE-SVC-' "$TMP/c0")
        index=$(grep -- '^-A KUBE-SERVICES ' "$TMP/c0" | grep -nxF -- "$line" | cut -d: -f1)
        retarget=${line% -j KUBE-SVC-*}
        eval "X c $IPT -t nat -R KUBE-SERVICES $index ${retarget#-A KUBE-SERVICES } -j KUBE-MARK-MASQ"
        check "$FAMILY/$R: a jump retargeted to another chain" expect_check "filter=unchanged nat=differed"
        # Ensured rules: missing ones are put back where they belong (the save must equal the first one).
        X c "$IPT" -t filter -D KUBE-FIREWALL 1
        check "$FAMILY/$R: a missing ensured rule" expect_check "filter=differed nat=unchanged"
        X c "$IPT" -t filter -D INPUT -j KUBE-FIREWALL
        check "$FAMILY/$R: a missing ensured jump (back right after kube-natd's)" expect_check "filter=differed nat=unchanged"
        X c "$IPT" -t nat -F KUBE-MARK-DROP
        X c "$IPT" -t nat -X KUBE-MARK-DROP
        check "$FAMILY/$R: a missing ensured chain" expect_check "filter=unchanged nat=differed"
        # Foreign chains and foreign rules below kube-natd's jumps are not kube-natd's: still unchanged.
        X c "$IPT" -t nat -N FOREIGN-CHAIN
        X c "$IPT" -t nat -A FOREIGN-CHAIN -j RETURN
        X c "$IPT" -t nat -A PREROUTING -s "$FOREIGN_ADDR" -j FOREIGN-CHAIN
        X c "$IPT" -t filter -A INPUT -s "$FOREIGN_ADDR" -j DROP
        save c > "$TMP/c0"
        check "$FAMILY/$R: foreign chains and trailing foreign rules leave it unchanged" \
            expect_check "filter=unchanged nat=unchanged"
        [ "$R" = raw ] && raw_reader_checks
        delns c
    }
    raw_reader_checks() {
        digests c > "$TMP/dc"; KNAT_TEST_READ_VIA_LIBIPTC=1 digests c > "$TMP/dclib"
        check "$FAMILY: the raw-entry reader lists what libiptc lists, foreign chains included" \
            same_files "$TMP/dc" "$TMP/dclib"
        # Tables read ahead of the apply (as --once does while decoding): a change in between is seen by size.
        gated() { # gated MUTATION...: snapshot, mutate, then apply
            rm -f "$TMP/gate" "$TMP/gate.ready"
            H c apply --backend libiptc --ensured --prefetch-gate "$TMP/gate" > "$TMP/check.out" 2>&1 &
            local pid=$! i=0
            while [ ! -e "$TMP/gate.ready" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
            [ $# -gt 0 ] && "$@"
            touch "$TMP/gate"
            wait "$pid" || { cat "$TMP/check.out"; return 1; }
        }
        prefetched() { # prefetched "filter=X nat=Y" MUTATION...
            local want=$1; shift
            gated "$@" || return 1
            local got; got=$(verdicts "$TMP/check.out")
            [ "$got" = "$want" ] || { echo "check verdicts: $got, want $want"; cat "$TMP/check.out"; return 1; }
            committed_as_decided "$TMP/check.out" || return 1
            save c > "$TMP/c1"
            same_files "$TMP/c0" "$TMP/c1"
        }
        check "$FAMILY: check from tables read ahead: unchanged" prefetched "filter=unchanged nat=unchanged"
        check "$FAMILY: check from tables read ahead: a change after the read is seen" \
            prefetched "filter=unchanged nat=differed" X c "$IPT" -t nat -A KUBE-MARK-MASQ -j RETURN
    }
    engine_checks raw
    engine_checks libiptc

    # --- no leaks in the shim ----------------------------------------------------------------------
    # valgrind 3.19 cannot read the DWARF 5 Swift emits, so it runs a copy without debug info. Only
    # definite leaks count: the Swift runtime's metadata caches show up as "possibly lost". Every path of the shim:
    # writes (raw read + plan + iptc_init + commit, and through libiptc's cache as reader), the steady-state
    # decision, ensured rules, read-ahead snapshots, both listers, the program digests, cleanup.
    if [ "$VALGRIND" = 0 ]; then
        skip "$FAMILY: valgrind of the shim (12 runs)" "VALGRIND=0"
    elif ! command -v valgrind > /dev/null; then
        bad "$FAMILY: valgrind is not installed (make deps installs it; VALGRIND=0 skips on purpose)"
    else
        newns v
        objcopy --strip-debug "$HARNESS" "$TMP/harness-nodebug"
        touch "$TMP/vgate"
        vg() { X v valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=3 \
            --log-file="$TMP/valgrind.$FAMILY.$1" "$TMP/harness-nodebug" "${@:2}" --family "$FAMILY" 2> /dev/null; }
        n=0
        for run in "apply --backend libiptc" "apply --backend libiptc --variant 2" \
            "apply --backend libiptc --variant 2" "apply --backend libiptc --variant 2 --no-check" \
            "apply --backend libiptc --variant 2 --ensured" "apply --backend libiptc --ensured --prefetch-gate $TMP/vgate" \
            "libiptc-reader apply --backend libiptc --variant 2 --ensured" "libiptc-reader apply --backend libiptc --ensured" \
            "list --table nat" "libiptc-reader list --table filter" "drift" "cleanup"; do
            n=$((n + 1))
            name=$n.${run// /_}; name=${name//\//_}
            if [ "${run%% *}" = libiptc-reader ]; then
                KNAT_TEST_READ_VIA_LIBIPTC=1 vg "$name" ${run#libiptc-reader } > /dev/null
            else
                vg "$name" $run > /dev/null
            fi
            if [ $? = 0 ]; then
                ok "$FAMILY: valgrind $run: no memory errors, no definite leaks"
            else
                bad "$FAMILY: valgrind $run reported errors"
                grep -E 'definitely|Invalid|uninitialised' -A8 "$TMP/valgrind.$FAMILY.$name" | head -40
            fi
        done
        delns v
    fi
done

# --- host-mode detection (family-independent) -----------------------------------------------------------
# Each case in its own namespace: nft rules written with iptables-nft stay in that namespace's nf_tables.
detect_in() { X "$1" timeout 20 "$HARNESS" detect; }
mode_is() { # mode_is NS MODE [REASON-SUBSTRING]
    local d; d=$(detect_in "$1"); echo "     detect: $d"
    [ "${d%%$'\t'*}" = "$2" ] && { [ -z "${3:-}" ] || echo "$d" | grep -qF -- "$3"; }
}
newns d1
X d1 iptables-nft -t mangle -N KUBE-IPTABLES-HINT
X d1 iptables-legacy -t nat -N KUBE-SERVICES
X d1 iptables-legacy -t nat -A KUBE-SERVICES -j RETURN
check "detect: kubelet's hint chain in nft mangle wins over legacy rules" mode_is d1 nft "nft mangle"
delns d1
newns d2
X d2 iptables-legacy -t mangle -N KUBE-KUBELET-CANARY
check "detect: kubelet's canary chain in legacy mangle means legacy" mode_is d2 legacy "legacy mangle"
delns d2
newns d3
for i in 1 2 3; do X d3 iptables-legacy -t filter -A INPUT -p tcp --dport $((1000 + i)) -j ACCEPT; done
X d3 iptables-nft -t filter -A INPUT -p tcp --dport 22 -j ACCEPT
check "detect: legacy and nft both hold rules, the larger side (legacy 3 vs nft 1) wins" mode_is d3 legacy "3 legacy rules vs 1 nft rules"
X d3 iptables-nft -t filter -A INPUT -p tcp --dport 23 -j ACCEPT
X d3 iptables-nft -t filter -A INPUT -p tcp --dport 24 -j ACCEPT
check "detect: a tie (3 vs 3) goes to nft as the wrapper does" mode_is d3 nft "3 nft rules vs 3 legacy rules"
delns d3
newns d4
X d4 iptables-legacy -t nat -N KUBE-SERVICES
tables_before=$(X d4 cat /proc/net/ip_tables_names /proc/net/ip6_tables_names | sort | tr '\n' ' ')
check "detect: only legacy entries, nft empty: legacy, from the table sizes" mode_is d4 legacy "nft holds no rules"
tables_after=$(X d4 cat /proc/net/ip_tables_names /proc/net/ip6_tables_names | sort | tr '\n' ' ')
check "detect: no table instantiated by looking ($tables_after)" [ "$tables_before" = "$tables_after" ]
delns d4
newns d5
X d5 ip link set lo down
check "detect: completes with the loopback down (no hang)" detect_in d5
delns d5

summary netfilter-backend
[ "$FAIL" = 0 ]
