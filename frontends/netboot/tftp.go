package netboot

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/pin/tftp/v3"
)

var errNotServed = errors.New("file not found")

// newTFTP is a read-only TFTP server of the three binaries: no write handler, so every write request is refused.
func (s *Server) newTFTP() *tftp.Server {
	return tftp.NewServer(s.sendFile, nil)
}

// sendFile sends one of the binaries, by exact name (a leading "/" tolerated, as firmware often sends one). Any
// other name, traversal included, is refused with a TFTP error.
func (s *Server) sendFile(requested string, rf io.ReaderFrom) error {
	name := strings.TrimPrefix(requested, "/")
	if !slices.Contains(binaries, name) {
		s.metrics.transfer("other", "refused")
		s.logger.Debug("netboot: TFTP request refused", "file", requested, "from", remote(rf))

		return errNotServed
	}

	f, err := s.cfg.Binaries.Open(name)
	if err != nil {
		s.metrics.transfer(name, "failed")

		return fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()

	// With the size known, pin/tftp answers the tsize option; blksize it negotiates itself.
	if st, err := f.Stat(); err == nil {
		if out, ok := rf.(tftp.OutgoingTransfer); ok {
			out.SetSize(st.Size())
		}
	}

	if _, err := rf.ReadFrom(f); err != nil {
		s.metrics.transfer(name, "failed")
		s.logger.Warn("netboot: TFTP transfer failed", "file", name, "to", remote(rf), "err", err)

		// The transfer has already told the client.
		return nil
	}

	s.metrics.transfer(name, "sent")
	s.logger.Debug("netboot: TFTP sent", "file", name, "to", remote(rf))

	return nil
}

func remote(rf io.ReaderFrom) string {
	if r, ok := rf.(interface{ RemoteAddr() net.UDPAddr }); ok {
		a := r.RemoteAddr()

		return a.String()
	}

	return ""
}
