package raftstore

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// eventually polls a read on a follower until it sees want; replication is asynchronous to the leader's answer.
func eventuallySchematic(t *testing.T, s *Store, id string, want []byte) {
	t.Helper()
	require.Eventually(t, func() bool {
		got, found, err := s.Schematic(id)
		return err == nil && found && string(got) == string(want)
	}, 5*time.Second, 5*time.Millisecond, "node %s never saw schematic %s", s.ID(), id)
}

func serverIDs(t *testing.T, s *Store) map[string]string {
	t.Helper()
	servers, err := s.Servers()
	require.NoError(t, err)
	out := map[string]string{}
	for _, srv := range servers {
		out[srv.ID] = srv.Suffrage
	}
	return out
}

func TestThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four raft nodes and an election")
	}
	ctx := testCtx(t)
	n1 := openLeader(t, t.TempDir())
	n2 := openStore(t, testConfig(t, "n2", t.TempDir()))
	n3 := openStore(t, testConfig(t, "n3", t.TempDir()))
	require.NoError(t, n1.AddVoter(ctx, n2.ID(), n2.Addr()))
	require.NoError(t, n1.AddVoter(ctx, n3.ID(), n3.Addr()))
	require.Equal(t, map[string]string{"n1": "Voter", "n2": "Voter", "n3": "Voter"}, serverIDs(t, n1))

	followers := []*Store{n2, n3}
	for _, f := range followers {
		require.NoError(t, f.WaitForLeader(ctx))
		require.False(t, f.IsLeader())
		watch, stop := f.WatchLeadership()
		require.False(t, <-watch)
		stop()
	}

	t.Run("leader writes reach followers", func(t *testing.T) {
		id, yaml := schematic(1)
		require.NoError(t, n1.PutSchematic(ctx, id, yaml))
		for _, f := range followers {
			eventuallySchematic(t, f, id, yaml)
		}
		res, err := n1.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutSetting, Key: "k", Value: []byte("v")})
		require.NoError(t, err)
		require.NoError(t, n2.WaitApplied(ctx, res.Index))
		v, found, err := n2.Setting("k")
		require.NoError(t, err)
		require.True(t, found, "WaitApplied gives read-your-writes")
		require.Equal(t, "v", string(v))
	})

	t.Run("follower writes name the leader", func(t *testing.T) {
		for _, f := range followers {
			id, yaml := schematic(2)
			err := f.PutSchematic(ctx, id, yaml)
			require.ErrorIs(t, err, ErrNotLeader)
			var nle *NotLeaderError
			require.True(t, errors.As(err, &nle))
			require.Equal(t, &NotLeaderError{LeaderID: "n1", LeaderAddr: n1.Addr()}, nle)

			err = f.AddVoter(ctx, "n9", "127.0.0.1:1")
			require.ErrorIs(t, err, ErrNotLeader)
		}
	})

	t.Run("a late member catches up from a snapshot", func(t *testing.T) {
		for i := 10; i < 30; i++ {
			id, yaml := schematic(i)
			require.NoError(t, n1.PutSchematic(ctx, id, yaml))
		}
		require.NoError(t, n1.Snapshot()) // TrailingLogs is 2: the log no longer starts at 1
		n4 := openStore(t, testConfig(t, "n4", t.TempDir()))
		require.NoError(t, n1.AddNonvoter(ctx, n4.ID(), n4.Addr()))
		require.Equal(t, "Nonvoter", serverIDs(t, n1)["n4"])
		id, yaml := schematic(29)
		eventuallySchematic(t, n4, id, yaml)
		require.Eventually(t, func() bool {
			return n4.AppliedIndex() >= n1.AppliedIndex()
		}, 5*time.Second, 5*time.Millisecond)
		require.Equal(t, dump(t, n1.fsm, true), dump(t, n4.fsm, true))

		require.NoError(t, n1.RemoveServer(ctx, n4.ID()))
		_, present := serverIDs(t, n1)["n4"]
		require.False(t, present)
	})

	t.Run("a new leader is elected when the leader stops", func(t *testing.T) {
		require.NoError(t, n1.Close())
		var leader *Store
		require.Eventually(t, func() bool {
			for _, f := range followers {
				if f.IsLeader() {
					leader = f
					return true
				}
			}
			return false
		}, 10*time.Second, 10*time.Millisecond)
		// raft says it leads (IsLeader) a moment before its leadership event reaches the watchers: wait for it.
		watch, stop := leader.WatchLeadership()
		defer stop()
		require.True(t, waitTrue(watch, 10*time.Second), "the new leader's watchers never heard it leads")

		id, yaml := schematic(100)
		require.NoError(t, leader.PutSchematic(ctx, id, yaml))
		other := followers[0]
		if other == leader {
			other = followers[1]
		}
		eventuallySchematic(t, other, id, yaml)
		id, yaml = schematic(1)
		eventuallySchematic(t, other, id, yaml) // earlier writes survived the failover
	})
}

// freeAddrs reserves loopback ports for nodes whose addresses must be known before they start.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addrs = append(addrs, ln.Addr().String())
		require.NoError(t, ln.Close())
	}
	return addrs
}

func TestBootstrapTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three raft nodes and an election")
	}
	addrs := freeAddrs(t, 3)
	var servers []Server
	for i, a := range addrs {
		servers = append(servers, Server{ID: fmt.Sprintf("n%d", i+1), Addr: a, Suffrage: "Voter"})
	}
	var nodes []*Store
	for i, srv := range servers {
		cfg := testConfig(t, srv.ID, t.TempDir())
		cfg.BindAddr = addrs[i]
		cfg.Bootstrap = true
		cfg.BootstrapServers = servers
		nodes = append(nodes, openStore(t, cfg))
	}
	ctx := testCtx(t)
	for _, n := range nodes {
		require.NoError(t, n.WaitForLeader(ctx))
	}
	leaderIdx := slices.IndexFunc(nodes, (*Store).IsLeader)
	require.Eventually(t, func() bool {
		leaderIdx = slices.IndexFunc(nodes, (*Store).IsLeader)
		return leaderIdx >= 0
	}, 5*time.Second, 5*time.Millisecond)
	id, yaml := schematic(1)
	require.NoError(t, nodes[leaderIdx].PutSchematic(ctx, id, yaml))
	for _, n := range nodes {
		eventuallySchematic(t, n, id, yaml)
		require.Len(t, serverIDs(t, n), 3)
	}
}

// waitTrue reads a leadership watch until it says true, or gives up after d.
func waitTrue(watch <-chan bool, d time.Duration) bool {
	deadline := time.After(d)

	for {
		select {
		case v, ok := <-watch:
			if !ok {
				return false
			}

			if v {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
