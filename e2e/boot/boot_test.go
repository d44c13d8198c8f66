//go:build boot

package boot

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/e2e/qemu"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// ipxeROM is the option ROM QEMU loads for virtio-net-pci (package ipxe-qemu): without it QEMU refuses the device.
const ipxeROM = "/usr/lib/ipxe/qemu/efi-virtio.rom"

// noWipe is the safety property: a UKI stub older than systemd 257 boots the last profile's command line, which for
// an ISO is the reset profile with talos.experimental.wipe=system (docs/host-tools.md).
const noWipe = "wipe="

func TestMain(m *testing.M) {
	code := m.Run()

	stopShared()
	os.Exit(code)
}

// TestBootISOBIOS boots metal-amd64.iso as a CD-ROM under SeaBIOS (GRUB's El Torito image).
func TestBootISOBIOS(t *testing.T) {
	requireQEMU(t)

	dev := sharedDev(t)
	id := createSchematic(t, dev.URL, bootSchematic)
	iso := download(t, dev.URL, id, "metal-amd64.iso", t.TempDir())

	bootGuest(t, qemu.Guest{Media: []string{"-cdrom", iso, "-boot", "d"}}, "BIOS", "talos.halt_if_installed=1")
}

// TestBootISOUEFI boots the same ISO under OVMF (the EFI boot image: systemd-boot and the UKI).
func TestBootISOUEFI(t *testing.T) {
	requireQEMU(t)
	requireOVMF(t)

	dev := sharedDev(t)
	id := createSchematic(t, dev.URL, bootSchematic)
	iso := download(t, dev.URL, id, "metal-amd64.iso", t.TempDir())

	bootGuest(t, qemu.Guest{Firmware: newUEFI(t), Media: []string{"-cdrom", iso}}, "UEFI", "talos.halt_if_installed=1")
}

// TestBootUKI boots metal-amd64-uki.efi under OVMF as the removable-media boot loader EFI/BOOT/BOOTX64.EFI of an
// ESP, which the firmware finds by itself (as on a USB stick or an empty disk's ESP).
func TestBootUKI(t *testing.T) {
	requireQEMU(t)
	requireOVMF(t)

	dev := sharedDev(t)
	id := createSchematic(t, dev.URL, bootSchematic)
	uki := download(t, dev.URL, id, "metal-amd64-uki.efi", t.TempDir())

	esp := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(esp, "EFI", "BOOT"), 0o755))
	require.NoError(t, os.Link(uki, filepath.Join(esp, "EFI", "BOOT", "BOOTX64.EFI")))

	// QEMU's vvfat presents the directory as a FAT disk; snapshot=on keeps guest writes away from it.
	bootGuest(t, qemu.Guest{Firmware: newUEFI(t), Media: []string{"-drive", "file=fat:" + esp + ",format=raw,snapshot=on"}}, "UEFI")
}

// TestBootDisk boots the metal raw disk image (the default metal download, zstd) as a hard disk, under SeaBIOS
// (GRUB in the BIOS boot partition) and under OVMF (systemd-boot on the ESP).
func TestBootDisk(t *testing.T) {
	requireQEMU(t)

	dev := sharedDev(t)
	id := createSchematic(t, dev.URL, bootSchematic)
	dir := t.TempDir()
	zst := download(t, dev.URL, id, "metal-amd64.raw.zst", dir)

	raw := filepath.Join(dir, "metal-amd64.raw")
	size, err := DecompressSparse(zst, raw)
	require.NoError(t, err)
	require.NoError(t, os.Remove(zst))
	t.Logf("metal-amd64.raw: %d bytes, %d allocated", size, allocated(t, raw))

	drive := []string{"-drive", "file=" + raw + ",format=raw,snapshot=on"}

	t.Run("BIOS", func(t *testing.T) {
		bootGuest(t, qemu.Guest{Media: drive}, "BIOS")
	})

	t.Run("UEFI", func(t *testing.T) {
		requireOVMF(t)
		bootGuest(t, qemu.Guest{Firmware: newUEFI(t), Media: drive}, "UEFI")
	})
}

// TestBootPXE network-boots through the PXE frontend: SeaBIOS runs the iPXE ROM, which gets the boot file URL from
// QEMU's DHCP, chains /pxe/<id>/<version>/metal-amd64, and fetches kernel and initramfs from the node. The guest
// reaches the host's loopback as 10.0.2.2, so the node's external URL says that.
func TestBootPXE(t *testing.T) {
	requireQEMU(t)
	requireIPXE(t)

	listen := e2e.FreeAddr(t)
	_, port, err := net.SplitHostPort(listen)
	require.NoError(t, err)

	guestURL := "http://10.0.2.2:" + port
	dev, err := startDev(e2e.RepoRoot(t), t.TempDir(), listen, "--external-url", guestURL)
	require.NoError(t, err)
	t.Cleanup(dev.Stop)
	dev.logOnFailure(t)

	id := createSchematic(t, dev.URL, bootSchematic)
	bootfile := guestURL + "/pxe/" + id + "/" + talosVersion + "/metal-amd64"

	bootGuest(t, qemu.Guest{
		Network: []string{"-netdev", "user,id=n0,bootfile=" + bootfile, "-device", "virtio-net-pci,netdev=n0"},
		Media:   []string{"-boot", "n"},
	}, "BIOS")
}

