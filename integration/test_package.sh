#!/usr/bin/env bash
# The Debian package (scripts/package): lintian reports no error; installed
# into a fresh Debian 12 root (debootstrap --variant=minbase with the
# package's Depends, cached as a tarball under /var/cache/swarmnet-test, so
# only the first run downloads) every file is in place and every program
# runs there (its libraries come from the Depends alone); the shipped
# configuration file is accepted by swarmnetd; `dpkg -r` leaves the state
# directory and the conffile (Debian keeps configuration until purge), and
# `dpkg -P` leaves nothing of the package. systemd-analyze verify finds
# nothing to say about the units.
set -euo pipefail
case "${1:-}" in
  -h | --help)
    echo "usage: integration/test_package.sh   (root; build first; the first run downloads a Debian root, ~3 min)"
    exit 0
    ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
require_root
for tool in lintian debootstrap dpkg-deb cpack chroot; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps)"
done
watchdog 540
BUILD_DIR="$(dirname "$SWARMNET_BIN_DIR")"
CACHE="${SWARMNET_DEBOOTSTRAP_CACHE:-/var/cache/swarmnet-test}"

WORK=$(mktemp -d /tmp/swarmnet-package.XXXXXX)
on_exit "rm -rf '$WORK'"
NS="swpkg$$"
on_exit "ip netns del $NS 2>/dev/null || true"

say "scripts/package"
DEB=$("$SWARMNET_SOURCE_DIR/scripts/package" --build-dir "$BUILD_DIR" --output "$WORK" 2>"$WORK/package.log" | tail -n 1) ||
  { cat "$WORK/package.log" >&2; die "scripts/package failed"; }
VERSION=$(dpkg-deb -f "$DEB" Version)
check "the package is named swarmnet_VERSION_amd64.deb" test "$(basename "$DEB")" == "swarmnet_${VERSION}_amd64.deb"

say "lintian"
lintian --fail-on error "$DEB" >"$WORK/lintian.txt" 2>&1 && lintian_ok=1 || lintian_ok=0
grep -E '^[EW]: ' "$WORK/lintian.txt" | sed 's/^/    /' || true
check "lintian reports no error" test "$lintian_ok" == 1

say "a fresh Debian 12 root with the package's dependencies"
# Depends without versions, first of each alternative: what debootstrap takes.
# A virtual name (libspdlog1.10-fmt9) becomes the installed package that
# provides it: this host built the package, so it has every library.
real_package() {
  if dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q ' installed$'; then echo "$1"; return; fi
  dpkg-query -W -f='${Package}\t${Provides}\n' | awk -F'\t' -v d="$1" \
    '{ n = split($2, p, /, */); for (i = 1; i <= n; i++) { sub(/ .*/, "", p[i]); if (p[i] == d) { print $1; exit } } }'
}
deps=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep . |
  while read -r d; do real_package "$d"; done | sort -u | paste -sd, -)
[[ -n "$deps" ]] || die "no dependency of the package found installed here"
TAR="$CACHE/bookworm-minbase-$(printf '%s' "$deps" | sha256sum | cut -c1-12).tar"
if [[ ! -f "$TAR" ]]; then
  # The mirror apt uses here.
  mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -n 1 | tr -d ' ' || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
  info "not cached: debootstrap from $mirror (once)"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include="$deps" bookworm "$WORK/bootstrap" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  tar -C "$WORK/bootstrap" -cf "$TAR.tmp.$$" . && mv "$TAR.tmp.$$" "$TAR"
  rm -rf "$WORK/bootstrap"
  # Roots for other dependency lists are of no more use.
  find "$CACHE" -maxdepth 1 -name 'bookworm-minbase-*.tar' ! -path "$TAR" -delete
fi
ROOT="$WORK/root"
mkdir "$ROOT"
tar -C "$ROOT" -xf "$TAR"
info "root from $TAR"
in_root() { chroot "$ROOT" "$@"; }
# Every path of the root but dpkg's own records and logs.
tree() {
  (cd "$ROOT" && find . \( -path ./var/lib/dpkg -o -path ./var/log -o -path ./var/cache -o -path ./tmp \) -prune -o -print | sort)
}
tree >"$WORK/before"

