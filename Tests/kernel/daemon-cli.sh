#!/usr/bin/env bash
# Kernel test of the daemon's command-line contracts, in one throwaway network namespace (run as root):
#
#   Tests/kernel/daemon-cli.sh path/to/kube-natd
#
# 1. an edit of the --config file on disk makes the daemon exit (status 1, reason logged), as kube-proxy does;
#    its OOM score is the configured oomScoreAdj while it runs;
# 2. --bind-address-hard-fail: a healthz port already taken ends the daemon (non-zero);
# 3. without it: the daemon runs on, logs the failure, and binds once the port is free (retry every 5 s);
# 4. --init-only sets the namespace's conntrack sysctls and exits 0.
# Nothing is created outside the namespace; everything goes on exit, Ctrl-C or failure.
set -uo pipefail
BIN=$(readlink -f "${1:-.build/debug/kube-natd}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SUITE=daemon-cli
[ -x "$BIN" ] || { echo "$SUITE: $BIN not found (swift build first)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$SUITE: needs root (network namespaces)"; exit 2; }

# shellcheck source=lib/topology.sh
source "$HERE/lib/topology.sh"
# shellcheck source=lib/checks.sh
. "$HERE/lib/checks.sh"
SKIP=0
skip() { SKIP=$((SKIP + 1)); echo "skip $*"; }
TMP=$(mktemp -d /tmp/knat-dcli.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null; done
    topo_teardown
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TOPO_PREFIX="knat-dc-$$-"
topo_add_ns node || exit 2
NS=$(topo_ns node)
N() { timeout 20 ip netns exec "$NS" "$@"; }
# until_true TENTHS COMMAND...: retry COMMAND every 0.1 s for at most TENTHS tries.
until_true() {
    local n=$1 i; shift
    for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}
alive() { kill -0 "$1" 2> /dev/null; }
dead() { ! kill -0 "$1" 2> /dev/null; }
logged() { grep -qsF -- "$2" "$1"; }

mkdir "$TMP/manifests"
cp "$ROOT/Config/example-cluster.yaml" "$TMP/manifests/"
# config HARDFAIL: the example config with the servers on loopback ports of the namespace.
config() {
    sed -e 's/^healthzBindAddress:.*/healthzBindAddress: 127.0.0.1:10256/' \
        -e 's/^metricsBindAddress:.*/metricsBindAddress: 127.0.0.1:10249/' \
        -e '/^bindAddressHardFail:/d' "$ROOT/Config/kube-proxy-config.yaml"
    echo "bindAddressHardFail: $1"
}
# daemon LOG ARGS...: the daemon in the namespace, in the background; its pid (timeout's, whose status is the
# daemon's) in DPID.
daemon() {
    local log=$1; shift
    ip netns exec "$NS" timeout -k 2 60 "$BIN" --source "$TMP/manifests" --backend libiptc "$@" > "$log" 2>&1 &
    DPID=$!
    PIDS+=("$DPID")
}
# The kube-natd process itself (timeout's child), for /proc.
natd_pid() { pgrep -P "$1" -x kube-natd; }

# --- 1. an edited config file ends the daemon ----------------------------------------------------------------
# oomScoreAdj 321: raising the score needs no privilege (lowering it, as the default -999 does, needs
# CAP_SYS_RESOURCE, which a container's root may lack; kube-natd then logs it and runs on, as kube-proxy).
config false | sed 's/^oomScoreAdj:.*/oomScoreAdj: 321/' > "$TMP/config.yaml"
grep -q '^oomScoreAdj: 321' "$TMP/config.yaml" || bad "edit: test config lacks oomScoreAdj: 321"
daemon "$TMP/edit.log" --config "$TMP/config.yaml"
if until_true 200 logged "$TMP/edit.log" "first sync done; ready"; then
    ok "edit: daemon started and synced"
    pid=$(natd_pid "$DPID")
    oom=$(cat "/proc/$pid/oom_score_adj" 2> /dev/null)
    [ "$oom" = 321 ] && ok "edit: the daemon's oom_score_adj is the configured 321" ||
        { bad "edit: oom_score_adj is '$oom' (pid $pid), want 321"; grep -i oom "$TMP/edit.log"; }
    # Precondition: the daemon is still running before the edit (else the exit below proves nothing).
    alive "$DPID" && ok "edit: daemon still running before the edit" || bad "edit: daemon gone before the edit"
    sed -i 's/^\(\s*minSyncPeriod:\).*/\1 2s/' "$TMP/config.yaml"
    grep -q 'minSyncPeriod: 2s' "$TMP/config.yaml" || bad "edit: the edit did not change the file"
    if until_true 100 dead "$DPID"; then
        wait "$DPID"; rc=$?
        [ "$rc" = 1 ] && ok "edit: daemon exited with status 1 within 10 s" || bad "edit: exit status $rc, want 1"
        logged "$TMP/edit.log" "content of the configuration file $TMP/config.yaml was updated" &&
            ok "edit: reason logged" || { bad "edit: reason not logged"; tail -5 "$TMP/edit.log"; }
    else
        bad "edit: daemon still running 10 s after the config file changed"; tail -5 "$TMP/edit.log"
    fi
else
    bad "edit: daemon did not become ready"; tail -20 "$TMP/edit.log"
fi

# --- 2./3. the healthz port is taken -------------------------------------------------------------------------
# A listener holding 127.0.0.1:10256 in the namespace until its file is removed (bounded: 60 s).
hold_port() {
    rm -f "$TMP/held"
    ip netns exec "$NS" timeout 60 python3 -c '
import os, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 10256)); s.listen(1)
open(sys.argv[1], "w").close()
while os.path.exists(sys.argv[1]): time.sleep(0.05)
' "$TMP/held" &
    HOLDER=$!
    PIDS+=("$HOLDER")
    until_true 50 test -e "$TMP/held"
}