// bootGuest boots g with the suite's accelerator and checks the synthetic init's report: firmware, release,
// architecture, the schematic's kernel argument and extension, wantArgs, and never a wipe argument.
func bootGuest(t *testing.T, g qemu.Guest, firmware string, wantArgs ...string) synthetic.BootReport {
	t.Helper()

	accel := accelFor(t)
	timeout, err := accel.BootTimeout()
	require.NoError(t, err)

	g.Accel = accel.Name
	g.Timeout = timeout

	res, err := qemu.Boot(t.Context(), g)
	require.NoError(t, err, "%s %s\nconsole:\n%s", qemu.QEMUBinary, strings.Join(g.Args(), " "), qemu.Readable(res.Console, 48<<10))
	t.Logf("%s: %s boot to poweroff in %s (accel %s)", t.Name(), firmware, res.Elapsed.Round(100*time.Millisecond), accel.Name)

	report, _ := res.Report()
	t.Logf("booted cmdline: %s", report.Cmdline)

	args := strings.Fields(report.Cmdline)
	assert.NotContains(t, report.Cmdline, noWipe, "booted a wipe (reset) command line: the UKI stub picked the wrong profile")

	for _, want := range append([]string{"talos.platform=metal", bootArg}, wantArgs...) {
		assert.Contains(t, args, want, "booted command line %q", report.Cmdline)
	}

	assert.Equal(t, firmware, report.Firmware, "firmware")
	assert.Equal(t, talosVersion, report.Version, "Talos version of the booted initramfs")
	assert.Equal(t, "x86_64", report.Arch)
	assert.Contains(t, report.Extensions, bootExtension, "extensions the initramfs carries")
	assert.Contains(t, report.Extensions, "schematic", "the factory's virtual schematic extension")
	assert.False(t, report.SecureBoot)

	return report
}

// requireQEMU skips unless QEMU and the real synthetic parts are here (and not under -short).
func requireQEMU(t *testing.T) {
	t.Helper()

	if testing.Short() {
		t.Skip("boots QEMU guests for minutes; skipped with -short")
	}

	if _, err := exec.LookPath(qemu.QEMUBinary); err != nil {
		t.Skipf("%s not found: install it (apt-get install qemu-system-x86) to run the boot suite", qemu.QEMUBinary)
	}

	parts, err := loadParts()
	require.NoError(t, err)

	if !parts.Real() {
		t.Skipf("the synthetic release parts in %s are stand-ins that do not boot (missing %v): run `make deps`",
			parts.Dir(), parts.Missing())
	}
}

func requireOVMF(t *testing.T) {
	t.Helper()

	for _, f := range []string{qemu.OVMFCode, qemu.OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("UEFI firmware %s not found: install it (apt-get install ovmf) for the UEFI boots", f)
		}
	}
}

func requireIPXE(t *testing.T) {
	t.Helper()

	if _, err := os.Stat(ipxeROM); err != nil {
		t.Skipf("iPXE ROM %s not found: install it (apt-get install ipxe-qemu) for the network boot", ipxeROM)
	}
}

var loadParts = sync.OnceValues(func() (*synthetic.Parts, error) {
	return synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
})

func newUEFI(t *testing.T) *qemu.UEFI {
	t.Helper()

	fw, err := qemu.NewUEFI(t.TempDir())
	require.NoError(t, err)

	return fw
}

var suiteAccel struct {
	once   sync.Once
	accel  qemu.Accel
	err    error
	logged bool // tests run one at a time
}

// accelFor chooses the accelerator once per run (see ProbeAccel) and logs the choice in the first test that boots.
func accelFor(t *testing.T) qemu.Accel {
	t.Helper()

	suiteAccel.once.Do(func() {
		a, forced, err := qemu.AccelFromEnv()
		if err != nil || forced {
			suiteAccel.accel, suiteAccel.err = a, err

			return
		}

		kernel, initramfs, err := probeFiles()
		if err != nil {
			suiteAccel.err = err

			return
		}

		suiteAccel.accel = qemu.ProbeAccel(context.Background(), kernel, initramfs)
	})
	require.NoError(t, suiteAccel.err)

	if !suiteAccel.logged {
		suiteAccel.logged = true
		t.Logf("QEMU accelerator for this run: %s (%s)", suiteAccel.accel.Name, suiteAccel.accel.Why)
	}

	return suiteAccel.accel
}

// probeFiles writes the synthetic kernel and initramfs the KVM probe boots.
func probeFiles() (kernel, initramfs string, err error) {
	parts, err := loadParts()
	if err != nil {
		return "", "", err
	}

	dir, err := suiteTemp()
	if err != nil {
		return "", "", err
	}

	initrd, err := synthetic.Initramfs(parts.File("amd64", "busybox"), talosVersion)
	if err != nil {
		return "", "", err
	}

	kernel = filepath.Join(dir, "probe-vmlinuz")
	initramfs = filepath.Join(dir, "probe-initramfs.xz")

	if err := os.WriteFile(kernel, parts.File("amd64", "vmlinuz"), 0o644); err != nil {
		return "", "", err
	}

	if err := os.WriteFile(initramfs, initrd, 0o644); err != nil {
		return "", "", err
	}

	return kernel, initramfs, nil
}

// allocated is the disk space a file uses (to show a sparse image stayed sparse).
func allocated(t *testing.T, path string) int64 {
	t.Helper()

	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))

	return st.Blocks * 512
}
