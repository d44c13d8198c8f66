package raftstore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFollowerBackSoon: a follower that was away long enough for raft's replication back-off to reach its
// ceiling (about 10 s between tries) gets the log within a probe interval or two of coming back, whatever the
// back-off's phase; the leader says it went and came back, and nothing in between. EDGEFACTORY_REACH_RAFT_BACKOFF=1
// leaves calls to raft's back-off, as before: the follower then waited 5.5 s in each round, and the leader logged
// 155 heartbeat and 12 replication errors while it was away.
func TestFollowerBackSoon(t *testing.T) {
	if testing.Short() {
		t.Skip("keeps a follower away for 15 s")
	}

	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			lines := &lineLog{}
			// The production timers: a leader that lost its lease on a loaded machine would say other lines.
			config := func(id string) Config {
				cfg := testConfig(t, id, t.TempDir())
				cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout, cfg.CommitTimeout = 0, 0, 0, 0
				return cfg
			}
			leaderCfg := config("n1")
			leaderCfg.Bootstrap = true
			leaderCfg.RaftBackoff = os.Getenv("EDGEFACTORY_REACH_RAFT_BACKOFF") != "" // as before: see it fail
			leaderCfg.Logger = slog.New(slog.NewTextHandler(lines, &slog.HandlerOptions{Level: slog.LevelInfo}))
			leader := openStore(t, leaderCfg)
			waitLeader(t, leader)

			third := openStore(t, config("n3")) // stays: n1 and n3 keep the quorum
			require.NoError(t, leader.AddVoter(ctx, "n3", third.Addr()))
			fcfg := config("n2")
			follower, err := Open(fcfg)
			require.NoError(t, err)
			require.NoError(t, leader.AddVoter(ctx, "n2", follower.Addr()))
			addr := follower.Addr()
			require.NoError(t, follower.Close())

			// Away for 15 s with writes going on: raft's back-off would reach its ceiling.
			for i := range 30 {
				id, yaml := schematic(100*round + i)
				require.NoError(t, leader.PutSchematic(ctx, id, yaml))
				time.Sleep(500 * time.Millisecond)
			}

			fcfg.BindAddr = addr // back at the address the configuration names
			back := time.Now()
			follower = openStore(t, fcfg)
			target := leader.AppliedIndex()

			require.Eventually(t, func() bool { return follower.AppliedIndex() >= target }, 15*time.Second,
				5*time.Millisecond)
			took := time.Since(back)
			t.Logf("round %d: follower applied index %d %s after coming back", round, target, took)
			assert.Less(t, took, 2*time.Second, "the log reaches a follower that is back")

			text := lines.String()
			assert.Equal(t, 1, strings.Count(text, "raft: member unreachable"), "lines saying the member went")
			assert.Equal(t, 1, strings.Count(text, "raft: member answers again"), "lines saying the member is back")
			assert.Zero(t, strings.Count(text, "failed to heartbeat to"), "raft's own heartbeat errors")
			assert.Zero(t, strings.Count(text, "failed to appendEntries to"), "raft's own replication errors")
		})
	}
}

// TestHeldCallsEnd: calls held for a follower that does not come back end when the leader's store closes, and when
// the follower leaves the configuration, rather than keeping raft's shutdown (or a goroutine) waiting.
func TestHeldCallsEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three raft nodes")
	}

	ctx := testCtx(t)
	leader := openLeader(t, t.TempDir())
	n2, err := Open(testConfig(t, "n2", t.TempDir()))
	require.NoError(t, err)
	n3, err := Open(testConfig(t, "n3", t.TempDir()))
	require.NoError(t, err)
	n4 := openStore(t, testConfig(t, "n4", t.TempDir()))
	for _, s := range []*Store{n2, n3, n4} {
		require.NoError(t, leader.AddVoter(ctx, s.ID(), s.Addr()))
	}
	probing := func(id string) bool {
		leader.trans.mu.Lock()
		defer leader.trans.mu.Unlock()
		p := leader.trans.peers[raft.ServerID(id)]
		return p != nil && p.probing
	}

	require.NoError(t, n3.Close())
	require.Eventually(t, func() bool { return probing("n3") }, 5*time.Second, 10*time.Millisecond,
		"the leader probes n3")
	require.NoError(t, leader.RemoveServer(ctx, "n3"))
	require.Eventually(t, func() bool { return !probing("n3") }, 5*time.Second, 10*time.Millisecond,
		"probing stops once n3 left the configuration")

	// Held for n2 now (n1 and n4 keep the quorum), then closed: the close returns promptly.
	require.NoError(t, n2.Close())
	require.Eventually(t, func() bool { return probing("n2") }, 5*time.Second, 10*time.Millisecond,
		"the leader probes n2")
	closed := make(chan error, 1)
	go func() { closed <- leader.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		require.Fail(t, "the leader's store did not close while calls to n2 were held")
	}
}

// lineLog collects log output.
type lineLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
