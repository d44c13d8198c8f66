package netboot

import (
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// asking remembers when each exchange (a MAC and the transaction ID its retransmissions keep) began, so Respond can
// let a second member answer a machine the first has left unanswered, while the next exchange of a machine that was
// answered (iPXE's own DHCP after the firmware's) starts again at zero. Memory is bounded: past max exchanges,
// silent ones go first, then any.
type asking struct {
	mu        sync.Mutex
	attempts  map[dhcpExchange]attempt
	max       int
	quiet     time.Duration // silence that ends an attempt
	lastSweep time.Time
}

type attempt struct{ first, last time.Time }

// dhcpExchange is one DHCP conversation of one machine.
type dhcpExchange struct {
	mac [6]byte
	xid dhcpv4.TransactionID
}

func newAsking(maxMACs int, quiet time.Duration) *asking {
	return &asking{attempts: make(map[dhcpExchange]attempt), max: maxMACs, quiet: quiet}
}

// observe records a packet of exchange xid from mac at now and says how long the exchange has lasted (0 for a new
// one).
func (a *asking) observe(mac net.HardwareAddr, xid dhcpv4.TransactionID, now time.Time) time.Duration {
	key := dhcpExchange{xid: xid}
	copy(key.mac[:], mac)

	a.mu.Lock()
	defer a.mu.Unlock()

	at, ok := a.attempts[key]
	if !ok || now.Sub(at.last) > a.quiet {
		if !ok && len(a.attempts) >= a.max {
			a.evict(now)
		}

		at.first = now
	}

	at.last = now
	a.attempts[key] = at

	return now.Sub(at.first)
}

// evict makes room for one MAC: the silent go first (swept at most once a second, so a flood of new MACs does not
// make every packet walk the map), then an arbitrary one.
func (a *asking) evict(now time.Time) {
	if now.Sub(a.lastSweep) >= time.Second {
		a.lastSweep = now

		for k, at := range a.attempts {
			if now.Sub(at.last) > a.quiet {
				delete(a.attempts, k)
			}
		}
	}

	for k := range a.attempts {
		if len(a.attempts) < a.max {
			return
		}

		delete(a.attempts, k)
	}
}
