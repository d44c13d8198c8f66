package node

import (
	"context"
	"time"
)

// recordProfile records this member's build profile in Raft (build-profile/<id>) once the cluster takes writes,
// so that an ID named by the buildProfile setting or an asset record reads whole even when no live member has it.
func (n *Node) recordProfile(ctx context.Context) {
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.cluster.RecordProfile(wctx, n.profile)
		cancel()

		if err == nil {
			return
		}

		n.log.Debug("record this member's build profile: will retry", "error", err)

		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}
