package assets

import (
	"sync"
	"time"
)

// Problem is one failure on this member that an operator should see: a failed build, a peer's corrupt copy.
type Problem struct {
	Time  time.Time
	What  string // what failed: "build <path> (<key>)", "copy of <digest> from <member>"
	Error string
}

// problemsKept is how many recent problems a member keeps.
const problemsKept = 50

// problems keeps the last problemsKept problems, oldest dropped first.
type problems struct {
	mu   sync.Mutex
	ring []Problem // at most problemsKept; next is the slot written next once full
	next int
}

func (p *problems) add(pr Problem) {
	p.mu.Lock()
	defer p.mu.Unlock()

	if len(p.ring) < problemsKept {
		p.ring = append(p.ring, pr)

		return
	}

	p.ring[p.next] = pr
	p.next = (p.next + 1) % problemsKept
}

// recent lists the problems kept, newest first.
func (p *problems) recent() []Problem {
	p.mu.Lock()
	defer p.mu.Unlock()

	out := make([]Problem, 0, len(p.ring))
	for i := range len(p.ring) {
		// Newest is just before next (or the last appended while not full).
		out = append(out, p.ring[(p.next-1-i+2*len(p.ring))%len(p.ring)])
	}

	return out
}

// Problems lists this member's recent failed builds and corrupt copies from peers, newest first.
func (s *Service) Problems() []Problem { return s.problems.recent() }

// CacheStats counts the asset requests this member answered since it started, and those answered from its own
// store (without building or copying).
func (s *Service) CacheStats() (hits, requests uint64) { return s.hits.Load(), s.requests.Load() }
