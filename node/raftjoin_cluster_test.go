package node_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestClusterUnreachableRaftNewcomer: a one-node cluster with a non-voter is joined by a node whose advertised
// Raft address is a shut gate. Made a voter, it would hold one of two votes and the leader would step down for
// good (every write 503); it stays a non-voter, the leader keeps leading and writes keep succeeding. Once the gate
// opens the newcomer receives the log, and the cluster grows to three voters.
func TestClusterUnreachableRaftNewcomer(t *testing.T) {
	c := &cluster{reg: upstream(t), dir: t.TempDir(), expect: 1}
	c.seeds = []string{freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)}
	t.Cleanup(c.killAll)

	first := c.add(t, 0, func(cfg *node.Config) { cfg.Join = nil })
	c.add(t, 1)
	c.waitFormed(t)

	gate := newGate(t)
	third := c.add(t, 2, func(cfg *node.Config) {
		cfg.RaftListen = gate.target
		cfg.RaftAdvertise = gate.addr
	})

	require.True(t, waitFor(30*time.Second, func() bool { return raftRole(c.status(t, first), third.name) != "none" }),
		"the leader adds the newcomer")

	// Far longer than the leader lease and the election timeout: a lost quorum would show.
	for i, until := 0, time.Now().Add(5*time.Second); time.Now().Before(until); i++ {
		resp := c.live()[i%2].do(t, "POST", "/schematics", `customization: {extraKernelArgs: [unreachable=`+
			time.Now().Format(time.RFC3339Nano)+`]}`, nil)
		require.Equal(t, http.StatusCreated, resp.StatusCode, "write %d: %s", i, resp.Body)
		require.Equal(t, first.name, c.status(t, first).Leader, "the leader kept its leadership")
		time.Sleep(100 * time.Millisecond)
	}

	st := c.status(t, first)
	require.Equal(t, []string{first.name}, st.Voters)
	require.Equal(t, "nonvoter", raftRole(st, third.name))

	id := first.createSchematic(t, `customization: {extraKernelArgs: [before-the-gate-opens]}`)

	gate.open()
	require.True(t, waitFor(30*time.Second, func() bool { return len(c.status(t, first).Voters) == 3 }),
		"once the log reaches it, the cluster grows to three voters")
	c.waitFormed(t)
	assert.Equal(t, http.StatusOK, third.do(t, "GET", "/schematics/"+id, "", nil).StatusCode)
}

// TestClusterJoinWaitsForSeed: a fresh node started with --bootstrap-expect 1 and --join naming a member it cannot
// reach yet (its gossip behind a shut gate) must not bootstrap a cluster of its own: once gossip connected there
// would be two clusters with diverging state. When the gate opens, it joins the existing cluster and serves the
// schematic created there before.
func TestClusterJoinWaitsForSeed(t *testing.T) {
	gate := newGate(t)
	c := &cluster{reg: upstream(t), dir: t.TempDir(), expect: 1}
	c.seeds = []string{gate.target, freeLoopbackAddr(t)}
	t.Cleanup(c.killAll)

	first := c.add(t, 0, func(cfg *node.Config) { cfg.Join = nil })
	c.waitFormed(t)
	id := first.createSchematic(t, `customization: {extraKernelArgs: [before-the-join]}`)

	second := c.add(t, 1, func(cfg *node.Config) { cfg.Join = []string{gate.addr} })
	// Past the first join attempt (a 2 s timeout here), several retries and the settle time.
	for until := time.Now().Add(5 * time.Second); time.Now().Before(until); {
		st := second.Status()
		require.Empty(t, st.Leader, "the node cut off from its seed bootstrapped a cluster of its own")
		require.Empty(t, st.Voters)
		time.Sleep(50 * time.Millisecond)
	}

	ready := second.do(t, "GET", "/readyz", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, ready.StatusCode)
	assert.Contains(t, ready.Body, "no raft leader yet: no member listed in --join ("+gate.addr+") has answered yet",
		"readiness says what the node waits for")

	gate.open()
	c.waitFormed(t)

	st := c.status(t, second)
	assert.Equal(t, first.name, st.Leader)
	assert.Equal(t, []string{first.name}, st.Voters)
	assert.Equal(t, "nonvoter", raftRole(st, second.name))
	assert.Equal(t, http.StatusOK, second.do(t, "GET", "/schematics/"+id, "", nil).StatusCode)
}

// raftRole is a member's place in the Raft configuration as st shows it: voter, nonvoter or none.
func raftRole(st node.ClusterStatus, name string) string {
	if mb := memberOf(st, name); mb.Name != "" {
		return mb.Raft
	}

	return "none"
}

// memberOf is member name as st shows it (zero when st does not list it).
func memberOf(st node.ClusterStatus, name string) node.MemberStatus {
	for _, mb := range st.Members {
		if mb.Name == name {
			return mb
		}
	}

	return node.MemberStatus{}
}
