package netboot

import (
	"net"
	"sync"
	"time"
)

// asking remembers when each MAC began its current attempt to boot, so Respond can let a second member answer a
// machine the first has left unanswered. Memory is bounded: past max MACs, silent ones go first, then any.
type asking struct {
	mu        sync.Mutex
	attempts  map[[6]byte]attempt
	max       int
	quiet     time.Duration // silence that ends an attempt
	lastSweep time.Time
}

type attempt struct{ first, last time.Time }

func newAsking(maxMACs int, quiet time.Duration) *asking {
	return &asking{attempts: make(map[[6]byte]attempt), max: maxMACs, quiet: quiet}
}

// observe records a packet from mac at now and says how long its attempt has lasted (0 for a new one).
func (a *asking) observe(mac net.HardwareAddr, now time.Time) time.Duration {
	var key [6]byte
	copy(key[:], mac)

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
