package node

import (
	"context"
	"errors"
	"time"
)

// leaderDuties runs what only the Raft leader does — record the cluster settings and create the secure-boot keys
// once, keep the catalog in sync with the upstream registry — whenever this node leads, until ctx ends.
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
		case <-n.settingsChanged: // the catalog policy may have changed: a round now, if this member leads
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

		if err := n.cluster.EnsureRingPartitions(ctx, n.cfg.RingPartitions); err != nil {
			n.log.Error("record the ring's partition count", "error", err)
		}

		n.settings.Refresh() // a member that just started leads under the cluster's settings, not its flags

		if err := n.settings.Ensure(ctx); err != nil {
			n.log.Error("record the cluster settings", "error", err)
		}

		keysErr := errors.Join(n.keys.Ensure(ctx), n.cosign.Ensure(ctx))
		if keysErr != nil {
			n.log.Error("secure-boot keys: will retry", "error", keysErr)
		}

		wait, syncErr := n.catalog.Sync(ctx)
		if err := errors.Join(keysErr, syncErr); err != nil {
			wait = min(wait, n.catalog.Retry())
		}

		timer.Reset(wait)
	}
}
