package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRaftMembersUnreachableNewcomer: a member whose advertised Raft address nobody listens on joins a one-node
// cluster that has a non-voter already. Made a voter, it would hold one of the two votes and the leader would step
// down for good; it must stay a non-voter while the leader keeps leading and committing. A member that does
// receive the log joins next: with two healthy non-voters the cluster grows to three voters, still without the
// unreachable one, and survives the loss of one of them.
func TestRaftMembersUnreachableNewcomer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node cluster")
	}
	n1 := startTestNode(t, "n1", t.TempDir(), nodeOpts{expect: 1})
	eventuallyConfig(t, voters("n1"), n1)
	seeds := []string{n1.m.Addr()}
	n2 := startTestNode(t, "n2", t.TempDir(), nodeOpts{expect: 1, seeds: seeds})
	eventuallyConfig(t, with(voters("n1"), "Nonvoter", "n2"), n1, n2)

	nowhere := freeLoopbackAddr(t) // raft's connections to it are refused
	n3 := startTestNode(t, "n3", t.TempDir(), nodeOpts{expect: 1, seeds: seeds, raftAdvertise: nowhere})
	want := with(voters("n1"), "Nonvoter", "n2", "n3")
	eventuallyConfig(t, want, n1, n2, n3)

	// Far longer than the leader lease and the election timeout: a lost quorum would show.
	ctx := context.Background()
	for i, until := 0, time.Now().Add(3*time.Second); time.Now().Before(until); i++ {
		require.True(t, n1.store.IsLeader(), "n1 lost the leadership")
		require.Equal(t, want, n1.config(t))
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n1.store.PutSetting(wctx, "test-write", []byte(strconv.Itoa(i)))
		cancel()
		require.NoError(t, err, "write %d", i)
		time.Sleep(50 * time.Millisecond)
	}
	require.False(t, stateOf(n1.m, "n3").Meta.Replicating, "n3 claims to receive the log")

	n4 := startTestNode(t, "n4", t.TempDir(), nodeOpts{expect: 1, seeds: seeds})
	eventuallyConfig(t, with(voters("n1", "n2", "n4"), "Nonvoter", "n3"), n1, n2, n3, n4)
	require.True(t, n1.store.IsLeader())

	// The three voters are three that receive the log, so they survive the loss of one.
	n2.kill()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, n1.store.PutSetting(wctx, "test-write", []byte("after n2 died")))
	require.True(t, n1.store.IsLeader())
}

// TestRaftMembersJoinWaitsForSeed: a fresh node started with expect=1 and a seed it cannot reach yet must not
// bootstrap a cluster of its own, which would split the brain once gossip connects. When the seed answers, the
// node joins the seed's cluster and gets its data.
func TestRaftMembersJoinWaitsForSeed(t *testing.T) {
	n1 := startTestNode(t, "n1", t.TempDir(), nodeOpts{expect: 1})
	eventuallyConfig(t, voters("n1"), n1)
	yaml := []byte("customization: {extraKernelArgs: [seed-data]}\n")
	sum := sha256.Sum256(yaml)
	id := hex.EncodeToString(sum[:])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, n1.store.PutSchematic(ctx, id, yaml))

	pn := &partitionNet{}
	pn.isolate(n1.m.Addr()) // n2's gossip cannot reach n1
	n2 := startTestNode(t, "n2", t.TempDir(),
		nodeOpts{expect: 1, seeds: []string{n1.m.Addr()}, wrapGossip: pn.wrap})
	<-n2.m.joinAttempted()
	// Many failed join attempts (every 200 ms) and settle periods (300 ms) later, n2 is still in no cluster.
	for until := time.Now().Add(2 * time.Second); time.Now().Before(until); {
		require.Empty(t, n2.config(t), "n2 formed a cluster of its own")
		require.False(t, n2.store.IsLeader())
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, []string{"n2"}, aliveNames(n2.m))
	require.Contains(t, n2.rm.bootstrapWait(), "no member listed in --join")

	pn.heal()
	eventuallyConfig(t, with(voters("n1"), "Nonvoter", "n2"), n1, n2)
	require.Eventually(t, func() bool { return n2.rm.bootstrapWait() == "" }, 5*time.Second, 10*time.Millisecond,
		"once in the cluster, readiness no longer names a reason to wait")
	require.Eventually(t, func() bool {
		got, ok, err := n2.store.Schematic(id)
		return err == nil && ok && string(got) == string(yaml)
	}, 10*time.Second, 10*time.Millisecond, "n2 has n1's schematic")
	require.Equal(t, n1, leaderOf(t, n1, n2))
	require.Zero(t, n2.rm.bootstraps.Load(), "n2 never tried to bootstrap")
}

// TestRaftMembersJoinOnlySelf: --join naming only this node's own gossip address is no seed to wait for: with
// expect=1 the node bootstraps at once.
func TestRaftMembersJoinOnlySelf(t *testing.T) {
	self := freeLoopbackAddr(t)
	n1 := startTestNode(t, "n1", t.TempDir(), nodeOpts{expect: 1, seeds: []string{self}, gossip: self})
	eventuallyConfig(t, voters("n1"), n1)
	require.Equal(t, int32(1), n1.rm.bootstraps.Load())
}
