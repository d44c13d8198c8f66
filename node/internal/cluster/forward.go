package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
)

// WriteDeadline bounds how long a write waits for a reachable leader (an election takes a second or two; longer
// means this node has lost its quorum).
const WriteDeadline = 8 * time.Second

// ApplyCommand commits cmd through Raft from any node (raftstore.Applier): on the leader directly, elsewhere forwarded
// over the peer API. It returns after commit and after this node has applied the entry too, so the caller reads its own
// write. While no leader is reachable it retries until WriteDeadline and then answers Unavailable (503).
func (c *Cluster) ApplyCommand(ctx context.Context, cmd raftstore.Command) (raftstore.Result, error) {
	var res raftstore.Result

	err := c.withLeader(ctx, "write", func(ctx context.Context) error {
		var err error
		res, err = c.applyOnce(ctx, cmd)

		return err
	})

	return res, err
}

// withLeader runs op until it succeeds or fails for a reason other than a missing leader, retrying while an
// election may still produce one (until WriteDeadline, or at once when this node has been without a leader for
// several election timeouts: then it is cut off). what names the operation in the Unavailable error.
func (c *Cluster) withLeader(ctx context.Context, what string, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, WriteDeadline)
	defer cancel()

	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		err := op(ctx)
		if err == nil || !retryable(err) {
			return err
		}

		if c.store.LeaderlessFor() > 4*c.store.ElectionTimeout() {
			cancel()
		}

		select {
		case <-ctx.Done():
			return frontends.NewError(frontends.ClassUnavailable, fmt.Sprintf(
				"cannot %s: no Raft leader reachable from node %s (the cluster is electing a leader or this "+
					"node is cut off from its quorum); reads of existing data still work: %v", what,
				c.name, err), err)
		case <-time.After(backoff):
		}
	}
}

func (c *Cluster) applyOnce(ctx context.Context, cmd raftstore.Command) (raftstore.Result, error) {
	res, err := c.store.ApplyCommand(ctx, cmd)

	var notLeader *raftstore.NotLeaderError
	if !errors.As(err, &notLeader) {
		return res, err
	}

	if notLeader.LeaderID == "" || notLeader.LeaderID == c.name {
		// An election is on, or this node is taking over as leader (Raft names it before it accepts writes; a
		// member does not call its own peer API): retry.
		return res, err
	}

	base, ok := c.view.PeerURL(notLeader.LeaderID)
	if !ok {
		return res, fmt.Errorf("leader %s is not a known member: %w", notLeader.LeaderID, raftstore.ErrNotLeader)
	}

	res, err = c.peers.Apply(ctx, base, cmd)
	if err != nil {
		return res, err
	}

	// Read-your-writes: wait until this node has applied what the leader committed.
	if werr := c.store.WaitApplied(ctx, res.Index); werr != nil {
		return res, fmt.Errorf("committed at index %d but not yet applied here: %w", res.Index, werr)
	}

	return res, nil
}

// retryable reports whether a write failed for want of a reachable leader (rather than being refused).
func retryable(err error) bool {
	if errors.Is(err, raftstore.ErrNotLeader) || errors.Is(err, raftstore.ErrLeadershipLost) {
		return true
	}

	return errors.Is(err, peer.ErrUnreachable) || errors.Is(err, peer.ErrUnavailable)
}

// leaderReadIndex is the leader's read index (an applied index covering every acknowledged write): this node's own
// when it leads, else the leader's over the peer API.
func (c *Cluster) leaderReadIndex(ctx context.Context) (uint64, error) {
	if c.store.IsLeader() {
		// Even the leader: a new one may not have applied a write its predecessor acknowledged.
		idx, err := c.store.ReadIndex(ctx)
		if err == nil || !retryable(err) {
			return idx, err
		}
		// Deposed meanwhile: ask the leader this node knows now.
	}

	base, err := c.leaderURL()
	if err != nil {
		return 0, err
	}

	return c.peers.ReadIndex(ctx, base)
}

// leaderURL is the base URL of the leader this node knows; failing, an error retryable reports as such.
func (c *Cluster) leaderURL() (string, error) {
	id, _ := c.store.Leader()
	if id == "" || id == c.name { // none, or this node taking over as leader: callers ask it directly once it leads
		return "", fmt.Errorf("node %s knows no leader: %w", c.name, raftstore.ErrNotLeader)
	}

	base, ok := c.view.PeerURL(id)
	if !ok {
		return "", fmt.Errorf("leader %s is not a known member: %w", id, raftstore.ErrNotLeader)
	}

	return base, nil
}
