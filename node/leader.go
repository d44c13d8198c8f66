package node

import (
	"context"
	"errors"
	"time"
)

// leaderDuties runs what only the Raft leader does — create the secure-boot keys once, keep the catalog in sync
// with the upstream registry — whenever this node leads, until ctx ends.
func (n *Node) leaderDuties(ctx context.Context) {
	leadership, stop := n.store.WatchLeadership()
	defer stop()

	leader := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case l, ok := <-leadership:
			if !ok {
				return
			}

			if leader = l; !leader {
				timer.Stop()

				continue
			}
		}

		if !leader {
			continue
		}

		keysErr := n.keys.ensure(ctx)
		if keysErr != nil {
			n.log.Error("secure-boot keys: will retry", "error", keysErr)
		}

		syncErr := n.sync.syncOnce(ctx)
		n.sync.setLastError(syncErr)

		wait := n.cfg.CatalogRefresh
		if err := errors.Join(keysErr, syncErr); err != nil {
			wait = n.sync.retry
		}

		timer.Reset(wait)
	}
}
