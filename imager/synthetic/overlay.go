package synthetic

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.yaml.in/yaml/v4"
)

// The synthetic release's one overlay, laid out as real Talos overlay images are: profiles/<name>.yaml (merged
// into the imager profile), artifacts/<arch>/... (board boot files) and installers/<name>, an executable the Talos
// imager runs ON THE BUILD HOST (it extracts the overlay for the host's architecture) and that the installer image
// carries as overlay/installers/default. It speaks the overlay installer protocol of
// github.com/siderolabs/talos/pkg/machinery/overlay: argv[1] is "get-options" (stdin: extra options YAML; stdout:
// Options YAML: name, kernelArgs, partitionOptions.offset) or "install" (stdin: InstallOptions YAML: installDisk,
// mountPrefix, artifactsPath, extraOptions). A failure is a non-zero exit with the message on stderr.
const (
	OverlayName       = "rpi_generic"
	OverlayRepository = "sbc-raspberrypi"
	OverlayTag        = "v0.1.7"
)

// OverlayKernelArgs are the kernel arguments the overlay installer answers to get-options.
var OverlayKernelArgs = []string{"console=tty0", "console=ttyAMA0,115200", "sysctl.kernel.kexec_load_disabled=1", "talos.dashboard.disabled=1"}

// overlayInstaller is a portable sh script so it runs on any build host, whatever the overlay image's architecture.
// install copies the firmware and u-boot into <mountPrefix>/boot/EFI (the EFI partition's content) and writes
// config.txt, appending extraOptions.configTxtAppend (single line) when given.
const overlayInstaller = `#!/bin/sh
# Synthetic ` + OverlayName + ` overlay installer (edgefactory): Talos overlay installer protocol in POSIX sh.
set -eu

# value KEY FILE: the first scalar "KEY: value" (at any indentation: extraOptions are nested), unquoted.
value() { sed -n "s/^[[:space:]]*$1: *//p" "$2" | head -n 1 | sed -e "s/^[\"']//" -e "s/[\"']\$//"; }

case "${1:-}" in
get-options)
	cat >/dev/null
	cat <<'EOF'
name: ` + OverlayName + `
kernelArgs:
  - console=tty0
  - console=ttyAMA0,115200
  - sysctl.kernel.kexec_load_disabled=1
  - talos.dashboard.disabled=1
EOF
	;;
install)
	opts=$(mktemp)
	trap 'rm -f "$opts"' EXIT
	cat >"$opts"
	artifacts=$(value artifactsPath "$opts")
	prefix=$(value mountPrefix "$opts")
	append=$(value configTxtAppend "$opts")
	if [ -z "$artifacts" ] || [ -z "$prefix" ]; then
		echo "install: artifactsPath and mountPrefix are required" >&2
		exit 1
	fi
	efi="$prefix/boot/EFI"
	mkdir -p "$efi"
	cp -R "$artifacts/arm64/firmware/boot/." "$efi/"
	cp "$artifacts/arm64/u-boot/` + OverlayName + `/u-boot.bin" "$efi/u-boot.bin"
	{
		printf 'arm_64bit=1\nenable_uart=1\nkernel=u-boot.bin\n'
		[ -z "$append" ] || printf '%s\n' "$append"
	} >"$efi/config.txt"
	;;
*)
	echo "unknown command: ${1:-}" >&2
	exit 1
	;;
esac
`

// overlayProfile is profiles/rpi_generic.yaml: a Talos imager profile fragment (the board's disk image defaults).
const overlayProfile = `arch: arm64
platform: metal
secureboot: false
output:
  kind: image
  outFormat: .xz
  imageOptions:
    diskSize: 1306525696
    diskFormat: raw
`

// overlayEntries are the files of the overlay image (the same for every platform: the installer is a script).
func overlayEntries() []entry {
	return []entry{
		text("profiles/"+OverlayName+".yaml", 0o644, overlayProfile),
		text("artifacts/arm64/firmware/boot/bootcode.bin", 0o644, "synthetic Raspberry Pi bootcode\n"),
		text("artifacts/arm64/firmware/boot/start4.elf", 0o644, "synthetic Raspberry Pi GPU firmware\n"),
		text("artifacts/arm64/firmware/boot/fixup4.dat", 0o644, "synthetic Raspberry Pi fixup\n"),
		text("artifacts/arm64/firmware/boot/bcm2711-rpi-4-b.dtb", 0o644, "synthetic device tree blob\n"),
		text("artifacts/arm64/u-boot/"+OverlayName+"/u-boot.bin", 0o644, "synthetic u-boot for "+OverlayName+"\n"),
		text("installers/"+OverlayName, 0o755, overlayInstaller),
	}
}

// OverlayInstallerScript returns the overlay installer script (for tests that run it on the host).
func OverlayInstallerScript() string { return overlayInstaller }

func overlayImage() (v1.ImageIndex, error) {
	l, err := layer(overlayEntries())
	if err != nil {
		return nil, fmt.Errorf("overlay %s: %w", OverlayName, err)
	}

	return sameForAll(v1.Config{Labels: map[string]string{"org.opencontainers.image.title": OverlayRepository}}, l)
}

// overlayEntry is one item of overlays.yaml.
type overlayEntry struct {
	Name   string `yaml:"name"`
	Image  string `yaml:"image"`
	Digest string `yaml:"digest"`
}

// overlaysCatalog builds the <ns>/overlays:<v> image holding overlays.yaml.
func overlaysCatalog(entries []overlayEntry) (v1.ImageIndex, error) {
	doc, err := yaml.Marshal(map[string][]overlayEntry{"overlays": entries})
	if err != nil {
		return nil, fmt.Errorf("overlays.yaml: %w", err)
	}

	l, err := layer([]entry{file("overlays.yaml", 0o644, doc)})
	if err != nil {
		return nil, fmt.Errorf("overlays catalog: %w", err)
	}

	return sameForAll(v1.Config{}, l)
}
