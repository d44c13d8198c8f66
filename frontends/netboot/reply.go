package netboot

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Arch is the firmware a client runs, from its option 93 (or, lacking that, its vendor class).
type Arch int

// The architectures the package has a binary for; anything else is ArchUnknown and is not answered.
const (
	ArchUnknown Arch = iota
	ArchBIOS
	ArchUEFIx64
	ArchUEFIarm64
)

// String names the architecture in logs.
func (a Arch) String() string {
	switch a {
	case ArchBIOS:
		return "bios"
	case ArchUEFIx64:
		return "uefi-x64"
	case ArchUEFIarm64:
		return "uefi-arm64"
	case ArchUnknown:
	}

	return "unknown"
}

// archOf maps an RFC 4578 architecture type. 6 (EFI IA32) has no binary here and stays unknown; 9 is what many x64
// firmwares send (EFI BC).
func archOf(t iana.Arch) Arch {
	switch t {
	case iana.INTEL_X86PC:
		return ArchBIOS
	case iana.EFI_X86_64, iana.EFI_BC, iana.EFI_X86_64_HTTP:
		return ArchUEFIx64
	case iana.EFI_ARM64, iana.EFI_ARM64_HTTP:
		return ArchUEFIarm64
	default:
		return ArchUnknown
	}
}

// Client is what a DHCP packet says about the machine asking.
type Client struct {
	MAC  net.HardwareAddr
	Arch Arch
	// IPXE is set when the user class (option 77) is "iPXE": the client is iPXE itself and can fetch a script.
	IPXE bool
	// HTTPBoot is set when the vendor class (option 60) starts with "HTTPClient": UEFI HTTP Boot.
	HTTPBoot bool
	// UUID is the client machine identifier (option 97) in wire order, 8-4-4-4-12 lowercase, or "". Firmware often
	// stores the first three fields little-endian, as SMBIOS does, so it may differ from what dmidecode prints.
	UUID string
	// Interface is the interface the packet arrived on.
	Interface string
}

// Answer is what a client is told.
type Answer struct {
	// BootFile is a TFTP file name (e.g. "undionly.kpxe") or an http:// URL.
	BootFile string
	// ServerIP is this member's address on the client's interface: siaddr, server identifier and TFTP server.
	ServerIP netip.Addr
}

// The result label of edgefactory_netboot_dhcp_requests_total.
type outcome int

const (
	ignored outcome = iota
	notResponder
	answered
)

// pxeDirectBoot is option 43 for PXE ROMs: sub-option 6 (PXE_DISCOVERY_CONTROL) = 8, "boot the file in this packet,
// no boot server discovery", then the PXE end tag. dnsmasq's proxy mode and Tinkerbell's smee send the same.
var pxeDirectBoot = []byte{6, 1, 8, 255}

// Reply is the decision the server makes for a packet req that arrived on interface iface at local port port (the
// DHCP or proxy port): the reply to send, or nil to stay silent. It never panics, whatever req holds.
func (s *Server) Reply(req *dhcpv4.DHCPv4, iface string, port int) *dhcpv4.DHCPv4 {
	reply, _, _ := s.reply(req, iface, port)

	return reply
}

// reply is Reply with what the caller logs and observes, counted.
func (s *Server) reply(req *dhcpv4.DHCPv4, iface string, port int) (*dhcpv4.DHCPv4, Client, Answer) {
	reply, c, a, o := s.decide(req, iface, port)
	s.metrics.requests[o].Inc()

	return reply, c, a
}

func (s *Server) decide(req *dhcpv4.DHCPv4, iface string, port int) (*dhcpv4.DHCPv4, Client, Answer, outcome) {
	ip, ok := s.addrs[iface]
	if !ok || req == nil {
		return nil, Client{}, Answer{}, ignored
	}

	replyType, ok := s.replyType(req, ip, port)
	if !ok {
		return nil, Client{}, Answer{}, ignored
	}

	c, ok := clientOf(req, iface)
	if !ok {
		return nil, Client{}, Answer{}, ignored
	}

	a := Answer{BootFile: s.bootFile(c, ip), ServerIP: ip}
	if a.BootFile == "" {
		return nil, c, a, ignored
	}

	asking := s.asking.observe(c.MAC, req.TransactionID, s.now())
	if s.cfg.Respond != nil && !s.cfg.Respond(c, asking) {
		return nil, c, a, notResponder
	}

	return build(req, replyType, c, a), c, a, answered
}

// replyType is the message type answering req, if a proxyDHCP server answers it at all on this port.
func (s *Server) replyType(req *dhcpv4.DHCPv4, ip netip.Addr, port int) (dhcpv4.MessageType, bool) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return 0, false
	}

	t := req.MessageType()

	switch port {
	case s.ports.DHCP:
		switch t { //nolint:exhaustive // the rest are not asked of a proxyDHCP server
		case dhcpv4.MessageTypeDiscover:
			return dhcpv4.MessageTypeOffer, true
		case dhcpv4.MessageTypeRequest:
			// A broadcast REQUEST naming another server is for the site's DHCP server.
			if id := req.Options.Get(dhcpv4.OptionServerIdentifier); id != nil && !bytes.Equal(id, ip.AsSlice()) {
				return 0, false
			}

			return dhcpv4.MessageTypeAck, true
		}
	case s.ports.Proxy:
		if t == dhcpv4.MessageTypeRequest || t == dhcpv4.MessageTypeInform {
			return dhcpv4.MessageTypeAck, true
		}
	}

	return 0, false
}

