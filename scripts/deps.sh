#!/bin/bash
# deps.sh: install the host tools Edge Factory runs and fetch the files its synthetic Talos release is built from.
#
# Run as root (by `make deps`). Idempotent, and quick when everything is already in place.
#
# 1. Host packages (apt-get install, only the missing ones; `apt-get update` only when something must be installed).
# 2. Debian packages fetched WITHOUT installing them and without touching the system's apt sources: a private apt
#    configuration per suite under $BUILD/.deps/apt (removed on success), unpacked with dpkg-deb -x. Results:
#      $BUILD/parts/<arch>/vmlinuz           bookworm linux-image-6.1.*-<arch> (arm64: the raw EFI-stub Image, un-gzipped)
#      $BUILD/parts/<arch>/busybox           bookworm busybox-static of that arch
#      $BUILD/parts/<arch>/systemd-boot.efi  trixie systemd-boot-efi (systemd 257)
#      $BUILD/parts/<arch>/systemd-stub.efi  trixie systemd-boot-efi UKI stub
#      $BUILD/parts/VERSIONS                 "<suite> <arch> <binary package> <version> <source package>" per package
#      $BUILD/hosttools/squashfs-tools/      trixie squashfs-tools 4.6 package root (usr/bin/mksquashfs)
#      $BUILD/parts/ipxe/                    trixie ipxe (all architectures in one package): undionly.kpxe (BIOS),
#                                            ipxe.efi (x86-64 UEFI), ipxe-arm64.efi: what network boot hands out
# 3. Go tools built from the Go module proxy with `go install` (outside the repository's go.mod; several minutes the
#    first time) into $BUILD/tools: the cosign CLI for the signature tests ($COSIGN_VERSION) and golangci-lint for
#    `make lint` ($GOLANGCI_LINT_VERSION). Skipped, with a warning, when Go is not installed.
#
# Environment: EDGEFACTORY_BUILD_DIR (default <repo>/build), EDGEFACTORY_DEBIAN_MIRROR (default
# http://deb.debian.org/debian), EDGEFACTORY_DEPS_REFRESH=1 to fetch the Debian packages again.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${EDGEFACTORY_BUILD_DIR:-$REPO/build}
MIRROR=${EDGEFACTORY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PARTS=$BUILD/parts
HOSTTOOLS=$BUILD/hosttools
WORK=$BUILD/.deps
TOOLS=$BUILD/tools
COSIGN_VERSION=v2.6.5
GOLANGCI_LINT_VERSION=v2.15.0

HOST_PACKAGES=(
	# the Talos imager's tools
	xorriso grub-common grub-pc-bin grub-efi-amd64-bin mtools dosfstools xfsprogs squashfs-tools cpio xz-utils
	zstd pigz qemu-utils kmod busybox-static
	# reproducible disk images: the mkfs.xfs adapter runs xfsprogs 6.1 with its clock stopped at SOURCE_DATE_EPOCH
	libfaketime
	# boot tests; dnsmasq-base is a site's plain DHCP server in the network-boot tests (the binary only, no service)
	qemu-system-x86 ovmf ipxe-qemu dnsmasq-base
	# registry tooling for tests; the benchmarks' baseline web server and load generator
	skopeo nginx-light wrk
	# the netns suite: namespaces, and counting every connection that leaves an air-gapped cluster
	iproute2 nftables curl
	# the web UI suite drives headless Chromium (chromedp)
	chromium
	# this script's own needs on a minimal system
	debian-archive-keyring gzip
)

log() { echo "deps: $*"; }
die() {
	echo "deps: error: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (make deps does)"

installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'; }

# Services must not start during the install (nginx is only a benchmark baseline, started by the benchmarks with
# their own configuration). A policy-rc.d answering 101 tells invoke-rc.d to leave services alone.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
block_services() {
	if [ ! -e "$POLICY" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$POLICY"
		chmod 755 "$POLICY"
		OWN_POLICY=1
	fi
}
unblock_services() {
	if [ "$OWN_POLICY" = 1 ]; then
		rm -f "$POLICY"
		OWN_POLICY=0
	fi
}

# Leave nginx neither running nor started at boot, whatever policy-rc.d said.
quiet_nginx() {
	if [ -d /run/systemd/system ]; then
		systemctl disable --now nginx >/dev/null 2>&1 || true
	else
		systemctl disable nginx >/dev/null 2>&1 || update-rc.d nginx disable >/dev/null 2>&1 || true
		if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
			nginx -s stop 2>/dev/null || true
		fi
	fi
	log "nginx service disabled and stopped (benchmarks start their own nginx)"
}

install_host_packages() {
	local missing=() p
	for p in "${HOST_PACKAGES[@]}"; do
		installed "$p" || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		log "host packages: all ${#HOST_PACKAGES[@]} present"
		return
	fi
	log "host packages: installing ${missing[*]}"
	trap unblock_services EXIT
	block_services
	export DEBIAN_FRONTEND=noninteractive
	# A broken third-party source must not stop the install of Debian's own packages.
	apt-get update -q || log "warning: apt-get update reported errors; installing anyway"
	apt-get install -y -q --no-install-recommends "${missing[@]}"
	unblock_services
	trap - EXIT
	if printf '%s\n' "${missing[@]}" | grep -qx nginx-light; then
		quiet_nginx
	fi
}

# apt_private SUITE ARGS...: apt-get with a private configuration for SUITE: own sources list (main of the mirror,
# amd64 and arm64), lists, cache and an empty dpkg status, so the system's apt state is neither read nor changed.
apt_opts() {
	local root=$WORK/apt/$1
	echo "-o Dir::Etc::SourceList=$root/sources.list -o Dir::Etc::SourceParts=$root/empty.d" \
		"-o Dir::Etc::PreferencesParts=$root/empty.d -o Dir::Etc::Preferences=$root/preferences" \
		"-o Dir::State::Lists=$root/lists -o Dir::State::status=$root/status -o Dir::Cache=$root/cache" \
		"-o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64" \
		"-o Acquire::Languages=none -o Debug::NoLocking=1 -o APT::Sandbox::User=root"
}
apt_private() {
	local suite=$1
	shift
	# shellcheck disable=SC2046 # the options are single words without spaces
	"$@" $(apt_opts "$suite")
}

prepare_suite() {
	local suite=$1 root=$WORK/apt/$1
	mkdir -p "$root/lists/partial" "$root/cache/archives/partial" "$root/empty.d"
	: >"$root/status"
	: >"$root/preferences"
	echo "deb [arch=amd64,arm64 signed-by=$KEYRING] $MIRROR $suite main" >"$root/sources.list"
	log "apt index for $suite (private configuration in $root)"
	apt_private "$suite" apt-get update -q >"$root/update.log" 2>&1 || {
		cat "$root/update.log" >&2
		die "apt-get update for $suite failed"
	}
}

# field SUITE PKG[:ARCH] FIELD: one field of the candidate version's record.
field() {
	apt_private "$1" apt-cache show --no-all-versions "$2" | awk -v f="$3:" '$1 == f { sub(/^[^:]*: */, ""); print; exit }'
}

# kernel_package SUITE ARCH: the versioned linux-image package the linux-image-ARCH metapackage depends on.
kernel_package() {
	local dep
	dep=$(field "$1" "linux-image-$2:$2" Depends | tr ',' '\n' | grep -o "linux-image-[0-9][^ ]*-$2" | head -1)
	[ -n "$dep" ] || die "cannot resolve linux-image-$2 in $1"
	echo "$dep"
}

# fetch SUITE PKG ARCH DEST [MEMBER...]: download PKG:ARCH and unpack it (only the MEMBER globs, e.g.
# './boot/vmlinuz-*', when given: a kernel package unpacks to ~400 MB of modules) into DEST; records it in VERSIONS.
fetch() {
	local suite=$1 pkg=$2 arch=$3 dest=$4 deb dir=$WORK/debs/$1
	shift 4
	mkdir -p "$dir"
	log "download $suite $pkg:$arch"
	local spec=$pkg:$arch
	[ "$arch" = all ] && spec=$pkg
	(cd "$dir" && apt_private "$suite" apt-get download -q "$spec" >/dev/null) || die "download $spec from $suite"
	deb=$(ls -t "$dir/${pkg}_"*"_$arch.deb" | head -1)
	rm -rf "$dest"
	mkdir -p "$dest"
	if [ $# -gt 0 ]; then
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" --wildcards "$@"
	else
		dpkg-deb -x "$deb" "$dest"
	fi
	local src
	src=$(dpkg-deb -f "$deb" Source | awk '{print $1}')
	echo "$suite $arch $pkg $(dpkg-deb -f "$deb" Version) ${src:-$pkg}" >>"${VERSIONS_FILE:-$WORK/VERSIONS.new}"
}

# one FILE...: the single path among FILE... that exists.
one() {
	local f
	for f in "$@"; do
		[ -e "$f" ] && {
			echo "$f"
			return
		}
	done
	die "none of: $*"
}

magic_is() { [ "$(head -c "${#2}" "$1")" = "$2" ]; }

# fetch_ipxe: the iPXE binaries network boot hands out, from trixie's ipxe package (bookworm's has no arm64 build),
# into $PARTS/ipxe under the names the proxyDHCP answers with. Separate from the other parts, so a machine that has
# those already fetches only this.
IPXE_FILES=(undionly.kpxe ipxe.efi ipxe-arm64.efi)
fetch_ipxe() {
	local x=$WORK/x/ipxe out=$WORK/out/ipxe
	rm -rf "$x" "$out"
	mkdir -p "$out"
	: >"$WORK/VERSIONS.ipxe"
	[ -d "$WORK/apt/trixie" ] || prepare_suite trixie
	VERSIONS_FILE=$WORK/VERSIONS.ipxe fetch trixie ipxe all "$x"
	cp "$x/usr/lib/ipxe/undionly.kpxe" "$out/undionly.kpxe"
	cp "$x/usr/lib/ipxe/ipxe-amd64.efi" "$out/ipxe.efi"
	cp "$x/usr/lib/ipxe/ipxe-arm64.efi" "$out/ipxe-arm64.efi"
	magic_is "$out/ipxe.efi" MZ || die "ipxe.efi is not a PE file"
	magic_is "$out/ipxe-arm64.efi" MZ || die "ipxe-arm64.efi is not a PE file"
	mv "$WORK/VERSIONS.ipxe" "$out/VERSION"
	rm -rf "$PARTS/ipxe"
	mkdir -p "$PARTS"
	mv "$out" "$PARTS/ipxe"
}

ipxe_complete() {
	local f
	for f in "${IPXE_FILES[@]}" VERSION; do
		[ -s "$PARTS/ipxe/$f" ] || return 1
	done
}

fetch_parts() {
	local arch kpkg x efi sfx vmlinuz
	rm -rf "$WORK/x" "$WORK/out"
	mkdir -p "$WORK"
	: >"$WORK/VERSIONS.new"
	prepare_suite bookworm
	prepare_suite trixie
	for arch in amd64 arm64; do
		x=$WORK/x/$arch
		mkdir -p "$WORK/out/$arch"
		kpkg=$(kernel_package bookworm "$arch")
		fetch bookworm "$kpkg" "$arch" "$x/kernel" './boot/vmlinuz-*'
		rm -f "$WORK/debs/bookworm/${kpkg}_"*.deb # ~70 MB each, not needed again
		vmlinuz=$(one "$x"/kernel/boot/vmlinuz-*)
		if magic_is "$vmlinuz" $'\x1f\x8b'; then
			# arm64 ships a gzip-compressed Image; UKIs need the raw EFI-stub Image.
			gzip -dc "$vmlinuz" >"$WORK/out/$arch/vmlinuz"
		else
			cp "$vmlinuz" "$WORK/out/$arch/vmlinuz"
		fi
		magic_is "$WORK/out/$arch/vmlinuz" MZ || die "$arch vmlinuz is not an EFI-stub (PE) kernel"

		fetch bookworm busybox-static "$arch" "$x/busybox"
		cp "$(one "$x"/busybox/bin/busybox "$x"/busybox/usr/bin/busybox)" "$WORK/out/$arch/busybox"

		fetch trixie systemd-boot-efi "$arch" "$x/sdboot"
		efi=$x/sdboot/usr/lib/systemd/boot/efi
		case $arch in
		amd64) sfx=x64 ;;
		arm64) sfx=aa64 ;;
		esac
		cp "$efi/systemd-boot$sfx.efi" "$WORK/out/$arch/systemd-boot.efi"
		cp "$efi/linux$sfx.efi.stub" "$WORK/out/$arch/systemd-stub.efi"
		magic_is "$WORK/out/$arch/systemd-boot.efi" MZ || die "$arch systemd-boot.efi is not a PE file"
		magic_is "$WORK/out/$arch/systemd-stub.efi" MZ || die "$arch systemd-stub.efi is not a PE file"
	done

	fetch trixie squashfs-tools amd64 "$WORK/out/squashfs-tools"
	local v
	v=$("$WORK/out/squashfs-tools/usr/bin/mksquashfs" -version 2>&1 | head -1) || die "trixie mksquashfs does not run here: $v"
	case $v in
	*" 4.6"* | *" 4.7"* | *" 4.8"*) log "mksquashfs: $v" ;;
	*) die "unexpected mksquashfs version: $v" ;;
	esac

	# Move into place; VERSIONS last, so its presence means the parts are complete.
	mkdir -p "$PARTS" "$HOSTTOOLS"
	rm -f "$PARTS/VERSIONS"
	for arch in amd64 arm64; do
		rm -rf "$PARTS/$arch"
		mv "$WORK/out/$arch" "$PARTS/$arch"
	done
	rm -rf "$HOSTTOOLS/squashfs-tools"
	mv "$WORK/out/squashfs-tools" "$HOSTTOOLS/squashfs-tools"
	mv "$WORK/VERSIONS.new" "$PARTS/VERSIONS"
	rm -rf "$WORK" # apt indexes and .debs (~90 MB): a refresh fetches them again anyway
}

parts_complete() {
	local arch f
	[ -s "$PARTS/VERSIONS" ] || return 1
	for arch in amd64 arm64; do
		for f in vmlinuz busybox systemd-boot.efi systemd-stub.efi; do
			[ -s "$PARTS/$arch/$f" ] || return 1
		done
	done
	"$HOSTTOOLS/squashfs-tools/usr/bin/mksquashfs" -version >/dev/null 2>&1
}

# go_tool NAME MODULE VERSION VERSIONCMD: builds a Go tool from the Go module proxy into $TOOLS unless the version
# VERSIONCMD prints there already contains VERSION. From $TOOLS, so the repository's go.mod plays no part; -mod=mod in
# case GOFLAGS says otherwise.
go_tool() {
	local name=$1 module=$2 version=$3 versioncmd=$4
	if [ -x "$TOOLS/$name" ] && "$TOOLS/$name" $versioncmd 2>&1 | grep -qF "${version#v}"; then
		log "$name $version present: $TOOLS/$name"
		return
	fi
	if ! command -v go >/dev/null 2>&1; then
		log "warning: go is not installed; not building $name $version (what needs it skips, saying so)"
		return
	fi
	mkdir -p "$TOOLS"
	log "building $name $version from the Go module proxy into $TOOLS (takes a few minutes the first time)"
	(cd "$TOOLS" && GOBIN=$TOOLS GOFLAGS=-mod=mod go install -trimpath -ldflags='-s -w' "$module@$version") ||
		die "go install $module@$version failed"
}

# The cosign CLI for the signature tests; golangci-lint for `make lint` (configuration: .golangci.yml).
install_go_tools() {
	go_tool cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION" version
	go_tool golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION" version
}

install_host_packages
install_go_tools
if [ "${EDGEFACTORY_DEPS_REFRESH:-0}" != 1 ] && parts_complete; then
	log "parts present in $PARTS (EDGEFACTORY_DEPS_REFRESH=1 fetches them again)"
else
	fetch_parts
	log "parts ready in $PARTS:"
	sed 's/^/deps:   /' "$PARTS/VERSIONS"
	du -sh "$PARTS" "$HOSTTOOLS/squashfs-tools" | sed 's/^/deps:   /'
fi
if [ "${EDGEFACTORY_DEPS_REFRESH:-0}" != 1 ] && ipxe_complete; then
	log "iPXE binaries present in $PARTS/ipxe"
else
	mkdir -p "$WORK"
	fetch_ipxe
	rm -rf "$WORK"
	log "iPXE binaries ready in $PARTS/ipxe: $(cat "$PARTS/ipxe/VERSION")"
fi
