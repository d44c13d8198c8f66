//go:build netns

package netns

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e/qemu"
)

// BenchmarkNetnsNetboot measures a network boot from the machine's first DHCPDISCOVER (the arrival of dnsmasq's
// log line for it) to the kernel starting (the first kernel line on the serial console, "Linux version"), for the
// same BIOS guest booting the same kernel and initramfs two ways: from a site's own dnsmasq + TFTP + nginx
// ("site-pxe"), and from two Edge Factory members beside a plain dnsmasq ("members"). Both sides of a boot are the
// same firmware and the same kernel, so the difference is the servers' (target: members ≤ 1.1 × site). Under TCG a
// boot is 20–60 s and its spread several seconds: run with -benchtime 3x or more (make bench-netboot).
func BenchmarkNetnsNetboot(b *testing.B) {
	parts := requireNetbootLab(b)

	lab := NewLab(b, 2)
	files := fetchBootFiles(b)
	startNginx(b, lab, files.root)
	accel := labAccel(b, files)
	m := biosMachine
	lab.AddTap(m.Name)

	var site []time.Duration

	dhcp := startDNSMasq(b, lab, "dnsmasq (site PXE)", pxeDHCP(b.TempDir(), files.root))

	b.Run("site-pxe", func(b *testing.B) {
		site = benchBoots(b, dhcp, m, accel)
	})

	dhcp.Stop()
	requireNetbootFlag(b)

	dhcp = startDNSMasq(b, lab, "dnsmasq (plain DHCP)", plainDHCP(b.TempDir()))
	c, _ := startNetbootMembers(b, lab, parts)
	c.putProfile(b, 1, m.Name, m.MAC, files.schematic, labArg)

	b.Run("members", func(b *testing.B) {
		members := benchBoots(b, dhcp, m, accel)

		// The comparison, as a metric of this sub-benchmark (a parent benchmark's own lines are not printed).
		b.ReportMetric(mean(members)/mean(site), "x-site-pxe")
		b.Logf("DHCPDISCOVER to kernel, mean: members %.1f s, site dnsmasq+TFTP+nginx %.1f s: ratio %.2f (target ≤ 1.1)",
			mean(members), mean(site), mean(members)/mean(site))
	})
}

// benchBoots boots m once per iteration and reports the mean, minimum and maximum time from DHCPDISCOVER to the
// kernel's first line; it returns every time measured.
func benchBoots(b *testing.B, dhcp *dhcpServer, m Machine, accel qemu.Accel) []time.Duration {
	b.Helper()

	var took []time.Duration

	for b.Loop() {
		boot := bootMachine(b, dhcp, m, accel)
		boot.requireBooted(b, labArg)

		d, err := boot.toKernel()
		require.NoError(b, err)

		took = append(took, d)
	}

	b.ReportMetric(mean(took), "s-to-kernel")
	b.ReportMetric(slices.Min(took).Seconds(), "s-min")
	b.ReportMetric(slices.Max(took).Seconds(), "s-max")
	b.Logf("DHCPDISCOVER to kernel: %v", took)

	return took
}

func mean(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}

	var sum time.Duration
	for _, d := range ds {
		sum += d
	}

	return sum.Seconds() / float64(len(ds))
}
