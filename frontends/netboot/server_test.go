package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func requireRoot(t testing.TB) {
	t.Helper()

	if os.Geteuid() != 0 {
		t.Skip("binds sockets to an interface (SO_BINDTODEVICE): needs root or CAP_NET_RAW")
	}
}

// freeUDPPort is a loopback UDP port nobody holds right now.
func freeUDPPort(t testing.TB) int {
	t.Helper()

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)

	defer c.Close()

	return c.LocalAddr().(*net.UDPAddr).Port
}

// loopbackServer runs a Server on lo at free ports; replies to the DHCP port go to client's port.
func loopbackServer(t testing.TB, client *net.UDPConn, mutate func(*Config)) *Server {
	t.Helper()
	requireRoot(t)

	s := newTestServer(t, func(c *Config) {
		c.Ports = Ports{DHCP: freeUDPPort(t), Proxy: freeUDPPort(t), TFTP: freeUDPPort(t),
			Client: client.LocalAddr().(*net.UDPAddr).Port}
		if mutate != nil {
			mutate(c)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	go func() { done <- s.Run(ctx) }()

	t.Cleanup(func() {
		cancel()

		select {
		case err := <-done:
			assert.NoError(t, err, "Run after its context is done")
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context was done")
		}
	})

	return s
}

func clientConn(t testing.TB) *net.UDPConn {
	t.Helper()

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })

	return c
}

// exchange sends req to port and reads the reply with the same xid, retrying while the server starts.
func exchange(t testing.TB, c *net.UDPConn, port int, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	t.Helper()

	return exchangeTries(c, port, req, 50)
}

func exchangeTries(c *net.UDPConn, port int, req *dhcpv4.DHCPv4, tries int) (*dhcpv4.DHCPv4, error) {
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	buf := make([]byte, 1500)

	for range tries {
		if _, err := c.WriteToUDP(req.ToBytes(), to); err != nil {
			return nil, err
		}

		if err := c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			return nil, err
		}

		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				break
			}

			reply, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && reply.TransactionID == req.TransactionID {
				return reply, nil
			}
		}
	}

	return nil, errors.New("no reply")
}

func TestLoopbackServer(t *testing.T) {
	client := clientConn(t)
	reg := prometheus.NewPedanticRegistry()
	observed := make(chan Answer, 10)
	s := loopbackServer(t, client, func(c *Config) {
		c.Registerer = reg
		c.Observe = func(_ Client, a Answer) { observed <- a }
	})

	// On the DHCP port a client that has an address is answered at it.
	discover := pxePacket(t, vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC),
		dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	offer, err := exchange(t, client, s.ports.DHCP, discover)
	require.NoError(t, err)
	assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	assert.Equal(t, BIOSBinary, offer.BootFileName)
	assert.True(t, offer.YourIPAddr.Equal(net.IPv4zero))
	assert.Equal(t, Answer{BootFile: BIOSBinary, ServerIP: netip.MustParseAddr("127.0.0.1")}, <-observed)

	// On the proxy port the answer goes back to the sender, whatever ciaddr says.
	request := pxePacket(t, vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 9, 9, 9)))
	ack, err := exchange(t, client, s.ports.Proxy, request)
	require.NoError(t, err)
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.Equal(t, UEFIx64Binary, ack.BootFileName)
	assert.Equal(t, UEFIx64Binary, (<-observed).BootFile)

	// Garbage and non-PXE clients are ignored, and the server keeps serving.
	_, err = client.WriteToUDP([]byte("not DHCP"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.ports.DHCP})
	require.NoError(t, err)
	_, err = exchangeTries(client, s.ports.DHCP, pxePacket(t, vendorClass("MSFT 5.0"),
		dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1))), 3)
	require.Error(t, err)

	offer, err = exchange(t, client, s.ports.DHCP, pxePacket(t, vendorClass("PXEClient"), arch(iana.EFI_ARM64),
		dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1))))
	require.NoError(t, err)
	assert.Equal(t, UEFIarm64Binary, offer.BootFileName)

	assert.InDelta(t, 3, testutil.ToFloat64(s.metrics.requests[answered]), 0)
	assert.GreaterOrEqual(t, testutil.ToFloat64(s.metrics.requests[ignored]), 2.0)

	testTFTP(t, s, fmt.Sprintf("127.0.0.1:%d", s.ports.TFTP))
}

