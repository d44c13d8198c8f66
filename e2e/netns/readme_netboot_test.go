//go:build netns

package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/internal/netnstest"
)

// TestNetnsReadmeNetbootServe runs the serve command of the README's network-boot section, as written, on an eth0 in
// a namespace of its own, and asks it from a second namespace what a PXE ROM and iPXE ask. First it runs the same
// command without privileges (no CAP_NET_BIND_SERVICE or CAP_NET_RAW): the member must say so and stop.
func TestNetnsReadmeNetbootServe(t *testing.T) {
	RequireLab(t)

	blocks := e2e.ReadmeBlocks(t, "### Network boot", "sh")
	require.NotEmpty(t, blocks)

	block := blocks[0]
	require.Contains(t, block, "--netboot-interface eth0")

	member, client := fmt.Sprintf("efrd-m-%d", os.Getpid()), fmt.Sprintf("efrd-c-%d", os.Getpid())
	twoNamespaces(t, member, client)

	dir := t.TempDir()
	for _, d := range []string{"bin", "data"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o777))
		require.NoError(t, os.Chmod(filepath.Join(dir, d), 0o777)) // past the umask: the unprivileged run writes here
	}

	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755)) // t.TempDir's parent is private
	require.NoError(t, os.Symlink(e2e.Binary(t), filepath.Join(dir, "bin", "edgefactory")))
	require.NoError(t, os.Symlink(filepath.Join(e2e.RepoRoot(t), "build"), filepath.Join(dir, "build")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "release.pub"), synthetic.PublicKeyPEM(), 0o644))

	t.Run("without privileges it says what it needs", func(t *testing.T) {
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("setpriv (util-linux) not found")
		}

		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()

		unprivileged := strings.Replace(block, "bin/edgefactory serve", "setpriv --reuid=65534 --regid=65534 "+
			"--clear-groups --inh-caps=-all --bounding-set=-all bin/edgefactory serve", 1)
		unprivileged = strings.Replace(unprivileged, "./data/m1", "./data/nobody", 1)
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", member, "bash", "-euo", "pipefail", "-c", unprivileged)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "an unprivileged member must not run network boot:\n%s", out)
		assert.Contains(t, string(out), "CAP_NET_BIND_SERVICE")
	})

	logs := &e2e.SyncBuffer{}
	cmd := exec.Command("ip", "netns", "exec", member, "bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())

	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may have ended
		done := make(chan struct{})

		go func() { cmd.Wait(); close(done) }() //nolint:errcheck // the exit status after SIGTERM is not the point

		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // stuck
			<-done
		}

		if t.Failed() {
			t.Logf("---- member logs ----\n%s", tail(logs.String(), 80))
		}
	})

	for _, tc := range []struct {
		name     string
		mods     []dhcpv4.Modifier
		bootFile string
	}{
		{"BIOS PXE ROM", []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		}, "undionly.kpxe"},
		{"iPXE", []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
			dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		}, "http://10.81.0.11:8080/pxe/boot.ipxe"},
	} {
		var offer *dhcpv4.DHCPv4

		require.Eventually(t, func() bool {
			err := netnstest.Do(client, func() error {
				c, err := nclient4.New("veth1", nclient4.WithTimeout(500*time.Millisecond), nclient4.WithRetry(2))
				if err != nil {
					return err
				}
				defer c.Close()

				offer, err = c.DiscoverOffer(t.Context(), tc.mods...)

				return err
			})

			return err == nil
		}, 90*time.Second, time.Second, "%s: no answer from the README's member", tc.name)

		assert.Equal(t, tc.bootFile, offer.BootFileName, tc.name)
		assert.True(t, offer.YourIPAddr.Equal(net.IPv4zero), "%s: never an address: %s", tc.name, offer.YourIPAddr)
		assert.True(t, offer.ServerIPAddr.Equal(net.IPv4(10, 81, 0, 11)), "%s: siaddr %s", tc.name, offer.ServerIPAddr)
	}

	assert.Contains(t, logs.String(), "netboot: answered")
}

// twoNamespaces makes namespaces a and b joined by a veth pair: eth0 (10.81.0.11/24) in a, veth1 (10.81.0.50/24)
// in b; both are removed when the test ends.
func twoNamespaces(t *testing.T, a, b string) {
	t.Helper()

	for _, ns := range []string{a, b} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("netns suite skipped: ip netns add: %v: %s", err, out)
		}

		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() }) //nolint:errcheck // best effort
	}

	for _, args := range [][]string{
		{"-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "veth1", "netns", b},
		{"-n", a, "addr", "add", "10.81.0.11/24", "dev", "eth0"},
		{"-n", b, "addr", "add", "10.81.0.50/24", "dev", "veth1"},
		{"-n", a, "link", "set", "eth0", "up"},
		{"-n", b, "link", "set", "veth1", "up"},
		{"-n", a, "link", "set", "lo", "up"},
		{"-n", b, "link", "set", "lo", "up"},
	} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
}
