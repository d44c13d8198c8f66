package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/edgefactory/edgefactory/node/internal/peer"
)

// currency tracks whether this member has applied the Raft log as far as the leader had committed when the member
// (re)started. Until it has, it is not ready: a machine sent here by a load balancer or a PXE chain would ask for
// schematics and assets it does not know yet. Once current it stays so: lagging by the replication delay later is
// what every follower does, and reads that miss ask the leader (records.go).
type currency struct {
	mu      sync.Mutex
	target  uint64 // the leader's read index when first asked; 0 until known
	current bool
}

// state says why the member is not current yet, or "" once it is.
func (c *currency) state(applied uint64) string {
	c.mu.Lock()
	defer c.mu.Unlock()

	switch {
	case c.current:
		return ""
	case c.target == 0:
		return "catching up: asking the Raft leader how far the log goes"
	default:
		return fmt.Sprintf("catching up: applied %d of %d", applied, c.target)
	}
}

// catchUpAtStart learns how far the leader's log went when this member came back, waits until this member has
// applied as much, and then marks it current. It retries until ctx ends (a member without a leader waits for one).
func (c *Cluster) catchUpAtStart(ctx context.Context) {
	start := time.Now()

	var target uint64

	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		askCtx, cancel := context.WithTimeout(ctx, peer.Timeout)
		idx, err := c.leaderReadIndex(askCtx)
		cancel()

		if err == nil {
			target = idx

			break
		}

		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}

	c.current.mu.Lock()
	c.current.target = target
	c.current.mu.Unlock()

	if err := c.store.WaitApplied(ctx, target); err != nil {
		return
	}

	c.current.mu.Lock()
	c.current.current = true
	c.current.mu.Unlock()

	c.log.Info("caught up with the Raft log", "applied", target, "took", time.Since(start).Round(time.Millisecond))
}