// testTFTP fetches the binaries from addr and checks that nothing else can be read or written.
func testTFTP(t *testing.T, s *Server, addr string) {
	t.Helper()

	bin := testBinaries()

	for _, tc := range []struct {
		name, file, binary string
		blksize            int
	}{
		{name: "plain", file: BIOSBinary, binary: BIOSBinary},
		{name: "leading slash, tsize and blksize", file: "/" + BIOSBinary, binary: BIOSBinary, blksize: 1400},
		{name: "UEFI", file: UEFIx64Binary, binary: UEFIx64Binary, blksize: 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tftp.NewClient(addr)
			require.NoError(t, err)
			c.SetTimeout(2 * time.Second)
			c.RequestTSize(true)

			if tc.blksize != 0 {
				c.SetBlockSize(tc.blksize)
			}

			wt, err := c.Receive(tc.file, "octet")
			require.NoError(t, err)

			want := bin[tc.binary].Data

			size, ok := wt.(tftp.IncomingTransfer).Size()
			assert.True(t, ok, "tsize answered")
			assert.Equal(t, int64(len(want)), size)

			var got bytes.Buffer
			_, err = wt.WriteTo(&got)
			require.NoError(t, err)
			assert.Equal(t, want, got.Bytes())
		})
	}

	for _, file := range []string{"/etc/passwd", "../x", "../" + BIOSBinary, "x/../" + BIOSBinary, "",
		BIOSBinary + "/", "//" + BIOSBinary, "UNDIONLY.KPXE"} {
		t.Run("refused "+file, func(t *testing.T) {
			c, err := tftp.NewClient(addr)
			require.NoError(t, err)
			c.SetTimeout(2 * time.Second)

			_, err = c.Receive(file, "octet")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "file not found")
		})
	}

	t.Run("write refused", func(t *testing.T) {
		c, err := tftp.NewClient(addr)
		require.NoError(t, err)
		c.SetTimeout(2 * time.Second)
		c.SetRetries(1)

		rf, err := c.Send(BIOSBinary, "octet")
		if err == nil {
			_, err = rf.ReadFrom(bytes.NewReader([]byte("overwritten")))
		}

		require.Error(t, err)

		b, err := s.cfg.Binaries.Open(BIOSBinary)
		require.NoError(t, err)
		defer b.Close()

		st, err := b.Stat()
		require.NoError(t, err)
		assert.Equal(t, int64(len(bin[BIOSBinary].Data)), st.Size())
	})

	// The server counts a transfer once it has the last acknowledgement, which may be after the client returned.
	assert.Eventually(t, func() bool {
		return testutil.ToFloat64(s.metrics.transfers.WithLabelValues(BIOSBinary, "sent")) == 2 &&
			testutil.ToFloat64(s.metrics.transfers.WithLabelValues("other", "refused")) == 8
	}, 5*time.Second, 10*time.Millisecond, "sent %v, refused %v",
		testutil.ToFloat64(s.metrics.transfers.WithLabelValues(BIOSBinary, "sent")),
		testutil.ToFloat64(s.metrics.transfers.WithLabelValues("other", "refused")))
}

func TestRunReportsBindFailure(t *testing.T) {
	requireRoot(t)

	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)

	defer held.Close()

	s := newTestServer(t, func(c *Config) {
		c.Ports = Ports{DHCP: freeUDPPort(t), Proxy: freeUDPPort(t), TFTP: held.LocalAddr().(*net.UDPAddr).Port}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err = s.Run(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EADDRINUSE)
	assert.Contains(t, err.Error(), "listen on lo 127.0.0.1:")
	assert.NoError(t, ctx.Err(), "Run returned at once")
}

func TestBindErrorNamesPrivileges(t *testing.T) {
	t.Parallel()

	addr := netip.MustParseAddrPort("0.0.0.0:67")

	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM} {
		err := bindError("eth0", addr, &net.OpError{Op: "listen", Net: "udp4", Err: os.NewSyscallError("bind", errno)})
		require.ErrorIs(t, err, errno)
		assert.Contains(t, err.Error(), "CAP_NET_BIND_SERVICE and CAP_NET_RAW")
		assert.Contains(t, err.Error(), "--netboot-interface")
		assert.Contains(t, err.Error(), "eth0 0.0.0.0:67")
	}

	err := bindError("eth0", addr, syscall.EADDRINUSE)
	assert.NotContains(t, err.Error(), "CAP_NET")
}
