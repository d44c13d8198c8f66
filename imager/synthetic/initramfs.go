package synthetic

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"

	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// Lines the synthetic init prints on the console: BootMarker first, then "key: value" report lines (see BootReport),
// then PoweroffMarker just before it powers the machine off. Boot tests wait for these.
const (
	BootMarker     = "=== EDGEFACTORY-SYNTHETIC-TALOS: booted ==="
	PoweroffMarker = "=== EDGEFACTORY-SYNTHETIC-TALOS: poweroff ==="
)

// initScript is /init. It reports what a real Talos would have been given (command line, firmware, the extensions
// the imager appended: /extensions.yaml, /*.sqsh, /usr/lib/firmware, early microcode) and powers off.
// /dev/console only reaches the preferred console (the last console= argument; Talos puts tty0 there), so the
// report is also copied to the serial ports, where QEMU tests read it.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin
export PATH=/bin

list() { xargs 2>/dev/null; }

report() {
	echo
	echo "` + BootMarker + `"
	echo "talos-version: $(cat /etc/talos-version 2>/dev/null)"
	echo "arch: $(uname -m)"
	echo "kernel: $(uname -r)"
	echo "cmdline: $(cat /proc/cmdline)"
	sb=disabled
	if [ -d /sys/firmware/efi ]; then
		echo "firmware: UEFI"
		mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
		for v in /sys/firmware/efi/efivars/SecureBoot-*; do
			[ -f "$v" ] || continue
			[ "$(dd if="$v" bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')" = 1 ] && sb=enabled
		done
	else
		echo "firmware: BIOS"
	fi
	echo "secureboot: $sb"
	echo "extensions: $(sed -n 's/^ *name: *//p' /extensions.yaml 2>/dev/null | list)"
	echo "extension-images: $(cd / && ls *.sqsh 2>/dev/null | list)"
	echo "firmware-files: $(cd /usr/lib/firmware 2>/dev/null && find . -type f | sed 's|^\./||' | sort | list)"
	echo "microcode: $(ls /kernel/x86/microcode 2>/dev/null | list)"
	echo "` + PoweroffMarker + `"
}

report >/tmp/report 2>&1
cat /tmp/report
preferred=$(cat /sys/class/tty/console/active 2>/dev/null | awk '{print $NF}')
for tty in ttyS0 ttyAMA0; do
	[ "$tty" = "$preferred" ] && continue
	[ -c "/dev/$tty" ] && cat /tmp/report >"/dev/$tty" 2>/dev/null
done
sync
poweroff -f
echo o >/proc/sysrq-trigger
while :; do sleep 60; done
`

// Initramfs returns the synthetic initramfs.xz for one architecture: two concatenated xz (CRC32) newc cpio
// archives, as the kernel accepts them. The first holds busybox (of that architecture) and /init, and is the same
// for every version; the second holds /etc/talos-version. The kernel's xz decoder needs CRC32 (or no) checks.
func Initramfs(busybox []byte, version string) ([]byte, error) {
	base, err := initramfsBase(busybox)
	if err != nil {
		return nil, err
	}

	tail, err := xzCpio([]cpio.Record{
		cpio.Directory("etc", 0o755),
		cpio.StaticFile("etc/talos-version", version+"\n", 0o644),
	})
	if err != nil {
		return nil, fmt.Errorf("initramfs version segment: %w", err)
	}

	return append(bytes.Clone(base), tail...), nil
}

// initramfsBases memoizes the busybox segment per busybox content: xz in pure Go takes about a second per MB.
var initramfsBases sync.Map // [sha256.Size]byte → *baseResult

type baseResult struct {
	once sync.Once
	data []byte
	err  error
}

func initramfsBase(busybox []byte) ([]byte, error) {
	v, _ := initramfsBases.LoadOrStore(sha256.Sum256(busybox), &baseResult{})
	r := v.(*baseResult) //nolint:forcetypeassert // only *baseResult is stored

	r.once.Do(func() {
		r.data, r.err = xzCpio([]cpio.Record{
			cpio.Directory("bin", 0o755),
			cpio.Directory("dev", 0o755),
			cpio.CharDev("dev/console", 0o600, 5, 1),
			cpio.CharDev("dev/null", 0o666, 1, 3),
			cpio.Directory("etc", 0o755),
			cpio.Directory("proc", 0o755),
			cpio.Directory("sys", 0o755),
			cpio.Directory("tmp", 0o1777),
			cpio.Directory("usr", 0o755),
			cpio.StaticRecord(busybox, cpio.Info{Name: "bin/busybox", Mode: cpio.S_IFREG | 0o755}),
			cpio.Symlink("bin/sh", "busybox"),
			cpio.StaticFile("init", initScript, 0o755),
		})
		if r.err != nil {
			r.err = fmt.Errorf("initramfs busybox segment: %w", r.err)
		}
	})

	return r.data, r.err
}

// xzCpio writes records as a newc cpio archive (with trailer) compressed by xz with CRC32 checks.
func xzCpio(recs []cpio.Record) ([]byte, error) {
	var raw bytes.Buffer

	w := cpio.Newc.Writer(&raw)

	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return nil, fmt.Errorf("write cpio: %w", err)
	}

	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("write cpio trailer: %w", err)
	}

	var out bytes.Buffer

	xw, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}.NewWriter(&out)
	if err != nil {
		return nil, fmt.Errorf("xz writer: %w", err)
	}

	if _, err = xw.Write(raw.Bytes()); err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}

	if err = xw.Close(); err != nil {
		return nil, fmt.Errorf("xz close: %w", err)
	}

	return out.Bytes(), nil
}

// BootReport is what the synthetic init printed about a boot.
type BootReport struct {
	Version         string   // "v1.13.0"
	Arch            string   // uname -m: "x86_64", "aarch64"
	Kernel          string   // uname -r
	Cmdline         string   // /proc/cmdline
	Firmware        string   // "BIOS" or "UEFI"
	SecureBoot      bool     // the SecureBoot EFI variable says enabled
	Extensions      []string // extension names from /extensions.yaml (Talos adds "schematic")
	ExtensionImages []string // /*.sqsh
	FirmwareFiles   []string // files under /usr/lib/firmware, relative
	Microcode       []string // /kernel/x86/microcode (early microcode, e.g. AuthenticAMD.bin)
	PoweredOff      bool     // PoweroffMarker was seen after the report
}

// ParseBootLog finds the synthetic init's report in console output (serial logs, with or without \r). ok is false
// when BootMarker never appears.
func ParseBootLog(console string) (r BootReport, ok bool) {
	_, after, found := strings.Cut(strings.ReplaceAll(console, "\r", ""), BootMarker)
	if !found {
		return r, false
	}

	for line := range strings.SplitSeq(after, "\n") {
		line = strings.TrimSpace(line)
		if line == PoweroffMarker {
			r.PoweredOff = true

			break
		}

		key, val, _ := strings.Cut(line, ":")
		val = strings.TrimSpace(val)

		switch key {
		case "talos-version":
			r.Version = val
		case "arch":
			r.Arch = val
		case "kernel":
			r.Kernel = val
		case "cmdline":
			r.Cmdline = val
		case "firmware":
			r.Firmware = val
		case "secureboot":
			r.SecureBoot = val == "enabled"
		case "extensions":
			r.Extensions = strings.Fields(val)
		case "extension-images":
			r.ExtensionImages = strings.Fields(val)
		case "firmware-files":
			r.FirmwareFiles = strings.Fields(val)
		case "microcode":
			r.Microcode = strings.Fields(val)
		}
	}

	return r, true
}