say "dpkg -i"
cp "$DEB" "$ROOT/tmp/"
in_root dpkg -i "/tmp/$(basename "$DEB")" >"$WORK/dpkg-i.log" 2>&1 || { cat "$WORK/dpkg-i.log" >&2; die "dpkg -i failed"; }
FILES=(/usr/sbin/swarmnetd /usr/sbin/swarmnet-docker /usr/bin/swarmnetctl /usr/lib/cni/swarmnet
  /usr/lib/cni/swarmnet-ipam /lib/systemd/system/swarmnetd.service /lib/systemd/system/swarmnet-docker.service
  /etc/swarmnet/swarmnetd.conf /usr/share/man/man8/swarmnetd.8.gz /usr/share/man/man8/swarmnet-docker.8.gz
  /usr/share/man/man1/swarmnetctl.1.gz /usr/share/doc/swarmnet/copyright /usr/share/doc/swarmnet/changelog.gz)
for f in "${FILES[@]}"; do check "$f is in place" test -f "$ROOT$f"; done
check "/etc/swarmnet/swarmnetd.conf is a conffile" grep -qx /etc/swarmnet/swarmnetd.conf "$ROOT/var/lib/dpkg/info/swarmnet.conffiles"
check "nothing under /opt or /usr/local" bash -c '! dpkg-deb -c "$1" | grep -E "\./(opt|usr/local)/"' _ "$DEB"
check "swarmnetd --version runs in the root" test "$(in_root swarmnetd --version)" == "swarmnetd $VERSION"
check "swarmnetctl --version runs in the root" test "$(in_root swarmnetctl --version)" == "swarmnetctl $VERSION"
check "swarmnet-docker --version runs in the root" test "$(in_root swarmnet-docker --version)" == "swarmnet-docker $VERSION"
cni_version() { in_root env CNI_COMMAND=VERSION /usr/lib/cni/"$1" </dev/null | grep -q '"supportedVersions"'; }
check "the CNI plugin swarmnet answers VERSION in the root" cni_version swarmnet
check "the CNI plugin swarmnet-ipam answers VERSION in the root" cni_version swarmnet-ipam
for p in swarmnetd swarmnet-docker swarmnetctl; do
  check "$p --help runs" bash -c 'chroot "$1" "$2" --help | grep -q Usage' _ "$ROOT" "$p"
done

unit_has() { grep -qx "$2" "$ROOT/lib/systemd/system/$1"; }
check "swarmnetd.service reads the configuration file" unit_has swarmnetd.service 'ExecStart=/usr/sbin/swarmnetd --config /etc/swarmnet/swarmnetd.conf'
check "swarmnetd.service starts before containerd and dockerd" unit_has swarmnetd.service 'Before=containerd.service docker.service'
check "swarmnet-docker.service starts before dockerd" unit_has swarmnet-docker.service 'Before=docker.service'
for u in swarmnetd.service swarmnet-docker.service; do
  check "$u restarts on failure" unit_has "$u" 'Restart=on-failure'
  check "$u raises LimitNOFILE" unit_has "$u" 'LimitNOFILE=65536'
done
if command -v systemd-analyze >/dev/null; then
  # systemd reads the units as they are, but for the programs' paths (in the
  # root); anything it says (an unknown key, a bad value) is a finding. The
  # control: the same with a misspelt key, which it must report.
  mkdir "$WORK/units"
  verify() {
    local u out
    for u in "$@"; do
      sed "s#^ExecStart=/usr/sbin/#ExecStart=$ROOT/usr/sbin/#" "$ROOT/lib/systemd/system/$u" >"$WORK/units/$u"
    done
    (cd "$WORK/units" && systemd-analyze verify --man=no "$@" 2>&1)
  }
  out=$(verify swarmnetd.service swarmnet-docker.service)
  check "systemd-analyze verify finds nothing to say about the units${out:+: $out}" test -z "$out"
  sed -i 's/^Restart=/Restartt=/' "$ROOT/lib/systemd/system/swarmnetd.service"
  check "control: systemd-analyze verify reports a misspelt key" bash -c '[[ -n "$1" ]]' _ "$(verify swarmnetd.service)"
  sed -i 's/^Restartt=/Restart=/' "$ROOT/lib/systemd/system/swarmnetd.service"
