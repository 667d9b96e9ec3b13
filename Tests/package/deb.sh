#!/bin/bash
# Tests/package/deb.sh BINARY [REFERENCE_BINARY]: builds the Debian package from BINARY (a release build linked with
# --static-swift-stdlib, as `make deb` makes it) with packaging/build-deb.sh, then checks it: its control fields
# (Depends names the distribution's netfilter libraries), its conffiles and files, lintian (no E: line, exit 0),
# the package unpacked into a scratch root (`dpkg -x`: nothing is installed on this machine) with its binary run
# from there on this host's libraries (--version, a dry run of Config/example-cluster.yaml, --validate of the
# packaged config), the packaged unit against Config/kube-natd.service, and the maintainer scripts run with
# recording stand-ins for deb-systemd-helper, deb-systemd-invoke and systemctl. With REFERENCE_BINARY (the debug
# build), the installed binary's dry run must equal the reference's byte for byte.
# Needs dpkg-dev, lintian, binutils (`make deb-deps`). Prints "package: N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/../.." || exit 2
BIN=$(realpath "${1:?usage: Tests/package/deb.sh BINARY [REFERENCE_BINARY]}")
REF=${2:-}
source Tests/kernel/lib/checks.sh
SKIP=0
skip() { SKIP=$((SKIP + 1)); echo "skip $*"; }
work=$(mktemp -d /tmp/knat-debtest.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

VERSION=$(sed -n 's/^let kubeNatdVersion = "\(.*\)"$/\1/p' Sources/kube-natd/Version.swift)
ARCH=$(dpkg --print-architecture)
EX=Config/example-cluster.yaml

for tool in dpkg-deb dpkg-shlibdeps lintian strip; do
    command -v "$tool" >/dev/null || { echo "deb.sh: $tool missing (make deb-deps)"; exit 2; }
done

DEB=""
build() {
    DEB=$(bash packaging/build-deb.sh "$BIN" "$work/out" 2>"$work/build.err") || { cat "$work/build.err"; return 1; }
    [ "$DEB" = "$work/out/kube-natd_${VERSION}_${ARCH}.deb" ] && [ -s "$DEB" ] || { echo "built '$DEB'"; return 1; }
}
check "packaging/build-deb.sh builds kube-natd_${VERSION}_${ARCH}.deb" build
if [ -z "$DEB" ] || [ ! -s "$DEB" ]; then
    echo "package: $PASS passed, $((FAIL + 1)) failed, $SKIP skipped (no package to check)"
    exit 1
fi

field() { dpkg-deb --field "$DEB" "$1"; }
field_is() { local got; got=$(field "$1"); [ "$got" = "$2" ] || { echo "$1: '$got', expected '$2'"; return 1; }; }
check "Package is kube-natd" field_is Package kube-natd
check "Version is kube-natd's own ($VERSION)" field_is Version "$VERSION"
check "Architecture is this host's ($ARCH)" field_is Architecture "$ARCH"
depends_names() {
    local depends missing=""
    depends=$(field Depends)
    for lib in libc6 libip4tc2 libip6tc2 'libnftnl[0-9]+' libmnl0 libnetfilter-conntrack3; do
        grep -qE "(^|, )$lib( |,|$)" <<<"$depends" || missing="$missing $lib"
    done
    [ -z "$missing" ] || { echo "Depends '$depends' lacks:$missing"; return 1; }
}
check "Depends names libc6, libip4tc2, libip6tc2, libnftnl, libmnl0, libnetfilter-conntrack3" depends_names
no_swift_depends() { ! field Depends | grep -i swift; }
check "Depends names no Swift runtime" no_swift_depends

conffiles() {
    local got
    got=$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)
    [ "$got" = "/etc/kube-natd/config.yaml" ] || { echo "conffiles: '$got'"; return 1; }
}
check "the only conffile is /etc/kube-natd/config.yaml" conffiles

