package synthetic

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

func unxz(t *testing.T, data []byte) []byte {
	t.Helper()

	r, err := xz.NewReader(bytes.NewReader(data)) // reads concatenated streams
	require.NoError(t, err)

	out, err := io.ReadAll(r)
	require.NoError(t, err)

	return out
}

func cpioRecords(t *testing.T, raw []byte) map[string]cpio.Record {
	t.Helper()

	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	require.NoError(t, err)

	m := map[string]cpio.Record{}
	for _, r := range recs {
		m[r.Name] = r
	}

	return m
}

func recordData(t *testing.T, r cpio.Record) string {
	t.Helper()

	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	require.NoError(t, err)

	return string(b)
}

func TestInitramfs(t *testing.T) {
	busybox := []byte("not really busybox\n")

	data, err := Initramfs(busybox, "v1.13.0")
	require.NoError(t, err)

	base, err := initramfsBase(busybox)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(data, base), "version segment is appended to the shared busybox segment")

	// the kernel's xz decoder needs CRC32: stream header flags byte 7 is the check type (1 = CRC32)
	for _, stream := range [][]byte{base, data[len(base):]} {
		require.Equal(t, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, stream[:6])
		require.Equal(t, byte(0x01), stream[7], "xz check type")
	}

	first := cpioRecords(t, unxz(t, base))
	require.Contains(t, first, "init")
	require.Contains(t, first, "bin/busybox")
	require.Contains(t, first, "dev/console")
	require.Equal(t, string(busybox), recordData(t, first["bin/busybox"]))
	require.Equal(t, uint64(cpio.S_IFREG|0o755), first["init"].Mode)
	require.Contains(t, recordData(t, first["init"]), BootMarker)

	second := cpioRecords(t, unxz(t, data[len(base):]))
	require.Equal(t, "v1.13.0\n", recordData(t, second["etc/talos-version"]))

	// both streams read as one, as the kernel does
	require.Len(t, unxz(t, data), len(unxz(t, base))+len(unxz(t, data[len(base):])))

	again, err := xzCpio([]cpio.Record{cpio.StaticFile("a", "b", 0o644)})
	require.NoError(t, err)

	again2, err := xzCpio([]cpio.Record{cpio.StaticFile("a", "b", 0o644)})
	require.NoError(t, err)
	require.Equal(t, again, again2, "xz output is deterministic")
}

func TestParseBootLog(t *testing.T) {
	console := "Linux version 6.1\r\n[    1.0] Run /init as init process\r\n\r\n" + BootMarker + "\r\n" +
		"talos-version: v1.13.0\r\narch: x86_64\r\nkernel: 6.1.0-50-amd64\r\n" +
		"cmdline: talos.platform=metal console=ttyS0 init_on_alloc=1\r\nfirmware: UEFI\r\nsecureboot: enabled\r\n" +
		"extensions: amd-ucode schematic\r\nextension-images: 000.sqsh 001.sqsh\r\n" +
		"firmware-files: amd-ucode/microcode_amd_fam17h.bin\r\nmicrocode: AuthenticAMD.bin\r\n" +
		PoweroffMarker + "\r\n[    2.0] reboot: Power down\r\n"

	cases := []struct {
		name    string
		console string
		ok      bool
		want    BootReport
	}{
		{name: "none", console: "kernel panic", ok: false},
		{name: "full", console: console, ok: true, want: BootReport{
			Version: "v1.13.0", Arch: "x86_64", Kernel: "6.1.0-50-amd64",
			Cmdline: "talos.platform=metal console=ttyS0 init_on_alloc=1", Firmware: "UEFI", SecureBoot: true,
			Extensions: []string{"amd-ucode", "schematic"}, ExtensionImages: []string{"000.sqsh", "001.sqsh"},
			FirmwareFiles: []string{"amd-ucode/microcode_amd_fam17h.bin"}, Microcode: []string{"AuthenticAMD.bin"},
			PoweredOff: true,
		}},
		{name: "cut short", console: strings.Split(console, "firmware:")[0], ok: true, want: BootReport{
			Version: "v1.13.0", Arch: "x86_64", Kernel: "6.1.0-50-amd64",
			Cmdline: "talos.platform=metal console=ttyS0 init_on_alloc=1",
		}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseBootLog(tc.console)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestBootInitramfs boots the real amd64 kernel with the synthetic initramfs in QEMU (direct kernel boot) and
// checks the init's report: the proof that /init, busybox and the xz/cpio format work.
func TestBootInitramfs(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}

	parts, err := LoadParts(DefaultPartsDir(), nil)
	require.NoError(t, err)

	if !parts.Real() {
		t.Skipf("parts missing (%v): run make deps", parts.Missing())
	}

	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}

	dir := t.TempDir()
	initrd, err := Initramfs(parts.File("amd64", "busybox"), "v1.13.0")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), parts.File("amd64", "vmlinuz"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "initramfs.xz"), initrd, 0o644))

	ctx := t.Context()
	// console=tty0 last, as Talos does: the report must still reach the serial port.
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "initramfs.xz"),
		"-append", "console=ttyS0 console=tty0 talos.platform=metal")
	cmd.WaitDelay = 5 * time.Second

	var out bytes.Buffer

	cmd.Stdout, cmd.Stderr = &out, &out

	timer := time.AfterFunc(150*time.Second, func() { _ = cmd.Process.Kill() }) // best effort
	defer timer.Stop()

	require.NoError(t, cmd.Run(), out.String())

	report, ok := ParseBootLog(out.String())
	require.True(t, ok, out.String())
	require.True(t, report.PoweredOff, out.String())
	require.Equal(t, "v1.13.0", report.Version)
	require.Equal(t, "x86_64", report.Arch)
	require.Equal(t, "BIOS", report.Firmware)
	require.Equal(t, "console=ttyS0 console=tty0 talos.platform=metal", report.Cmdline)
	require.Empty(t, report.Extensions)
}
