package raftstore

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

func TestBootstrapClusterOnce(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testConfig(t, "n1", dir))

	has, err := s.HasState()
	require.NoError(t, err)
	require.False(t, has, "a fresh store has no raft state")
	servers, err := s.Servers()
	require.NoError(t, err)
	require.Empty(t, servers)

	err = s.BootstrapCluster([]Server{{ID: "n2", Addr: "127.0.0.1:1", Suffrage: "Voter"}})
	require.ErrorContains(t, err, `do not include this node "n1"`)

	require.NoError(t, s.BootstrapCluster([]Server{{ID: "n1", Addr: s.Addr(), Suffrage: "Voter"}}))
	waitLeader(t, s)
	has, err = s.HasState()
	require.NoError(t, err)
	require.True(t, has)

	err = s.BootstrapCluster([]Server{{ID: "n1", Addr: s.Addr(), Suffrage: "Voter"}})
	require.ErrorIs(t, err, ErrCantBootstrap, "a second bootstrap is refused")

	// A restart finds the state and refuses again; Open's own bootstrap treats that as nothing to do.
	require.NoError(t, s.Close())
	cfg := testConfig(t, "n1", dir)
	cfg.Bootstrap = true
	s = openStore(t, cfg)
	has, err = s.HasState()
	require.NoError(t, err)
	require.True(t, has)
	require.ErrorIs(t, s.BootstrapCluster([]Server{{ID: "n1", Addr: s.Addr(), Suffrage: "Voter"}}), ErrCantBootstrap)
	waitLeader(t, s)
}

func TestTransferLeadership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three raft nodes and elections")
	}
	ctx := testCtx(t)
	n1 := openLeader(t, t.TempDir())
	require.ErrorIs(t, n1.TransferLeadership(ctx), ErrNoOtherVoter, "a lone voter has nobody to hand over to")

	n2 := openStore(t, testConfig(t, "n2", t.TempDir()))
	require.NoError(t, n1.AddNonvoter(ctx, n2.ID(), n2.Addr()))
	require.ErrorIs(t, n1.TransferLeadership(ctx), ErrNoOtherVoter, "a non-voter cannot lead")

	n3 := openStore(t, testConfig(t, "n3", t.TempDir()))
	require.NoError(t, n1.AddVoter(ctx, n3.ID(), n3.Addr()))
	require.NoError(t, n3.WaitForLeader(ctx))

	require.ErrorIs(t, n3.TransferLeadership(ctx), ErrNotLeader)

	require.NoError(t, n1.TransferLeadership(ctx))
	require.Eventually(t, n3.IsLeader, 5*time.Second, 5*time.Millisecond, "the only other voter takes over")
	require.False(t, n1.IsLeader())
	servers, err := n3.Servers()
	require.NoError(t, err)
	require.Len(t, servers, 3, "a transfer changes no membership")
	require.True(t, slices.ContainsFunc(servers, func(s Server) bool { return s.ID == "n2" && s.Suffrage == "Nonvoter" }))
}

// TestNoPipelinedReplication pins the transport setting that keeps Close from hanging after a leadership transfer:
// raft's pipelined replication can deadlock when a follower rejects an entry as the leader steps down
// (hashicorp/raft#612), and it was seen here as a Shutdown stuck in pipelineSend.
func TestNoPipelinedReplication(t *testing.T) {
	s := openStore(t, testConfig(t, "n1", t.TempDir()))
	_, err := s.trans.AppendEntriesPipeline("n2", "127.0.0.1:1")
	require.ErrorIs(t, err, raft.ErrPipelineReplicationNotSupported)
}