dpkg-deb --contents "$DEB" > "$work/contents"
has_file() { # MODE PATH: a root-owned file of that mode
    grep -qE "^$1 root/root +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" "$work/contents" \
        || { echo "no $1 root/root ./$2 in:"; cat "$work/contents"; return 1; }
}
check "binary /usr/sbin/kube-natd (0755)" has_file -rwxr-xr-x usr/sbin/kube-natd
check "unit /lib/systemd/system/kube-natd.service" has_file -rw-r--r-- lib/systemd/system/kube-natd.service
check "config /etc/kube-natd/config.yaml" has_file -rw-r--r-- etc/kube-natd/config.yaml
check "copyright" has_file -rw-r--r-- usr/share/doc/kube-natd/copyright
check "changelog" has_file -rw-r--r-- usr/share/doc/kube-natd/changelog.gz
check "man page" has_file -rw-r--r-- usr/share/man/man8/kube-natd.8.gz
check "DaemonSet manifest among the docs" has_file -rw-r--r-- usr/share/doc/kube-natd/kube-natd-daemonset.yaml

lintian_clean() {
    local out rc
    out=$(lintian "$DEB" 2>&1); rc=$?
    echo "$out" | grep -E '^(E|W): ' | sed 's/^/  lintian: /'
    if grep -q '^E: ' <<<"$out" || [ "$rc" -ne 0 ]; then echo "lintian exit $rc"; return 1; fi
}
check "lintian: no errors" lintian_clean

# Unpacked into a scratch root; the binary runs from there on this host's libraries.
root=$work/root
dpkg-deb -x "$DEB" "$root" && dpkg-deb -e "$DEB" "$work/control"
KN=$root/usr/sbin/kube-natd
static_runtime() {
    local libs
    libs=$(ldd "$KN") || { echo "ldd failed"; return 1; }
    if grep -q 'not found' <<<"$libs"; then echo "$libs"; return 1; fi
    if grep -qi 'swift\|Foundation\|dispatch' <<<"$libs"; then echo "Swift runtime linked dynamically: $libs"; return 1; fi
}
check "the installed binary finds all its libraries, none of them Swift's" static_runtime
version() {
    local got
    got=$("$KN" --version) || { echo "exit $?"; return 1; }
    [ "$got" = "kube-natd $VERSION" ] || { echo "--version: '$got'"; return 1; }
}
check "installed kube-natd --version prints kube-natd $VERSION" version

dry_run() {
    "$KN" --dry-run --source "$EX" > "$work/dry.out" 2> "$work/dry.err" || { echo "exit $?"; cat "$work/dry.err"; return 1; }
    local services slices
    services=$(grep -c '^kind: Service$' "$EX")
    slices=$(grep -c '^kind: EndpointSlice$' "$EX")
    grep -q "dry run: $services Services, $slices EndpointSlices" "$work/dry.err" \
        || { echo "expected $services Services, $slices EndpointSlices in: $(cat "$work/dry.err")"; return 1; }
    # One *filter and one *nat per family the dry run programs (every family this kernel takes, IPv4 first).
    local families
    families=$(grep -c '^# IPv[46]$' "$work/dry.out")
    [ "$(head -1 "$work/dry.out")" = "# IPv4" ] && [ "$families" -ge 1 ] \
        && [ "$(grep -c '^\*filter$' "$work/dry.out")" = "$families" ] && [ "$(grep -c '^\*nat$' "$work/dry.out")" = "$families" ] \
        && [ "$(grep -c '^COMMIT$' "$work/dry.out")" = $((2 * families)) ] \
        || { echo "not one *filter and one *nat table per family"; return 1; }
    # default/web (Config/example-cluster.yaml's first Service): 10.96.0.10:80/TCP to its service chain.
    grep -qE '^-A KUBE-SERVICES .*-d 10\.96\.0\.10(/32)? .*--dport 80 -j KUBE-SVC-[A-Z0-9]{16}$' "$work/dry.out" \
        || { echo "no KUBE-SERVICES jump for default/web 10.96.0.10:80"; return 1; }
}
check "installed kube-natd --dry-run --source $EX prints both tables with default/web's rule" dry_run
if [ -n "$REF" ]; then
    same_as_reference() {
        "$REF" --dry-run --source "$EX" > "$work/ref.out" 2>/dev/null || { echo "reference exit $?"; return 1; }
        diff -u "$work/ref.out" "$work/dry.out" | head -20
        cmp -s "$work/ref.out" "$work/dry.out"
    }
    check "the installed binary's dry run equals $(basename "$REF")'s (the source tree's build)" same_as_reference