// clientOf reads a PXE or HTTP Boot client from req; false for any other client or a malformed packet.
func clientOf(req *dhcpv4.DHCPv4, iface string) (Client, bool) {
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return Client{}, false
	}

	class := req.ClassIdentifier()
	c := Client{
		MAC:       slices.Clone(req.ClientHWAddr),
		HTTPBoot:  strings.HasPrefix(class, "HTTPClient"),
		IPXE:      isIPXE(req),
		UUID:      machineID(req.Options.Get(dhcpv4.OptionClientMachineIdentifier)),
		Interface: iface,
	}

	if !c.HTTPBoot && !strings.HasPrefix(class, "PXEClient") {
		return Client{}, false
	}

	c.Arch = clientArch(req, class)

	return c, c.Arch != ArchUnknown
}

func isIPXE(req *dhcpv4.DHCPv4) bool {
	// iPXE sends "iPXE" bare rather than as an RFC 3004 list; accept both.
	return string(req.Options.Get(dhcpv4.OptionUserClassInformation)) == "iPXE" || slices.Contains(req.UserClass(), "iPXE")
}

// clientArch reads option 93 (its first entry), or else the "Arch:NNNNN" field of a "PXEClient:Arch:00007:UNDI:..."
// vendor class.
func clientArch(req *dhcpv4.DHCPv4, class string) Arch {
	if req.Options.Has(dhcpv4.OptionClientSystemArchitectureType) {
		archs := req.ClientArch()
		if len(archs) == 0 {
			return ArchUnknown
		}

		return archOf(archs[0])
	}

	fields := strings.Split(class, ":")
	if len(fields) < 3 || fields[1] != "Arch" {
		return ArchUnknown
	}

	t, err := strconv.ParseUint(fields[2], 10, 16)
	if err != nil {
		return ArchUnknown
	}

	return archOf(iana.Arch(t))
}

// machineID formats option 97: type 0 followed by a 16-byte GUID.
func machineID(opt []byte) string {
	if len(opt) != 17 || opt[0] != 0 {
		return ""
	}

	id, err := uuid.FromBytes(opt[1:])
	if err != nil {
		return ""
	}

	return id.String()
}

// bootFile is what c loads from the member at ip, or "" when there is nothing for it.
func (s *Server) bootFile(c Client, ip netip.Addr) string {
	base := "http://" + netip.AddrPortFrom(ip, uint16(s.cfg.HTTPPort)).String()

	switch {
	case c.IPXE:
		return base + "/pxe/boot.ipxe"
	case c.HTTPBoot && c.Arch == ArchUEFIarm64:
		return base + "/ipxe/" + UEFIarm64Binary
	case c.HTTPBoot && c.Arch == ArchUEFIx64:
		return base + "/ipxe/" + UEFIx64Binary
	case c.HTTPBoot:
		return ""
	}

	switch c.Arch {
	case ArchBIOS:
		return BIOSBinary
	case ArchUEFIx64:
		return UEFIx64Binary
	case ArchUEFIarm64:
		return UEFIarm64Binary
	case ArchUnknown:
	}

	return ""
}

// build makes the reply: boot information only, never an address or a lease.
func build(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, c Client, a Answer) *dhcpv4.DHCPv4 {
	server := net.IP(a.ServerIP.AsSlice())

	reply := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  server,
		GatewayIPAddr: ipv4OrZero(req.GatewayIPAddr),
		ClientHWAddr:  slices.Clone(req.ClientHWAddr),
		Options:       make(dhcpv4.Options, 6),
	}

	if t == dhcpv4.MessageTypeAck {
		reply.ClientIPAddr = ipv4OrZero(req.ClientIPAddr)
	}

	// The BOOTP file field holds 127 bytes; longer names go in option 67 only.
	if len(a.BootFile) < 128 {
		reply.BootFileName = a.BootFile
	}

	reply.UpdateOption(dhcpv4.OptMessageType(t))
	reply.UpdateOption(dhcpv4.OptServerIdentifier(server))
	reply.UpdateOption(dhcpv4.OptBootFileName(a.BootFile))

	if c.HTTPBoot {
		reply.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	} else {
		reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	}

	if id := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); id != nil {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, slices.Clone(id)))
	}

	if !c.IPXE && !c.HTTPBoot {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDirectBoot))
	}

	return reply
}

func ipv4OrZero(ip net.IP) net.IP {
	if ip4 := ip.To4(); ip4 != nil {
		return slices.Clone(ip4)
	}

	return net.IPv4zero
}

// destination is where the reply to req, received from peer on port, goes: back to the sender on the proxy port;
// on the DHCP port to the relay (giaddr), else to the client's address when it has one, else broadcast.
func (s *Server) destination(req *dhcpv4.DHCPv4, peer netip.AddrPort, port int) netip.AddrPort {
	if port == s.ports.Proxy {
		return netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	}

	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() {
		return netip.AddrPortFrom(gi, uint16(s.ports.DHCP))
	}

	if ci, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !ci.IsUnspecified() {
		return netip.AddrPortFrom(ci, uint16(s.ports.Client))
	}

	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), uint16(s.ports.Client))
}
