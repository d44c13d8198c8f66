package node

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// ringPartitionsSetting keeps the ring's partition count in Raft: fixed by the first leader, so a member started
// with another --ring-partitions still places keys like the rest.
const ringPartitionsSetting = "ring-partitions"

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

		if _, ok, _ := n.store.Setting(ringPartitionsSetting); !ok {
			if _, err := n.store.InitSetting(ctx, ringPartitionsSetting,
				[]byte(strconv.Itoa(n.cfg.RingPartitions))); err != nil {
				n.log.Error("record the ring's partition count", "error", err)
			}
		}

		keysErr := errors.Join(n.keys.ensure(ctx), n.cosign.ensure(ctx))
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
