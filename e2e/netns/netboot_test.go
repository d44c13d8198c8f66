//go:build netns

package netns

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/e2e/qemu"
)

// The network-boot lab: machines (QEMU guests with real firmware) on the lab's bridge boot the synthetic Talos
// kernel from the network. TestNetnsNetbootBaseline boots them from a site that does network boot with dnsmasq,
// TFTP and nginx alone (what the members are measured against, and the proof that the harness works);
// netboot_members_test.go boots them from Edge Factory members beside a plain DHCP server.

const (
	labVersion = "v1.13.0"
	// labArg is the suite schematic's own kernel argument: every network boot here must carry it.
	labArg = "edgefactory.lab=1"
)

// labSchematic puts the kernel's log on the serial console too (Talos' own default is console=tty0 only): the
// kernel's first line there is when a boot's time ends.
const labSchematic = "customization:\n  extraKernelArgs:\n    - console=ttyS0\n    - " + labArg + "\n"

// The lab's machines: fixed MACs, one tap each.
var (
	biosMachine = Machine{Name: "bios", MAC: "52:54:00:12:34:50", Tap: tapPrefix + "bios", Firmware: BIOS}
	uefiMachine = Machine{Name: "uefi", MAC: "52:54:00:12:34:51", Tap: tapPrefix + "uefi", Firmware: UEFI}
	httpMachine = Machine{Name: "http", MAC: "52:54:00:12:34:53", Tap: tapPrefix + "http", Firmware: HTTPBoot}
)

// TestNetnsNetbootBaseline: a site's own network boot, with no Edge Factory on the LAN. dnsmasq hands out
// addresses and boot files by architecture (BIOS: undionly.kpxe, UEFI: ipxe.efi over TFTP, UEFI HTTP Boot:
// ipxe.efi from nginx, iPXE: nginx's boot.ipxe, which is the script edgefactory dev wrote for the suite's
// schematic, pointed at nginx). A SeaBIOS, an OVMF PXE and an OVMF HTTP Boot guest each boot the synthetic kernel
// with the schematic's command line.
func TestNetnsNetbootBaseline(t *testing.T) {
	requireNetbootLab(t)

	lab := NewLab(t, 0)
	files := fetchBootFiles(t)
	startNginx(t, lab, files.root)
	dhcp := startDNSMasq(t, lab, "dnsmasq (site PXE)", pxeDHCP(t.TempDir(), files.root))
	accel := labAccel(t, files)

	t.Run("boot", func(t *testing.T) {
		for _, m := range []Machine{biosMachine, uefiMachine, httpMachine} {
			lab.AddTap(m.Name)

			t.Run(string(m.Firmware), func(t *testing.T) {
				t.Parallel()

				b := bootMachine(t, dhcp, m, accel)
				b.requireBooted(t, labArg)

				switch m.Firmware {
				case BIOS: // the NIC's ROM is iPXE: straight to the script
					assert.Contains(t, b.res.Console, SiteHTTP()+"/boot.ipxe")
				case UEFI: // EDK2's PXE, then iPXE from TFTP, then the script
					assert.Contains(t, b.res.Console, "NBP file downloaded successfully")
					assert.Contains(t, b.res.Console, SiteHTTP()+"/boot.ipxe")
				case HTTPBoot:
					assert.Contains(t, b.res.Console, "Start HTTP Boot over IPv4")
					assert.Contains(t, b.res.Console, SiteHTTP()+"/boot.ipxe")
				}
			})
		}
	})
}

// bootFiles is what a site serves for network boot, under root: image/<schematic>/<version>/{kernel-amd64,
// initramfs-amd64.xz} as edgefactory dev built them, boot.ipxe (dev's PXE script, its URLs pointed at SiteHTTP())
// and the iPXE binaries.
type bootFiles struct {
	root      string
	schematic string
	kernel    string
	initramfs string
}

// fetchBootFiles runs edgefactory dev (on loopback, outside the lab) for the suite's schematic and copies what it
// serves for network boot into a new directory.
func fetchBootFiles(t testing.TB) bootFiles {
	t.Helper()

	dev := e2e.StartDev(t)
	id := dev.CreateSchematic(t, labSchematic)

	root := t.TempDir()
	images := filepath.Join(root, "image", id, labVersion)
	require.NoError(t, os.MkdirAll(images, 0o755))

	f := bootFiles{root: root, schematic: id,
		kernel: filepath.Join(images, "kernel-amd64"), initramfs: filepath.Join(images, "initramfs-amd64.xz")}

	fetch(t, dev.URL+"/image/"+id+"/"+labVersion+"/kernel-amd64", f.kernel)
	fetch(t, dev.URL+"/image/"+id+"/"+labVersion+"/initramfs-amd64.xz", f.initramfs)

	script := filepath.Join(root, "boot.ipxe")
	fetch(t, dev.URL+"/pxe/"+id+"/"+labVersion+"/metal-amd64", script)

	text, err := os.ReadFile(script)
	require.NoError(t, err)
	require.Contains(t, string(text), dev.URL+"/image/", "dev's PXE script names its own URL:\n%s", text)
	require.NoError(t, os.WriteFile(script, []byte(strings.ReplaceAll(string(text), dev.URL, SiteHTTP())), 0o644))

	for _, name := range ipxeFiles {
		data, err := os.ReadFile(filepath.Join(ipxeDir(), name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, name), data, 0o644))
	}

	return f
}