else
    skip "dry run compared with the source tree's build (no REFERENCE_BINARY given)"
fi
packaged_config() { "$KN" --validate --config "$root/etc/kube-natd/config.yaml"; }
check "the packaged /etc/kube-natd/config.yaml passes --validate" packaged_config

unit() {
    local unit=$root/lib/systemd/system/kube-natd.service
    grep -qx 'ExecStart=/usr/sbin/kube-natd --config /etc/kube-natd/config.yaml' "$unit" \
        || { echo "ExecStart: $(grep ExecStart= "$unit")"; return 1; }
    # The hand-install unit of Config/, with only the binary's path changed.
    diff <(sed 's|/usr/sbin/kube-natd|/usr/local/bin/kube-natd|g' "$unit") Config/kube-natd.service
}
check "the packaged unit is Config/kube-natd.service starting /usr/sbin/kube-natd with /etc/kube-natd/config.yaml" unit

# systemd reads the unit from the unpacked root: the binary ExecStart names is the packaged one, no key is unknown.
# (The scratch root has no /bin/kill and no sysinit.target; those complaints are about the root, not the unit.)
unit_verifies() {
    local out
    command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing"; return 1; }
    out=$(systemd-analyze verify --root="$root" "$root/lib/systemd/system/kube-natd.service" 2>&1)
    if grep -v -e 'Unit sysinit.target not found' -e 'Command /bin/kill is not executable' <<<"$out" | grep .; then
        return 1
    fi
}
check "systemd-analyze verify (in the unpacked root) finds the unit's binary and no bad key" unit_verifies

# Maintainer scripts, with the systemd helpers replaced by stand-ins that record their arguments.
stubs=$work/stubs
mkdir -p "$stubs"
for tool in deb-systemd-helper deb-systemd-invoke systemctl; do
    printf '#!/bin/sh\necho "%s $*" >> "%s"\n' "$tool" "$work/calls" > "$stubs/$tool"
    chmod +x "$stubs/$tool"
done
run_script() { # SCRIPT ARGS...: its calls in $work/calls
    : > "$work/calls"
    PATH=$stubs:$PATH sh -e "$work/control/$1" "${@:2}"
}
scripts_parse() { for s in postinst prerm postrm; do sh -n "$work/control/$s" || return 1; done; }
check "maintainer scripts parse (sh -n)" scripts_parse
first_install() {
    run_script postinst configure || { echo "postinst exit $?"; return 1; }
    grep -qx 'deb-systemd-helper update-state kube-natd.service' "$work/calls" \
        || { echo "no update-state in: $(cat "$work/calls")"; return 1; }
    if grep -E 'enable|start' "$work/calls"; then echo "a first install must not enable or start kube-natd"; return 1; fi
}
check "postinst on a first install registers the unit, neither enables nor starts it" first_install
purge() {
    run_script postrm purge || { echo "postrm exit $?"; return 1; }
    grep -qx 'deb-systemd-helper purge kube-natd.service' "$work/calls" \
        || { echo "no purge in: $(cat "$work/calls")"; return 1; }
}
check "postrm purge forgets the unit's state" purge
prerm_quiet() {
    run_script prerm upgrade 0.1.0 || { echo "prerm exit $?"; return 1; }
    [ ! -s "$work/calls" ] || { echo "prerm upgrade called: $(cat "$work/calls")"; return 1; }
}
check "prerm on an upgrade leaves the service running" prerm_quiet

echo "package: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
