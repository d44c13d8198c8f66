//go:build netns

package netns

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e/qemu"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// The LAN of the network-boot lab is the lab's bridge: machines (QEMU guests on tap devices) boot on the segment
// the members' eth0 are plugged into, as on a site's network. Their taps live in the bridge namespace, so a later
// run's teardown removes them with it.
const (
	// lanRange is what the site's DHCP server hands out: away from the members (.1–.3) and the bridge (.254).
	lanRangeStart, lanRangeEnd = "10.77.0.100", "10.77.0.199"
	tapPrefix                  = "eftap"
)

// Files the lab needs besides the synthetic parts: the dnsmasq binary, OVMF and the iPXE ROM QEMU puts on a
// virtio NIC for SeaBIOS (package ipxe-qemu).
const (
	dnsmasqBinary = "/usr/sbin/dnsmasq"
	ipxeROM       = "/usr/lib/ipxe/qemu/efi-virtio.rom"
)

// ipxeFiles are the iPXE binaries network boot hands out (trixie's, fetched by `make deps`).
var ipxeFiles = []string{"undionly.kpxe", "ipxe.efi"}

// ipxeDir is where `make deps` puts them.
func ipxeDir() string { return filepath.Join(synthetic.DefaultPartsDir(), "ipxe") }

// requireNetbootLab skips unless this machine can run the network-boot lab: root and iproute2 (RequireLab), QEMU,
// dnsmasq, OVMF, the iPXE ROM for virtio, trixie's iPXE binaries and the real synthetic parts; and not under -short.
func requireNetbootLab(t testing.TB) string {
	t.Helper()

	if testing.Short() {
		t.Skip("netboot lab skipped: it boots QEMU guests for minutes; skipped with -short")
	}

	RequireLab(t)

	if _, err := exec.LookPath(qemu.QEMUBinary); err != nil {
		t.Skipf("netboot lab skipped: %s not found: apt-get install qemu-system-x86", qemu.QEMUBinary)
	}

	for _, need := range []struct{ file, fix string }{
		{dnsmasqBinary, "apt-get install dnsmasq-base"},
		{qemu.OVMFCode, "apt-get install ovmf"},
		{qemu.OVMFVars, "apt-get install ovmf"},
		{ipxeROM, "apt-get install ipxe-qemu"},
	} {
		if _, err := os.Stat(need.file); err != nil {
			t.Skipf("netboot lab skipped: %s not found: %s", need.file, need.fix)
		}
	}

	for _, f := range ipxeFiles {
		if _, err := os.Stat(filepath.Join(ipxeDir(), f)); err != nil {
			t.Skipf("netboot lab skipped: iPXE binary %s not found: run `make deps`", filepath.Join(ipxeDir(), f))
		}
	}

	return requireRealParts(t)
}

// AddTap plugs a tap device named tapPrefix+name into the bridge, for a guest's NIC.
func (l *Lab) AddTap(name string) string {
	tap := tapPrefix + name

	l.ip("-n", bridgeNS, "tuntap", "add", "dev", tap, "mode", "tap")
	l.ip("-n", bridgeNS, "link", "set", tap, "master", bridge)
	l.ip("-n", bridgeNS, "link", "set", tap, "up")

	return tap
}

// Firmware is how a lab machine boots from the network.
type Firmware string

const (
	// BIOS is SeaBIOS running the NIC's option ROM, which is iPXE (ipxe-qemu): its very first DHCPDISCOVER already
	// carries user class "iPXE", so it goes straight to the HTTP script, with no TFTP step.
	BIOS Firmware = "BIOS"
	// UEFI is OVMF with its own virtio-net driver and EDK2's PXE (the NIC's iPXE ROM is left out, as a real
	// machine's UEFI has no iPXE): PXE client arch 7 fetches ipxe.efi over TFTP, which then asks DHCP again as iPXE.
	UEFI Firmware = "UEFI"
	// HTTPBoot is OVMF's UEFI HTTP Boot (vendor class HTTPClient, arch 16): it fetches ipxe.efi by HTTP from the
	// URL in the DHCP answer. OVMF's PXE entries are switched off (fw_cfg), so HTTP is the NIC's only boot option
	// and the guest does not first wait for PXE to time out.
	HTTPBoot Firmware = "HTTP"
)

// Machine is a lab guest: a MAC on a tap, booting from the network with its firmware.
type Machine struct {
	Name     string
	MAC      string
	Tap      string
	Firmware Firmware
}

// Guest is the QEMU run of m (in the bridge namespace, on its tap) with accel, ending early at any of stopOn; dir
// holds the UEFI variable store.
func (m Machine) Guest(t testing.TB, dir string, accel qemu.Accel, stopOn ...string) qemu.Guest {
	t.Helper()

	nic := "virtio-net-pci,netdev=n0,mac=" + m.MAC + ",bootindex=1"
	g := qemu.Guest{
		Accel:    accel.Name,
		Launcher: []string{"ip", "netns", "exec", bridgeNS},
		StopOn:   stopOn,
	}

	var err error

	g.Timeout, err = accel.BootTimeout()
	require.NoError(t, err)

	if m.Firmware != BIOS {
		g.Firmware, err = qemu.NewUEFI(dir)
		require.NoError(t, err)
		nic += ",romfile=" // OVMF's own driver and network stack, not the NIC's iPXE ROM
	}

	if m.Firmware == HTTPBoot {
		g.Media = append(g.Media,
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
	}

	g.Network = []string{"-netdev", "tap,id=n0,ifname=" + m.Tap + ",script=no,downscript=no", "-device", nic}

	return g
}

// dnsmasqMAC is how dnsmasq's log writes a MAC (lower case, as given here).
func dnsmasqMAC(mac string) string { return strings.ToLower(mac) }
