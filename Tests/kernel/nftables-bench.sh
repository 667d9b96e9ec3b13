#!/usr/bin/env bash
# Timings of the libnftnl backend against iptables-nft-restore, in throwaway network namespaces only (root).
#
#   Tests/kernel/nftables-bench.sh BINDIR [SERVICES...]      (default: 1000 10000)
#
# BINDIR holds release builds of kube-natd, nft-harness and natd-bench (swift build -c release). Per size
# (SERVICES x 3 endpoints, Tools/SyntheticCluster through `natd-bench generate`), one line per measurement:
#   full load into empty tables: nft-harness (one backend apply: encode + read + decide + one batch) and
#     kube-natd --once --backend libnftnl (the whole process), vs iptables-nft-restore --noflush of the
#     dry-run text (measured once: minutes at 10k);
#   steady state: the same object again (no read, no batch), a new process (the stamp), a new process
#     dumping every rule (--read);
#   one endpoint changed: the same object (the daemon's case) and a new process (--once's), messages and ms.
# Medians of RUNS (default 3) where a measurement is cheap enough to repeat. SKIP_RESTORE=1 leaves out the
# iptables-nft-restore load (about five minutes at 10k Services here).
set -uo pipefail
BINDIR=$(readlink -f "${1:?usage: nftables-bench.sh BINDIR [SERVICES...]}")
shift
SIZES=("${@:-1000 10000}")
[ ${#SIZES[@]} -eq 1 ] && read -ra SIZES <<< "${SIZES[0]}"
RUNS=${RUNS:-3}
H=$BINDIR/nft-harness
[ -x "$H" ] && [ -x "$BINDIR/kube-natd" ] && [ -x "$BINDIR/natd-bench" ] || { echo "missing binaries in $BINDIR"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 2; }
TMP=$(mktemp -d /tmp/knft-bench.XXXXXX)
NAMESPACES=()
cleanup() { for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM
newns() { local ns="knft-b-$$-$1"; ip netns add "$ns" || exit 2; NAMESPACES+=("$ns"); ip netns exec "$ns" ip link set lo up; }
delns() { ip netns del "knft-b-$$-$1" 2>/dev/null; }
X() { local ns="knft-b-$$-$1"; shift; timeout 1200 ip netns exec "$ns" "$@"; }
ms() { echo "scale=1; ($2 - $1) / 1000000" | bc; }                 # ms START_NS END_NS
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { grep -o "$1=[^ :]*" | head -1 | cut -d= -f2 | tr -d 's'; }  # field NAME < report (seconds, no unit)
line() { printf '%-7s %-62s %s\n' "$1" "$2" "$3"; }

for n in "${SIZES[@]}"; do
    G="$TMP/g$n"; mkdir -p "$G"
    "$BINDIR/natd-bench" generate "$n" "$G/v1" "$G/v2" > /dev/null || { echo "generate $n failed"; exit 1; }
    C="$G/kube-proxy-config.yaml"
    newns x
    X x "$BINDIR/kube-natd" --config "$C" --source "$G/v1" --dry-run > "$G/dry.txt" 2>/dev/null
    rules=$(grep -c '^-A' "$G/dry.txt"); chains=$(grep -c '^:' "$G/dry.txt")
    echo "== $n Services x 3 endpoints: $rules rules, $chains chains"
    delns x

    # full load
    loads=(); onces=(); msgs=""
    for r in $(seq 1 "$RUNS"); do
        newns l
        out=$(X l "$H" apply --config "$C" --source "$G/v1")
        loads+=("$(echo "$out" | grep '^apply 1' | grep -o '[0-9.]*s readKernel' | awk '{print $1 * 1000}')")
        msgs=$(echo "$out" | field messages)
        delns l
        newns o
        t0=$(date +%s%N); X o "$BINDIR/kube-natd" --once --backend libnftnl --config "$C" --source "$G/v1" > /dev/null 2>&1; t1=$(date +%s%N)
        onces+=("$(ms "$t0" "$t1")")
        delns o
    done
    line "$n" "full load, backend apply ($msgs messages, 1 batch)" "$(printf '%s\n' "${loads[@]}" | median) ms"
    line "$n" "full load, kube-natd --once --backend libnftnl (whole process)" "$(printf '%s\n' "${onces[@]}" | median) ms"
    if [ -z "${SKIP_RESTORE:-}" ]; then
        newns r
        t0=$(date +%s%N); X r iptables-nft-restore --noflush < "$G/dry.txt"; t1=$(date +%s%N)
        line "$n" "full load, iptables-nft-restore --noflush of the dry run (once)" "$(ms "$t0" "$t1") ms"
        delns r
    fi

    # steady state and one endpoint
    newns s
    X s "$H" apply --config "$C" --source "$G/v1" > /dev/null
    same=(); stamp=(); full=(); eps=(); epm=""; cold=(); coldm=""; oncesame=()
    for r in $(seq 1 "$RUNS"); do
        # v2 first: the stamp (current for v1) does not match, so the object reads the kernel and has a model,
        # as a daemon has after its first change
        out=$(X s "$H" apply --config "$C" --source "$G/v2" --then "$G/v1" --then same --then "$G/v2" --then "$G/v1")
        same+=("$(echo "$out" | grep '^apply 3' | grep -o '[0-9.]*s readKernel' | awk '{print $1 * 1000}')")
        eps+=("$(echo "$out" | grep '^apply 4' | grep -o '[0-9.]*s readKernel' | awk '{print $1 * 1000}')")
        epm=$(echo "$out" | grep '^apply 4' | field messages)
        out=$(X s "$H" apply --config "$C" --source "$G/v1")
        stamp+=("$(echo "$out" | grep '^apply 1' | grep -o '[0-9.]*s readKernel' | awk '{print $1 * 1000}')")
        out=$(X s "$H" apply --config "$C" --source "$G/v1" --read)
        full+=("$(echo "$out" | grep '^apply 1' | grep -o '[0-9.]*s readKernel' | awk '{print $1 * 1000}')")
        out=$(X s "$H" apply --config "$C" --source "$G/v2")
        cold+=("$(echo "$out" | grep '^apply 1' | grep -o '[0-9.]*s readKernel' | awk '{print $1 * 1000}')")
        coldm=$(echo "$out" | field messages)
        X s "$H" apply --config "$C" --source "$G/v1" > /dev/null
        t0=$(date +%s%N); X s "$BINDIR/kube-natd" --once --backend libnftnl --config "$C" --source "$G/v1" > /dev/null 2>&1; t1=$(date +%s%N)
        oncesame+=("$(ms "$t0" "$t1")")
    done
    line "$n" "steady state, same object (no read, no batch)" "$(printf '%s\n' "${same[@]}" | median) ms"
    line "$n" "steady state, new process, stamp current (no batch)" "$(printf '%s\n' "${stamp[@]}" | median) ms"
    line "$n" "steady state, new process, every rule read (--read, no batch)" "$(printf '%s\n' "${full[@]}" | median) ms"
    line "$n" "steady state, kube-natd --once (whole process, stamp)" "$(printf '%s\n' "${oncesame[@]}" | median) ms"
    line "$n" "one endpoint, same object ($epm messages)" "$(printf '%s\n' "${eps[@]}" | median) ms"
    line "$n" "one endpoint, new process (kernel read, $coldm messages)" "$(printf '%s\n' "${cold[@]}" | median) ms"
    delns s
done
