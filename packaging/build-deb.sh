#!/bin/bash
# packaging/build-deb.sh BINARY OUTDIR: builds OUTDIR/kube-natd_VERSION_ARCH.deb from a release binary
# (`swift build -c release --static-swift-stdlib`: the Swift runtime inside, only the distribution's libraries
# outside) with dpkg-deb, no debhelper. Prints the path of the package. `make deb` runs it.
#
# Contents: /usr/sbin/kube-natd (stripped), /lib/systemd/system/kube-natd.service (Config/kube-natd.service with
# the binary's path changed to /usr/sbin), /etc/kube-natd/config.yaml (a conffile), and in /usr/share/doc/kube-natd
# the copyright, the changelog, README.md and the DaemonSet manifest; a man page; lintian overrides (see the file). Depends is computed by dpkg-shlibdeps.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: packaging/build-deb.sh BINARY OUTDIR}
OUT=${2:?usage: packaging/build-deb.sh BINARY OUTDIR}

# One version: the one `kube-natd --version` prints; the Debian changelog must agree.
VERSION=$(sed -n 's/^let kubeNatdVersion = "\(.*\)"$/\1/p' Sources/kube-natd/Version.swift)
[ -n "$VERSION" ] || { echo "build-deb: no kubeNatdVersion in Sources/kube-natd/Version.swift" >&2; exit 1; }
CHANGELOG_VERSION=$(sed -n '1s/^kube-natd (\([^)]*\)).*/\1/p' packaging/debian/changelog)
if [ "$CHANGELOG_VERSION" != "$VERSION" ]; then
    echo "build-deb: packaging/debian/changelog is at $CHANGELOG_VERSION, kube-natd at $VERSION" >&2
    exit 1
fi
if [ "$("$BIN" --version)" != "kube-natd $VERSION" ]; then
    echo "build-deb: $BIN --version says '$("$BIN" --version)', not 'kube-natd $VERSION' (a stale build?)" >&2
    exit 1
fi
ARCH=$(dpkg --print-architecture)

work=$(mktemp -d /tmp/knat-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
umask 022
install -d "$root/DEBIAN" "$root/usr/sbin" "$root/lib/systemd/system" "$root/etc/kube-natd" \
    "$root/usr/share/doc/kube-natd" "$root/usr/share/man/man8" "$root/usr/share/lintian/overrides"

install -m 0755 "$BIN" "$root/usr/sbin/kube-natd"
# As dh_strip does for a package without a -dbgsym companion.
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/sbin/kube-natd"

# The unit as written for a hand install, with the packaged binary's path.
grep -q '^ExecStart=/usr/local/bin/kube-natd ' Config/kube-natd.service \
    || { echo "build-deb: Config/kube-natd.service has no ExecStart=/usr/local/bin/kube-natd" >&2; exit 1; }
sed 's|/usr/local/bin/kube-natd|/usr/sbin/kube-natd|g' Config/kube-natd.service \
    > "$root/lib/systemd/system/kube-natd.service"
chmod 0644 "$root/lib/systemd/system/kube-natd.service"

install -m 0644 packaging/config.yaml "$root/etc/kube-natd/config.yaml"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/kube-natd/copyright"
gzip -9n < packaging/debian/changelog > "$root/usr/share/doc/kube-natd/changelog.gz"
gzip -9n < README.md > "$root/usr/share/doc/kube-natd/README.md.gz"
install -m 0644 Config/kube-natd-daemonset.yaml "$root/usr/share/doc/kube-natd/kube-natd-daemonset.yaml"
sed "s/@VERSION@/$VERSION/" packaging/kube-natd.8 | gzip -9n > "$root/usr/share/man/man8/kube-natd.8.gz"
chmod 0644 "$root/usr/share/doc/kube-natd/"*.gz "$root/usr/share/man/man8/kube-natd.8.gz"
install -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/kube-natd"

install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done

# dpkg-shlibdeps reads debian/control of a source tree: give it a minimal one.
mkdir -p "$work/src/debian"
printf 'Source: kube-natd\n\nPackage: kube-natd\nArchitecture: any\n' > "$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O "$root/usr/sbin/kube-natd")
depends=${shlibs#shlibs:Depends=}
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
    packaging/debian/control > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$OUT"
deb=$OUT/kube-natd_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
