package netboot

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/require"
)

// fuzzSeeds are the packets FuzzReply starts from: every kind of client Reply answers and the malformed ones it
// must survive. testdata/fuzz/FuzzReply holds the same, so they run as plain tests too.
func fuzzSeeds(t testing.TB) map[string][]byte {
	t.Helper()

	packet := func(mods ...dhcpv4.Modifier) []byte { return pxePacket(t, mods...).ToBytes() }
	bios := packet(vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC))

	// Options end with 255 and padding: cut inside them, and let the last one claim 255 bytes it does not have.
	end := bytes.IndexByte(bios[240:], 255) + 240
	overrun := append(append([]byte{}, bios[:end]...), 77, 255, 'i', 'P', 'X', 'E')

	wrongCookie := append([]byte{}, bios...)
	wrongCookie[236] = 0

	return map[string][]byte{
		"bios":       bios,
		"uefi-x64":   packet(vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)),
		"uefi-arm64": packet(vendorClass("PXEClient:Arch:00011:UNDI:003000"), arch(iana.EFI_ARM64)),
		"ipxe": packet(vendorClass("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC),
			ipxeUserClass, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, make([]byte, 17))),
		"http-boot": packet(vendorClass("HTTPClient:Arch:00016:UNDI:003001"), arch(iana.EFI_X86_64_HTTP)),
		"request-4011": packet(vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 7))),
		"truncated-options": bios[:end-3],
		"option-overrun":    overrun,
		"wrong-cookie":      wrongCookie,
		"not-pxe":           packet(vendorClass("MSFT 5.0")),
	}
}

func FuzzReply(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}

	s := newTestServer(f, nil)

	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}

		for _, port := range []int{67, 4011} {
			reply := s.Reply(req, "lo", port)
			if reply == nil {
				continue
			}

			class := req.ClassIdentifier()
			require.True(t, strings.HasPrefix(class, "PXEClient") || strings.HasPrefix(class, "HTTPClient"),
				"answered a client of class %q", class)
			require.True(t, reply.YourIPAddr.Equal(net.IPv4zero), "yiaddr %s", reply.YourIPAddr)
			require.Equal(t, req.TransactionID, reply.TransactionID)
			require.Equal(t, req.ClientHWAddr, reply.ClientHWAddr)
			require.False(t, reply.Options.Has(dhcpv4.OptionIPAddressLeaseTime))

			back, err := dhcpv4.FromBytes(reply.ToBytes())
			require.NoError(t, err)
			require.Equal(t, reply.BootFileNameOption(), back.BootFileNameOption())
		}
	})
}

// TestFuzzSeeds checks the seeds are what their names say, so the fuzzer starts from real cases.
func TestFuzzSeeds(t *testing.T) {
	t.Parallel()

	s := newTestServer(t, nil)

	for name, data := range fuzzSeeds(t) {
		req, err := dhcpv4.FromBytes(data)

		switch name {
		case "truncated-options", "option-overrun", "wrong-cookie":
			require.Error(t, err, name)
		case "not-pxe":
			require.NoError(t, err)
			require.Nil(t, s.Reply(req, "lo", 67))
		case "request-4011":
			require.NoError(t, err)
			require.Equal(t, dhcpv4.MessageTypeAck, s.Reply(req, "lo", 4011).MessageType())
		default:
			require.NoError(t, err, name)
			require.NotNil(t, s.Reply(req, "lo", 67), name)
		}
	}
}