fi

say "the shipped configuration file is read by swarmnetd"
# A last line it must refuse: reaching it means every line above was read.
# In a namespace of its own, so a daemon that started anyway would touch
# nothing of this host's network.
cp "$ROOT/etc/swarmnet/swarmnetd.conf" "$ROOT/tmp/check.conf"
echo "log-level = warn" >>"$ROOT/tmp/check.conf"
echo "no-such-setting = 1" >>"$ROOT/tmp/check.conf"
last=$(wc -l <"$ROOT/tmp/check.conf")
ip netns add "$NS"
rc=0
out=$(timeout 10 ip netns exec "$NS" chroot "$ROOT" swarmnetd --config /tmp/check.conf 2>&1) || rc=$?
info "$out"
check "swarmnetd refuses the bad last line by file and line (exit 2)" \
  test "$rc:${out%%unknown*}" == "2:swarmnetd: /tmp/check.conf:$last: "
# And every example the file shows (its "# key = value" lines) names a
# setting swarmnetd knows: uncommented, the bad last line is still the first
# one refused (the names are checked as the file is read, the values after).
sed -n 's/^# \([a-z-]* = .*\)$/\1/p' "$ROOT/etc/swarmnet/swarmnetd.conf" >"$ROOT/tmp/check.conf"
examples=$(wc -l <"$ROOT/tmp/check.conf")
echo "no-such-setting = 1" >>"$ROOT/tmp/check.conf"
last=$(wc -l <"$ROOT/tmp/check.conf")
rc=0
out=$(timeout 10 ip netns exec "$NS" chroot "$ROOT" swarmnetd --config /tmp/check.conf 2>&1) || rc=$?
info "$out"
check "the $examples example settings of the shipped file are all known to swarmnetd" \
  test "$examples" -gt 10 -a "$rc:${out%%unknown*}" == "2:swarmnetd: /tmp/check.conf:$last: "
rm -f "$ROOT/tmp/check.conf"

# The state the daemon and the Docker driver make (mode 0700, as swarmnetd
# and the unit's StateDirectory do).
install -d -m 0700 "$ROOT/var/lib/swarmnet/docker"
echo '#swarmnet-journal' >"$ROOT/var/lib/swarmnet/journal"
tree >"$WORK/installed"
check "control: the root's listing sees what the package installed" grep -qx ./usr/sbin/swarmnetd "$WORK/installed"

say "dpkg -r"
in_root dpkg -r swarmnet >"$WORK/dpkg-r.log" 2>&1 || { cat "$WORK/dpkg-r.log" >&2; die "dpkg -r failed"; }
tree >"$WORK/removed"
left=$(comm -13 "$WORK/before" "$WORK/removed" | paste -sd' ' -)
info "left after dpkg -r: $left"
check "dpkg -r leaves only the state directory and the conffile" test "$left" == \
  "./etc/swarmnet ./etc/swarmnet/swarmnetd.conf ./var/lib/swarmnet ./var/lib/swarmnet/docker ./var/lib/swarmnet/journal"

say "dpkg -P"
in_root dpkg -P swarmnet >"$WORK/dpkg-p.log" 2>&1 || { cat "$WORK/dpkg-p.log" >&2; die "dpkg -P failed"; }
tree >"$WORK/purged"
left=$(comm -3 "$WORK/before" "$WORK/purged" | paste -sd' ' -)
check "dpkg -P leaves nothing (left: ${left:-nothing})" test -z "$left"

n=$(failures)
((n == 0)) || die "$n check(s) failed"
say "package: all checks passed"
