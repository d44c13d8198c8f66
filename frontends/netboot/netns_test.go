package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/internal/netnstest"
)

// The child process of TestNetnsPXEBoot runs in the server's namespace and finds the client's here.
const netnsClientEnv = "EDGEFACTORY_NETBOOT_TEST_CLIENT_NETNS"

// TestNetnsPXEBoot boots a PXE client for real over a veth pair between two network namespaces: a broadcast
// DISCOVER from the client's interface (nclient4, a raw socket), the broadcast OFFER back, a REQUEST to port 4011,
// and the binary over TFTP. The server must own a whole process in its namespace (pin/tftp opens a socket per
// transfer on its own goroutines), so the test runs itself again under `ip netns exec`.
func TestNetnsPXEBoot(t *testing.T) {
	if ns := os.Getenv(netnsClientEnv); ns != "" {
		pxeBootInNetns(t, ns)

		return
	}

	if os.Geteuid() != 0 {
		t.Skip("creates network namespaces: needs root")
	}

	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("`ip` (iproute2) not found: apt-get install iproute2")
	}

	server, client := fmt.Sprintf("efnb-s-%d", os.Getpid()), fmt.Sprintf("efnb-c-%d", os.Getpid())

	for _, ns := range []string{server, client} {
		if out, err := exec.CommandContext(t.Context(), "ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("network namespaces unavailable: ip netns add: %v: %s", err, out)
		}

		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}

	for _, args := range [][]string{
		{"-n", server, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", client},
		{"-n", server, "addr", "add", "10.77.0.1/24", "dev", "veth0"},
		{"-n", client, "addr", "add", "10.77.0.2/24", "dev", "veth1"},
		{"-n", server, "link", "set", "veth0", "up"},
		{"-n", client, "link", "set", "veth1", "up"},
		{"-n", server, "link", "set", "lo", "up"},
		{"-n", client, "link", "set", "lo", "up"},
	} {
		out, err := exec.CommandContext(t.Context(), "ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", server, os.Args[0], "-test.run=^TestNetnsPXEBoot$",
		"-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsClientEnv+"="+client)
	out, err := cmd.CombinedOutput()
	t.Logf("child in %s:\n%s", server, out)
	require.NoError(t, err)
	assert.Contains(t, string(out), "--- PASS: TestNetnsPXEBoot")
}

// pxeBootInNetns is the child: the server on veth0 here, the client on veth1 in clientNS.
func pxeBootInNetns(t *testing.T, clientNS string) {
	s := newTestServer(t, func(c *Config) { c.Interfaces = []string{"veth0"} })

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)

	go func() { done <- s.Run(ctx) }()

	var r clientResults

	err := netnstest.Do(clientNS, func() error { return r.boot(t.Context()) })

	cancel()
	require.NoError(t, <-done)
	require.NoError(t, err)

	offer := r.offer
	assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	assert.True(t, offer.YourIPAddr.Equal(net.IPv4zero), "yiaddr %s", offer.YourIPAddr)
	assert.True(t, offer.ServerIPAddr.Equal(net.IPv4(10, 77, 0, 1)), "siaddr %s", offer.ServerIPAddr)
	assert.True(t, offer.ServerIdentifier().Equal(net.IPv4(10, 77, 0, 1)))
	assert.Equal(t, BIOSBinary, offer.BootFileName)
	assert.Equal(t, "PXEClient", offer.ClassIdentifier())
	assert.Equal(t, []byte{6, 1, 8, 255}, offer.Options.Get(dhcpv4.OptionVendorSpecificInformation))
	assert.Nil(t, offer.SubnetMask())
	assert.Nil(t, offer.Router())

	assert.Equal(t, dhcpv4.MessageTypeAck, r.ack.MessageType())
	assert.Equal(t, UEFIx64Binary, r.ack.BootFileName)
	assert.True(t, r.ack.YourIPAddr.Equal(net.IPv4zero))

	assert.Equal(t, testBinaries()[BIOSBinary].Data, r.binary)

	for name, err := range r.refused {
		assert.Error(t, err, name)
	}
}

type clientResults struct {
	offer, ack *dhcpv4.DHCPv4
	binary     []byte
	refused    map[string]error
}

// boot does what a PXE ROM does, from the client's namespace.
func (r *clientResults) boot(ctx context.Context) error {
	c, err := nclient4.New("veth1", nclient4.WithTimeout(250*time.Millisecond), nclient4.WithRetry(5))
	if err != nil {
		return fmt.Errorf("nclient4: %w", err)
	}

	r.offer, err = c.DiscoverOffer(ctx, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	c.Close()

	if err != nil {
		return fmt.Errorf("discover: %w", err)
	}

	if r.ack, err = proxyRequest(); err != nil {
		return fmt.Errorf("request on 4011: %w", err)
	}

	tc, err := tftp.NewClient("10.77.0.1:69")
	if err != nil {
		return err
	}

	tc.SetTimeout(2 * time.Second)
	tc.RequestTSize(true)
	tc.SetBlockSize(1468)

	wt, err := tc.Receive(BIOSBinary, "octet")
	if err != nil {
		return fmt.Errorf("tftp %s: %w", BIOSBinary, err)
	}

	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("tftp %s: %w", BIOSBinary, err)
	}

	r.binary = buf.Bytes()
	r.refused = map[string]error{}

	for _, name := range []string{"/etc/passwd", "../x"} {
		_, r.refused[name] = tc.Receive(name, "octet")
	}

	return nil
}

// proxyRequest sends a UEFI client's REQUEST to port 4011 and reads the ACK, which comes back to its socket.
func proxyRequest() (*dhcpv4.DHCPv4, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2)})
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	req, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}), dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 2)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	if err != nil {
		return nil, err
	}

	if _, err := conn.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 4011}); err != nil {
		return nil, err
	}

	if err := conn.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return nil, err
	}

	buf := make([]byte, 1500)

	n, _, err := conn.ReadFromUDP(buf)
	if err != nil {
		return nil, err
	}

	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		return nil, err
	}

	if ack.TransactionID != req.TransactionID {
		return nil, errors.New("ACK for another transaction")
	}

	return ack, nil
}
