package netboot

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// BenchmarkOffers is the server's whole path for one DISCOVER short of the socket: decode, decide, encode.
func BenchmarkOffers(b *testing.B) {
	s := newTestServer(b, nil)
	data := pxePacket(b, vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)).ToBytes()

	b.ReportAllocs()

	for b.Loop() {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			b.Fatal(err)
		}

		reply := s.Reply(req, "lo", 67)
		if reply == nil {
			b.Fatal("no offer")
		}

		_ = reply.ToBytes()
	}

	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "offers/s")
}

// BenchmarkOffersUDP sends DISCOVERs to a running server over loopback and waits for each OFFER: one client, one
// packet in flight, so it measures the round trip through both sockets.
func BenchmarkOffersUDP(b *testing.B) {
	client := clientConn(b)
	s := loopbackServer(b, client, nil)
	req := pxePacket(b, vendorClass("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64),
		dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))

	// The first exchange waits for the server to start.
	if _, err := exchange(b, client, s.ports.DHCP, req); err != nil {
		b.Fatal(err)
	}

	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.ports.DHCP}
	buf := make([]byte, 1500)

	if err := client.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		b.Fatal(err)
	}

	for b.Loop() {
		req.TransactionID[0]++

		if _, err := client.WriteToUDP(req.ToBytes(), to); err != nil {
			b.Fatal(err)
		}

		n, _, err := client.ReadFromUDP(buf)
		if err != nil {
			b.Fatal(err)
		}

		offer, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || offer.TransactionID != req.TransactionID {
			b.Fatalf("not the offer: %v", err)
		}
	}

	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "offers/s")
}
