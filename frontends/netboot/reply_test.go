package netboot

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"testing/fstest"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func testBinaries() fstest.MapFS {
	return fstest.MapFS{
		BIOSBinary:      {Data: bytes.Repeat([]byte("bios-ipxe "), 300), Mode: 0o644},
		UEFIx64Binary:   {Data: bytes.Repeat([]byte("uefi-x64 "), 200), Mode: 0o644},
		UEFIarm64Binary: {Data: []byte("uefi-arm64"), Mode: 0o644},
	}
}

// newTestServer answers on the loopback interface, whose address (127.0.0.1) is the server IP.
func newTestServer(t testing.TB, mutate func(*Config)) *Server {
	t.Helper()

	cfg := Config{Interfaces: []string{"lo"}, HTTPPort: 8080, Binaries: testBinaries()}
	if mutate != nil {
		mutate(&cfg)
	}

	s, err := New(cfg)
	require.NoError(t, err)

	return s
}

// pxePacket is a request as a PXE client sends it.
func pxePacket(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()

	p, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(testMAC),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithBroadcast(true),
	}, mods...)...)
	require.NoError(t, err)

	return p
}

func vendorClass(s string) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(s)) }

func arch(a iana.Arch) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClientArch(a)) }

var ipxeUserClass = dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))