// fetch downloads url into file (dev builds it on the first request).
func fetch(t testing.TB, url, file string) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)

	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)

	defer resp.Body.Close()

	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", url)

	out, err := os.Create(file)
	require.NoError(t, err)

	_, err = io.Copy(out, resp.Body)
	require.NoError(t, err, "GET %s", url)
	require.NoError(t, out.Close())
}

var accelChoice struct {
	once  sync.Once
	accel qemu.Accel
	err   error
}

// labAccel chooses the accelerator once per run (qemu.ProbeAccel boots the kernel and initramfs under KVM once,
// unless EDGEFACTORY_QEMU_ACCEL says) and logs it.
func labAccel(t testing.TB, f bootFiles) qemu.Accel {
	t.Helper()

	accelChoice.once.Do(func() {
		a, forced, err := qemu.AccelFromEnv()
		if err != nil || forced {
			accelChoice.accel, accelChoice.err = a, err

			return
		}

		accelChoice.accel = qemu.ProbeAccel(context.Background(), f.kernel, f.initramfs)
	})
	require.NoError(t, accelChoice.err)
	t.Logf("QEMU accelerator: %s (%s)", accelChoice.accel.Name, accelChoice.accel.Why)

	return accelChoice.accel
}

// netboot is one network boot of a lab machine.
type netboot struct {
	machine Machine
	res     qemu.Result
	err     error
	// discover is when the site's dnsmasq logged the machine's first DHCPDISCOVER of this boot.
	discover time.Time
}

// bootMachine boots m once on the LAN (the guest ends at the synthetic init's poweroff, a stop line, or its
// timeout).
func bootMachine(t testing.TB, dhcp *dhcpServer, m Machine, accel qemu.Accel, stopOn ...string) netboot {
	t.Helper()

	start := time.Now()
	res, err := qemu.Boot(context.Background(), m.Guest(t, t.TempDir(), accel, stopOn...))
	b := netboot{machine: m, res: res, err: err}
	b.discover, _ = dhcp.firstDiscover(m.MAC, start)

	return b
}

// toKernel is the time from the machine's first DHCPDISCOVER to the kernel's first console line.
func (b netboot) toKernel() (time.Duration, error) {
	switch {
	case b.discover.IsZero():
		return 0, fmt.Errorf("%s: dnsmasq logged no DHCPDISCOVER from %s", b.machine.Name, b.machine.MAC)
	case b.res.KernelAt.IsZero():
		return 0, fmt.Errorf("%s: the console never showed %q", b.machine.Name, qemu.KernelMarker)
	default:
		return b.res.KernelAt.Sub(b.discover), nil
	}
}

// requireBooted checks the boot reached the synthetic init's poweroff on the machine's firmware, with the suite's
// release, and that the booted command line has args.
func (b netboot) requireBooted(t testing.TB, args ...string) {
	t.Helper()

	require.NoError(t, b.err, "%s (%s, %s) did not boot; console:\n%s", b.machine.Name, b.machine.Firmware,
		b.machine.MAC, readableTail(b.res.Console))

	report, _ := b.res.Report()
	took, err := b.toKernel()
	require.NoError(t, err)
	t.Logf("%s (%s): DHCPDISCOVER to kernel %s, whole run %s; cmdline: %s", b.machine.Name, b.machine.Firmware,
		took.Round(100*time.Millisecond), b.res.Elapsed.Round(100*time.Millisecond), report.Cmdline)

	wantFirmware := "UEFI"
	if b.machine.Firmware == BIOS {
		wantFirmware = "BIOS"
	}

	assert.Equal(t, wantFirmware, report.Firmware, "firmware the kernel saw")
	assert.Equal(t, labVersion, report.Version, "Talos version of the booted initramfs")
	assert.Equal(t, "x86_64", report.Arch)

	booted := strings.Fields(report.Cmdline)
	for _, want := range append([]string{"talos.platform=metal"}, args...) {
		assert.Contains(t, booted, want, "booted command line %q", report.Cmdline)
	}
}

// readableTail is the end of a console transcript, readable, for a failure message.
func readableTail(console string) string { return qemu.Readable(console, 24<<10) }