hold_port || bad "hard fail: could not occupy 127.0.0.1:10256"
config true > "$TMP/hard.yaml"
daemon "$TMP/hard.log" --config "$TMP/hard.yaml"
if until_true 150 dead "$DPID"; then
    wait "$DPID"; rc=$?
    [ "$rc" != 0 ] && ok "hard fail: daemon exited (status $rc) when healthz could not bind" ||
        bad "hard fail: exit status 0"
    logged "$TMP/hard.log" "cannot serve healthz on 127.0.0.1:10256" && ok "hard fail: bind failure logged" ||
        { bad "hard fail: bind failure not logged"; tail -5 "$TMP/hard.log"; }
else
    bad "hard fail: daemon still running 15 s after healthz could not bind"; tail -5 "$TMP/hard.log"
fi

config false > "$TMP/soft.yaml"
daemon "$TMP/soft.log" --config "$TMP/soft.yaml"
if until_true 200 logged "$TMP/soft.log" "first sync done; ready"; then
    logged "$TMP/soft.log" "cannot serve healthz on 127.0.0.1:10256" && logged "$TMP/soft.log" "trying again every 5" &&
        ok "soft fail: bind failure logged, daemon runs on and syncs" || { bad "soft fail: no retry logged"; tail -5 "$TMP/soft.log"; }
    N curl -s --max-time 2 -o /dev/null http://127.0.0.1:10249/metrics && ok "soft fail: metrics server serves" ||
        bad "soft fail: metrics server does not answer"
    rm -f "$TMP/held"  # the holder exits and frees the port
    until_true 50 dead "$HOLDER" || bad "soft fail: port holder did not exit"
    if until_true 120 logged "$TMP/soft.log" "serving healthz on 127.0.0.1:10256 after retrying"; then
        ok "soft fail: healthz bound by a retry once the port was free"
        code=$(N curl -s --max-time 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:10256/livez)
        [ "$code" = 200 ] && ok "soft fail: /livez answers 200 after the retry" || bad "soft fail: /livez answered '$code'"
    else
        bad "soft fail: healthz not bound 12 s after the port was freed"; tail -5 "$TMP/soft.log"
    fi
    kill -TERM "$(natd_pid "$DPID")" 2> /dev/null
    until_true 100 dead "$DPID" || bad "soft fail: daemon did not stop on SIGTERM"
else
    bad "soft fail: daemon did not become ready with healthz's port taken"; tail -20 "$TMP/soft.log"
fi

# --- 4. --init-only ------------------------------------------------------------------------------------------
# In a namespace of its own: the daemons above left their rules in the first one.
topo_add_ns init || exit 2
NI=$(topo_ns init)
I() { timeout 20 ip netns exec "$NI" "$@"; }
if I test -e /proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal; then
    I sysctl -qw net.netfilter.nf_conntrack_tcp_be_liberal=0 > /dev/null
    I "$BIN" --init-only --conntrack-tcp-be-liberal --conntrack-udp-timeout=33s > "$TMP/init.log" 2>&1; rc=$?
    [ "$rc" = 0 ] && ok "--init-only exits 0" || { bad "--init-only exit $rc"; tail -5 "$TMP/init.log"; }
    [ "$(I cat /proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal)" = 1 ] &&
        ok "--init-only --conntrack-tcp-be-liberal set nf_conntrack_tcp_be_liberal in the namespace" ||
        bad "--init-only did not set nf_conntrack_tcp_be_liberal"
    [ "$(I cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout)" = 33 ] &&
        ok "--init-only --conntrack-udp-timeout=33s set nf_conntrack_udp_timeout" ||
        bad "--init-only did not set nf_conntrack_udp_timeout"
    logged "$TMP/init.log" "oom_score_adj" && ok "--init-only applied the OOM score" || bad "--init-only: no OOM score line"
    if saved=$(I iptables-legacy-save 2>&1) && saved6=$(I iptables-nft-save 2>&1); then
        echo "$saved $saved6" | grep -q KUBE- && bad "--init-only wrote rules" || ok "--init-only wrote no rules (legacy, nft)"
    else
        bad "--init-only: cannot read the namespace's tables to check" 
    fi
else
    skip "--init-only: no nf_conntrack sysctls in this kernel's namespaces"
fi

echo "$SUITE: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