func TestReplyAnswers(t *testing.T) {
	t.Parallel()

	guid := append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)

	cases := []struct {
		name      string
		mods      []dhcpv4.Modifier
		port      int
		wantType  dhcpv4.MessageType
		wantFile  string
		wantClass string
		wantPXE43 bool
		wantUUID  string
	}{
		{
			name:     "BIOS PXE ROM",
			mods:     []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: BIOSBinary, wantClass: "PXEClient", wantPXE43: true,
		},
		{
			name:     "UEFI x64 (7)",
			mods:     []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: UEFIx64Binary, wantClass: "PXEClient", wantPXE43: true,
		},
		{
			name:     "UEFI x64 as EFI BC (9)",
			mods:     []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00009:UNDI:003016"), arch(iana.EFI_BC)},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: UEFIx64Binary, wantClass: "PXEClient", wantPXE43: true,
		},
		{
			name:     "UEFI arm64",
			mods:     []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00011:UNDI:003000"), arch(iana.EFI_ARM64)},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: UEFIarm64Binary, wantClass: "PXEClient", wantPXE43: true,
		},
		{
			name:     "arch from the vendor class when option 93 is missing",
			mods:     []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00007:UNDI:003016")},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: UEFIx64Binary, wantClass: "PXEClient", wantPXE43: true,
		},
		{
			name: "iPXE chains the node's script",
			mods: []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC),
				ipxeUserClass},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://127.0.0.1:8080/pxe/boot.ipxe", wantClass: "PXEClient",
		},
		{
			name: "iPXE as an RFC 3004 user class",
			mods: []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64),
				dhcpv4.WithUserClass("iPXE", true)},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://127.0.0.1:8080/pxe/boot.ipxe", wantClass: "PXEClient",
		},
		{
			name:     "UEFI HTTP Boot x64",
			mods:     []dhcpv4.Modifier{vendorClass("HTTPClient:Arch:00016:UNDI:003001"), arch(iana.EFI_X86_64_HTTP)},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://127.0.0.1:8080/ipxe/ipxe.efi", wantClass: "HTTPClient",
		},
		{
			name:     "UEFI HTTP Boot arm64",
			mods:     []dhcpv4.Modifier{vendorClass("HTTPClient:Arch:00019:UNDI:003001"), arch(iana.EFI_ARM64_HTTP)},
			port:     67,
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://127.0.0.1:8080/ipxe/ipxe-arm64.efi",
			wantClass: "HTTPClient",
		},
		{
			name: "REQUEST on 4011 is ACKed, GUID echoed",
			mods: []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64),
				dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 9)),
				dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, guid)},
			port:     4011,
			wantType: dhcpv4.MessageTypeAck, wantFile: UEFIx64Binary, wantClass: "PXEClient", wantPXE43: true,
			wantUUID: "abababab-abab-abab-abab-abababababab",
		},
		{
			name: "INFORM on 4011 is ACKed",
			mods: []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC),
				dhcpv4.WithMessageType(dhcpv4.MessageTypeInform)},
			port:     4011,
			wantType: dhcpv4.MessageTypeAck, wantFile: BIOSBinary, wantClass: "PXEClient", wantPXE43: true,
		},
		{
			name: "REQUEST on 67 naming this server is ACKed",
			mods: []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC),
				dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1)))},
			port:     67,
			wantType: dhcpv4.MessageTypeAck, wantFile: BIOSBinary, wantClass: "PXEClient", wantPXE43: true,
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			var observed []Client

			s := newTestServer(t, func(c *Config) {
				c.Respond = func(c Client, _ time.Duration) bool {
					observed = append(observed, c)

					return true
				}
			})
			req := pxePacket(t, tc.mods...)
			// A client's leftovers must not leak into the reply.
			req.YourIPAddr = net.IPv4(10, 0, 0, 99)

			reply := s.Reply(req, "lo", tc.port)
			require.NotNil(t, reply)

			assert.Equal(t, dhcpv4.OpcodeBootReply, reply.OpCode)
			assert.Equal(t, tc.wantType, reply.MessageType())
			assert.Equal(t, req.TransactionID, reply.TransactionID)
			assert.Equal(t, req.ClientHWAddr, reply.ClientHWAddr)
			assert.Equal(t, req.Flags, reply.Flags)
			assertNoAddress(t, reply)
			assert.True(t, reply.ServerIPAddr.Equal(net.IPv4(127, 0, 0, 1)), "siaddr %s", reply.ServerIPAddr)
			assert.True(t, reply.ServerIdentifier().Equal(net.IPv4(127, 0, 0, 1)))
			assert.Equal(t, tc.wantFile, reply.BootFileName)
			assert.Equal(t, tc.wantFile, reply.BootFileNameOption())
			assert.Equal(t, tc.wantClass, reply.ClassIdentifier())

			if tc.wantPXE43 {
				assert.Equal(t, []byte{6, 1, 8, 255}, reply.Options.Get(dhcpv4.OptionVendorSpecificInformation))
			} else {
				assert.False(t, reply.Options.Has(dhcpv4.OptionVendorSpecificInformation))
			}

			assert.Equal(t, req.Options.Get(dhcpv4.OptionClientMachineIdentifier),
				reply.Options.Get(dhcpv4.OptionClientMachineIdentifier))

			if tc.wantType == dhcpv4.MessageTypeAck {
				assert.True(t, reply.ClientIPAddr.Equal(req.ClientIPAddr.To4()), "ciaddr %s", reply.ClientIPAddr)
			}

			// The reply survives the wire.
			back, err := dhcpv4.FromBytes(reply.ToBytes())
			require.NoError(t, err)
			assert.Equal(t, tc.wantFile, back.BootFileNameOption())

			require.Len(t, observed, 1)
			assert.Equal(t, tc.wantUUID, observed[0].UUID)
			assert.Equal(t, "lo", observed[0].Interface)
			assert.Equal(t, testMAC, observed[0].MAC)
		})
	}
}

// assertNoAddress checks a reply gives no address and no lease.
func assertNoAddress(t *testing.T, reply *dhcpv4.DHCPv4) {
	t.Helper()

	assert.True(t, reply.YourIPAddr.Equal(net.IPv4zero), "yiaddr %s", reply.YourIPAddr)

	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRequestedIPAddress,
		dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue} {
		assert.False(t, reply.Options.Has(o), "option %s", o)
	}
}

