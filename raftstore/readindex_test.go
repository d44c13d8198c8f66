package raftstore

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
)

// holdState keeps a write transaction open on each store's state file, as a stalled disk would: Raft goes on
// electing, replicating and committing, but nothing reaches the state machine until release (also run at cleanup,
// before the stores close).
func holdState(t *testing.T, stores ...*Store) (release func()) {
	t.Helper()
	var txs []*bbolt.Tx
	for _, s := range stores {
		tx, err := s.fsm.db.Begin(true)
		require.NoError(t, err)
		txs = append(txs, tx)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, tx := range txs {
				require.NoError(t, tx.Rollback())
			}
		})
	}
	t.Cleanup(release)
	return release
}

// TestReadIndexAfterLeaderChange: a write the old leader acknowledged may not be applied on the new leader yet (its
// followers learn of a commit only from the leader's next append, and apply after that). The new leader's read
// index must still cover it, or a node confirming a missing schematic with it answers 404 for a schematic that
// was created.
func TestReadIndexAfterLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three raft nodes and two elections")
	}
	ctx := testCtx(t)
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.Bootstrap = true
	// Raft heartbeats carry no commit index: with nothing else appended, the followers hear of a commit only
	// after CommitTimeout, so they keep the write without knowing it committed.
	cfg.CommitTimeout = time.Minute
	n1 := openStore(t, cfg)
	waitLeader(t, n1)
	n2 := openStore(t, testConfig(t, "n2", t.TempDir()))
	n3 := openStore(t, testConfig(t, "n3", t.TempDir()))
	require.NoError(t, n1.AddVoter(ctx, n2.ID(), n2.Addr()))
	require.NoError(t, n1.AddVoter(ctx, n3.ID(), n3.Addr()))
	followers := []*Store{n2, n3}

	// And with their state files stalled, they apply it late whatever they know: the window stays open.
	release := holdState(t, followers...)
	id, yaml := schematic(1)
	require.NoError(t, n1.PutSchematic(ctx, id, yaml)) // acknowledged: a client got its 201
	acked := n1.AppliedIndex()
	require.NoError(t, n1.Close())

	var leader, other *Store
	require.Eventually(t, func() bool {
		for i, f := range followers {
			if f.IsLeader() {
				leader, other = f, followers[1-i]
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "no new leader")
	require.Less(t, leader.AppliedIndex(), acked, "the new leader has not applied the acknowledged write yet")

	type answer struct {
		idx uint64
		err error
	}
	got := make(chan answer, 1)
	go func() {
		idx, err := leader.ReadIndex(ctx)
		got <- answer{idx, err}
	}()
	var a answer
	select {
	case a = <-got: // only correct if it covers the write
		require.NoError(t, a.err)
		require.GreaterOrEqual(t, a.idx, acked,
			"read index answered by the new leader before it applied the write acknowledged at %d", acked)
	case <-time.After(500 * time.Millisecond): // waiting for the write to apply, as it should
		release()
		select {
		case a = <-got:
		case <-ctx.Done():
			t.Fatal("read index never answered once the state files moved on")
		}
	}
	require.NoError(t, a.err)
	require.GreaterOrEqual(t, a.idx, acked)
	_, found, err := leader.Schematic(id)
	require.NoError(t, err)
	require.True(t, found, "the new leader reads the acknowledged schematic at its read index")

	// A follower that waits for the read index reads it too (how a node confirms a miss before a 404).
	require.NoError(t, other.WaitApplied(ctx, a.idx))
	_, found, err = other.Schematic(id)
	require.NoError(t, err)
	require.True(t, found, "a follower at the read index reads the acknowledged schematic")

	// Later reads in the same term add nothing to the log.
	last := leader.raft.LastIndex()
	for range 5 {
		idx, err := leader.ReadIndex(ctx)
		require.NoError(t, err)
		require.GreaterOrEqual(t, idx, a.idx)
	}
	require.Equal(t, last, leader.raft.LastIndex(), "one barrier per term, not one per read")

	// A follower does not answer: its caller asks the leader instead.
	_, err = other.ReadIndex(ctx)
	require.ErrorIs(t, err, ErrNotLeader)
}
