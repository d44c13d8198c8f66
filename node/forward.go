package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/raftstore"
)

// writeDeadline bounds how long a write waits for a reachable leader (an election takes a second or two; longer
// means this node has lost its quorum).
const writeDeadline = 8 * time.Second

// apply commits cmd through Raft from any node: on the leader directly, elsewhere forwarded over the peer API. It
// returns after commit and after this node has applied the entry too, so the caller reads its own write. While no
// leader is reachable it retries until writeDeadline and then answers Unavailable (503).
func (n *Node) apply(ctx context.Context, cmd raftstore.Command) (raftstore.Result, error) {
	var res raftstore.Result

	err := n.withLeader(ctx, "write", func(ctx context.Context) error {
		var err error
		res, err = n.applyOnce(ctx, cmd)

		return err
	})

	return res, err
}

// withLeader runs op until it succeeds or fails for a reason other than a missing leader, retrying while an
// election may still produce one (until writeDeadline, or at once when this node has been without a leader for
// several election timeouts: then it is cut off). what names the operation in the Unavailable error.
func (n *Node) withLeader(ctx context.Context, what string, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, writeDeadline)
	defer cancel()

	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		err := op(ctx)
		if err == nil || !retryable(err) {
			return err
		}

		if n.store.LeaderlessFor() > 4*n.store.ElectionTimeout() {
			cancel()
		}

		select {
		case <-ctx.Done():
			return frontends.NewError(frontends.ClassUnavailable, fmt.Sprintf(
				"cannot %s: no Raft leader reachable from node %s (the cluster is electing a leader or this "+
					"node is cut off from its quorum); reads of existing data still work: %v", what,
				n.cfg.NodeName, err), err)
		case <-time.After(backoff):
		}
	}
}

func (n *Node) applyOnce(ctx context.Context, cmd raftstore.Command) (raftstore.Result, error) {
	res, err := n.store.ApplyCommand(ctx, cmd)

	var notLeader *raftstore.NotLeaderError
	if !errors.As(err, &notLeader) {
		return res, err
	}

	if notLeader.LeaderID == "" {
		return res, err // an election is on: retry
	}

	base, ok := n.cluster.URL(notLeader.LeaderID)
	if !ok {
		return res, fmt.Errorf("leader %s is not a known member: %w", notLeader.LeaderID, raftstore.ErrNotLeader)
	}

	res, err = n.peers.apply(ctx, base, cmd)
	if err != nil {
		return res, err
	}

	// Read-your-writes: wait until this node has applied what the leader committed.
	if werr := n.store.WaitApplied(ctx, res.Index); werr != nil {
		return res, fmt.Errorf("committed at index %d but not yet applied here: %w", res.Index, werr)
	}

	return res, nil
}

// retryable reports whether a write failed for want of a reachable leader (rather than being refused).
func retryable(err error) bool {
	if errors.Is(err, raftstore.ErrNotLeader) || errors.Is(err, raftstore.ErrLeadershipLost) {
		return true
	}

	var pe *peerError

	return errors.As(err, &pe) && (pe.Status == 0 || pe.Status == http.StatusMisdirectedRequest ||
		pe.Status == http.StatusServiceUnavailable)
}

// leaderReadIndex is the leader's read index (an applied index covering every acknowledged write): this node's own
// when it leads, else the leader's over the peer API.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if n.store.IsLeader() {
		// Even the leader: a new one may not have applied a write its predecessor acknowledged.
		idx, err := n.store.ReadIndex(ctx)
		if err == nil || !retryable(err) {
			return idx, err
		}
		// Deposed meanwhile: ask the leader this node knows now.
	}

	base, err := n.leaderURL()
	if err != nil {
		return 0, err
	}

	return n.peers.readIndex(ctx, base)
}

// leaderURL is the base URL of the leader this node knows; failing, an error retryable reports as such.
func (n *Node) leaderURL() (string, error) {
	id, _ := n.store.Leader()
	if id == "" {
		return "", fmt.Errorf("node %s knows no leader: %w", n.cfg.NodeName, raftstore.ErrNotLeader)
	}

	base, ok := n.cluster.URL(id)
	if !ok {
		return "", fmt.Errorf("leader %s is not a known member: %w", id, raftstore.ErrNotLeader)
	}

	return base, nil
}