func TestReplyIgnores(t *testing.T) {
	t.Parallel()

	bios := []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)}
	with := func(mods ...dhcpv4.Modifier) []dhcpv4.Modifier {
		return append(append([]dhcpv4.Modifier{}, bios...), mods...)
	}

	cases := []struct {
		name  string
		mods  []dhcpv4.Modifier
		iface string
		port  int
	}{
		{name: "no vendor class", mods: []dhcpv4.Modifier{arch(iana.INTEL_X86PC)}},
		{name: "not a PXE client", mods: []dhcpv4.Modifier{vendorClass("MSFT 5.0")}},
		{name: "udhcp", mods: []dhcpv4.Modifier{vendorClass("udhcp 1.36.1"), arch(iana.INTEL_X86PC)}},
		{name: "EFI IA32 has no binary",
			mods: []dhcpv4.Modifier{vendorClass("PXEClient:Arch:00006:UNDI:003016"), arch(iana.EFI_IA32)}},
		{name: "unknown arch", mods: []dhcpv4.Modifier{vendorClass("PXEClient"), arch(iana.EFI_RISCV64)}},
		{name: "no arch at all", mods: []dhcpv4.Modifier{vendorClass("PXEClient")}},
		{name: "malformed option 93",
			mods: []dhcpv4.Modifier{vendorClass("PXEClient"), dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0})}},
		{name: "HTTP Boot from BIOS", mods: []dhcpv4.Modifier{vendorClass("HTTPClient"), arch(iana.INTEL_X86PC)}},
		{name: "BOOTREPLY", mods: with(func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply })},
		{name: "no message type", mods: with(dhcpv4.WithoutOption(dhcpv4.OptionDHCPMessageType))},
		{name: "RELEASE", mods: with(dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease))},
		{name: "INFORM on 67", mods: with(dhcpv4.WithMessageType(dhcpv4.MessageTypeInform))},
		{name: "DISCOVER on 4011", mods: bios, port: 4011},
		{name: "REQUEST for the site's DHCP server", mods: with(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))},
		{name: "not Ethernet", mods: with(dhcpv4.WithHWType(iana.HWTypeInfiniband))},
		{name: "short MAC", mods: with(func(d *dhcpv4.DHCPv4) { d.ClientHWAddr = d.ClientHWAddr[:4] })},
		{name: "unknown port", mods: bios, port: 68},
		{name: "unknown interface", mods: bios, iface: "eth9"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			reg := prometheus.NewPedanticRegistry()
			s := newTestServer(t, func(c *Config) { c.Registerer = reg })

			iface, port := tc.iface, tc.port
			if iface == "" {
				iface = "lo"
			}

			if port == 0 {
				port = 67
			}

			assert.Nil(t, s.Reply(pxePacket(t, tc.mods...), iface, port))
			assert.InDelta(t, 1, testutil.ToFloat64(s.metrics.requests[ignored]), 0)
			assert.InDelta(t, 0, testutil.ToFloat64(s.metrics.requests[answered]), 0)
		})
	}

	t.Run("nil packet", func(t *testing.T) {
		t.Parallel()
		assert.Nil(t, newTestServer(t, nil).Reply(nil, "lo", 67))
	})
}

func TestReplyRespondDecides(t *testing.T) {
	t.Parallel()

	now := time.Unix(1_700_000_000, 0)

	var (
		asked   []time.Duration
		respond bool
	)

	s := newTestServer(t, func(c *Config) {
		c.Registerer = prometheus.NewPedanticRegistry()
		c.Respond = func(_ Client, asking time.Duration) bool {
			asked = append(asked, asking)

			return respond
		}
	})
	s.now = func() time.Time { return now }

	// Retransmissions of one DISCOVER keep its transaction ID.
	packet := pxePacket(t, vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC))
	discover := func() *dhcpv4.DHCPv4 { return s.Reply(packet, "lo", 67) }

	assert.Nil(t, discover(), "Respond false: silent")

	now = now.Add(4 * time.Second)
	assert.Nil(t, discover())

	respond = true
	now = now.Add(4 * time.Second)
	assert.NotNil(t, discover(), "the next member answers once the machine has asked long enough")

	// A minute of silence starts a new attempt.
	now = now.Add(61 * time.Second)
	assert.NotNil(t, discover())

	// The machine's next exchange (iPXE's DHCP after the firmware's) is a new one, however soon it comes.
	now = now.Add(3 * time.Second)
	packet = pxePacket(t, vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC))
	assert.NotNil(t, discover())

	assert.Equal(t, []time.Duration{0, 4 * time.Second, 8 * time.Second, 0, 0}, asked)
	assert.InDelta(t, 2, testutil.ToFloat64(s.metrics.requests[notResponder]), 0)
	assert.InDelta(t, 3, testutil.ToFloat64(s.metrics.requests[answered]), 0)
}

