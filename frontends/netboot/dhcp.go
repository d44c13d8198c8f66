package netboot

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// serveDHCP answers the packets arriving on one interface's DHCP or proxy socket, one at a time: deciding is a few
// microseconds, so a booting rack never queues behind it.
func (s *Server) serveDHCP(ctx context.Context, l dhcpListener) error {
	buf := make([]byte, 4096)

	for {
		n, peer, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}

			return fmt.Errorf("netboot: read on %s port %d: %w", l.iface, l.port, err)
		}

		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.metrics.requests[ignored].Inc()
			s.logger.Debug("netboot: not a DHCP packet", "from", peer, "interface", l.iface, "err", err)

			continue
		}

		reply, c, a := s.reply(req, l.iface, l.port)
		if reply == nil {
			continue
		}

		to := s.destination(req, peer, l.port)
		if _, err := l.conn.WriteToUDPAddrPort(reply.ToBytes(), to); err != nil {
			s.logger.Warn("netboot: send reply", "to", to, "interface", l.iface, "err", err)

			continue
		}

		s.logger.Info("netboot: answered", "mac", c.MAC.String(), "arch", c.Arch.String(), "ipxe", c.IPXE,
			"http_boot", c.HTTPBoot, "interface", c.Interface, "boot_file", a.BootFile)

		if s.cfg.Observe != nil {
			s.cfg.Observe(c, a)
		}
	}
}