// xid1 is one exchange's transaction ID.
var xid1 = dhcpv4.TransactionID{0, 0, 0, 1}

func TestAskingIsBounded(t *testing.T) {
	t.Parallel()

	a := newAsking(4, time.Minute)
	now := time.Unix(1_700_000_000, 0)
	mac := func(i byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, i} }

	for i := range byte(4) {
		a.observe(mac(i), xid1, now)
	}

	now = now.Add(10 * time.Second)
	assert.Equal(t, 10*time.Second, a.observe(mac(0), xid1, now), "a known MAC keeps its first-seen")

	for i := range byte(100) {
		a.observe(mac(10+i), xid1, now)
		assert.LessOrEqual(t, len(a.attempts), 4)
	}

	// Once the old MACs are silent past the quiet period they are swept first: a newcomer takes the place of one of
	// them, never of a machine still asking.
	b := newAsking(4, time.Minute)
	start := time.Unix(1_700_000_000, 0)

	for i := range byte(3) {
		b.observe(mac(i), xid1, start)
	}

	later := start.Add(2 * time.Minute)
	b.observe(mac(9), xid1, later)
	b.observe(mac(10), xid1, later)
	assert.Equal(t, time.Duration(0), b.observe(mac(10), xid1, later))
	assert.Equal(t, 30*time.Second, b.observe(mac(9), xid1, later.Add(30*time.Second)))
	assert.Len(t, b.attempts, 2)
}

func TestDestination(t *testing.T) {
	t.Parallel()

	s := newTestServer(t, nil)
	peer := netip.MustParseAddrPort("10.0.0.9:1234")

	cases := []struct {
		name string
		mods []dhcpv4.Modifier
		port int
		want string
	}{
		{name: "no address: broadcast", port: 67, want: "255.255.255.255:68"},
		{name: "client address: unicast", port: 67, mods: []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 7))},
			want: "10.0.0.7:68"},
		{name: "relayed: to the relay", port: 67, mods: []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IPv4(10, 0, 1, 1))},
			want: "10.0.1.1:67"},
		{name: "proxy port: back to the sender", port: 4011,
			mods: []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 7))}, want: "10.0.0.9:1234"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, s.destination(pxePacket(t, tc.mods...), peer, tc.port).String())
		})
	}
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()

	missing := testBinaries()
	delete(missing, UEFIarm64Binary)

	dir := testBinaries()
	dir[UEFIx64Binary] = &fstest.MapFile{Mode: 0o755 | 1<<31} // fs.ModeDir

	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no interface", cfg: Config{HTTPPort: 80, Binaries: testBinaries()}, want: "no interface"},
		{name: "missing interface", cfg: Config{Interfaces: []string{"nosuch0"}, HTTPPort: 80, Binaries: testBinaries()},
			want: "interface nosuch0"},
		{name: "twice", cfg: Config{Interfaces: []string{"lo", "lo"}, HTTPPort: 80, Binaries: testBinaries()},
			want: "given twice"},
		{name: "bad HTTP port", cfg: Config{Interfaces: []string{"lo"}, Binaries: testBinaries()}, want: "HTTP port"},
		{name: "no binaries", cfg: Config{Interfaces: []string{"lo"}, HTTPPort: 80}, want: "no iPXE binaries"},
		{name: "a binary missing", cfg: Config{Interfaces: []string{"lo"}, HTTPPort: 80, Binaries: missing},
			want: UEFIarm64Binary},
		{name: "a directory", cfg: Config{Interfaces: []string{"lo"}, HTTPPort: 80, Binaries: dir},
			want: "not a regular file"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			_, err := New(tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
