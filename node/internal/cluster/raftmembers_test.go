package cluster

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/raftstore"
)

func TestBootstrapServers(t *testing.T) {
	meta := func(name string, change ...func(*memberMeta)) memberMeta {
		m := memberMeta{Name: name, RaftAddr: name + ":7000", Expect: 3}
		for _, c := range change {
			c(&m)
		}
		return m
	}
	voters := func(names ...string) []raftstore.Server {
		var out []raftstore.Server
		for _, n := range names {
			out = append(out, raftstore.Server{ID: n, Addr: n + ":7000", Suffrage: "Voter"})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		self   string
		expect int
		alive  []memberMeta
		want   []raftstore.Server
		why    string
	}{
		{"first three of three", "b", 3, []memberMeta{meta("a"), meta("b"), meta("c")}, voters("a", "b", "c"), ""},
		{"first three of four", "a", 3, []memberMeta{meta("a"), meta("b"), meta("c"), meta("d")},
			voters("a", "b", "c"), ""},
		{"not among the first", "d", 3, []memberMeta{meta("a"), meta("b"), meta("c"), meta("d")}, nil,
			"not among the first"},
		{"too few", "a", 3, []memberMeta{meta("a"), meta("b")}, nil, "2 of 3 members alive"},
		{"one alone", "a", 1, []memberMeta{meta("a", func(m *memberMeta) { m.Expect = 1 })}, voters("a"), ""},
		{"a cluster exists", "a", 3,
			[]memberMeta{meta("a"), meta("b"), meta("c", func(m *memberMeta) { m.Formed = true })}, nil,
			"already belongs to a raft cluster"},
		{"disagreeing expect", "a", 3,
			[]memberMeta{meta("a"), meta("b", func(m *memberMeta) { m.Expect = 5 }), meta("c")}, nil,
			"member b expects 5 members, this node 3"},
		{"unknown expect is no objection", "a", 3,
			[]memberMeta{meta("a"), meta("b", func(m *memberMeta) { m.Expect = 0 }), meta("c")}, voters("a", "b", "c"),
			""},
		{"no raft address", "a", 3,
			[]memberMeta{meta("a"), meta("b", func(m *memberMeta) { m.RaftAddr = "" }), meta("c")}, nil,
			"advertises no raft address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := bootstrapServers(tc.self, tc.expect, tc.alive)
			require.Equal(t, tc.want, got)
			if tc.why == "" {
				require.Empty(t, why)
			} else {
				require.Contains(t, why, tc.why)
			}
		})
	}
}

func TestPlanRaftChange(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const grace = time.Minute
	type srv = raftstore.Server
	voter := func(id string) srv { return srv{ID: id, Addr: id + ":7000", Suffrage: "Voter"} }
	nonvoter := func(id string) srv { return srv{ID: id, Addr: id + ":7000", Suffrage: "Nonvoter"} }
	mem := func(name, state string, zone ...string) member {
		m := member{Name: name, State: state, Since: now.Add(-time.Hour),
			Meta: memberMeta{Name: name, RaftAddr: name + ":7000"}}
		if len(zone) > 0 {
			m.Meta.Zone = zone[0]
		}
		return m
	}
	alive := func(names ...string) []member {
		var out []member
		for _, n := range names {
			out = append(out, mem(n, stateAlive))
		}
		return out
	}
	// replicating marks members as receiving the log (what a non-voter must show before it is promoted).
	replicating := func(ms []member, names ...string) []member {
		out := slices.Clone(ms)
		for i := range out {
			if slices.Contains(names, out[i].Name) {
				out[i].Meta.Replicating = true
			}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		servers []srv
		members []member
		gone    map[string]time.Duration // how long ago
		want    *raftChange
	}{
		{name: "steady three", servers: []srv{voter("a"), voter("b"), voter("c")}, members: alive("a", "b", "c")},
		{name: "steady five and two non-voters",
			servers: []srv{voter("a"), voter("b"), voter("c"), voter("d"), voter("e"), nonvoter("f"), nonvoter("g")},
			members: alive("a", "b", "c", "d", "e", "f", "g")},
		{name: "fourth member joins as non-voter: four voters are no safer than three",
			servers: []srv{voter("a"), voter("b"), voter("c")}, members: alive("a", "b", "c", "d"),
			want: &raftChange{op: opAddNonvoter, id: "d", addr: "d:7000"}},
		{name: "fifth member joins as a non-voter too",
			servers: []srv{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: replicating(alive("a", "b", "c", "d", "e"), "d", "e"),
			want:    &raftChange{op: opAddNonvoter, id: "e", addr: "e:7000"}},
		{name: "one non-voter receiving the log is not promoted past three: four voters are no safer",
			servers: []srv{voter("a"), voter("b"), voter("c"), nonvoter("d"), nonvoter("e")},
			members: replicating(alive("a", "b", "c", "d", "e"), "d")},
		{name: "two receiving the log: the fourth is promoted",
			servers: []srv{voter("a"), voter("b"), voter("c"), nonvoter("d"), nonvoter("e")},
			members: replicating(alive("a", "b", "c", "d", "e"), "d", "e"),
			want:    &raftChange{op: opAddVoter, id: "d", addr: "d:7000"}},
		{name: "then the fifth",
			servers: []srv{voter("a"), voter("b"), voter("c"), voter("d"), nonvoter("e")},
			members: replicating(alive("a", "b", "c", "d", "e"), "e"),
			want:    &raftChange{op: opAddVoter, id: "e", addr: "e:7000"}},
		{name: "sixth joins as non-voter",
			servers: []srv{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: alive("a", "b", "c", "d", "e", "f"),
			want:    &raftChange{op: opAddNonvoter, id: "f", addr: "f:7000"}},
		{name: "a newcomer joins as a non-voter even when voters are short",
			servers: []srv{voter("a"), nonvoter("b")}, members: replicating(alive("a", "b", "c"), "b"),
			want: &raftChange{op: opAddNonvoter, id: "c", addr: "c:7000"}},
		{name: "no promotion while the newcomer does not receive the log: two voters are no safer than one",
			servers: []srv{voter("a"), nonvoter("b"), nonvoter("c")}, members: replicating(alive("a", "b", "c"), "b")},
		{name: "no promotion of non-voters that do not receive the log",
			servers: []srv{voter("a"), nonvoter("b"), nonvoter("c")}, members: alive("a", "b", "c")},
		{name: "both receive the log: the first is promoted",
			servers: []srv{voter("a"), nonvoter("b"), nonvoter("c")},
			members: replicating(alive("a", "b", "c"), "b", "c"),
			want:    &raftChange{op: opAddVoter, id: "b", addr: "b:7000"}},
		{name: "then the second",
			servers: []srv{voter("a"), voter("b"), nonvoter("c")}, members: replicating(alive("a", "b", "c"), "c"),
			want: &raftChange{op: opAddVoter, id: "c", addr: "c:7000"}},
		{name: "a second member of a one-node cluster stays a non-voter",
			servers: []srv{voter("a")}, members: alive("a", "b"),
			want: &raftChange{op: opAddNonvoter, id: "b", addr: "b:7000"}},
		{name: "a member without a raft address is left alone",
			servers: []srv{voter("a")},
			members: []member{mem("a", stateAlive), {Name: "b", State: stateAlive, Meta: memberMeta{Name: "b"}}}},
		{name: "leaving voter goes at once",
			servers: []srv{voter("a"), voter("b"), voter("c")},
			members: []member{mem("a", stateAlive), mem("b", stateLeaving), mem("c", stateAlive)},
			gone:    map[string]time.Duration{"b": 0},
			want:    &raftChange{op: opRemove, id: "b"}},
		{name: "a leaving voter stays while another is dead: the rest could not commit without it",
			servers: []srv{voter("a"), voter("b"), voter("c")},
			members: []member{mem("a", stateAlive), mem("b", stateLeaving), mem("c", stateDead)},
			gone:    map[string]time.Duration{"b": 0, "c": grace / 2}},
		{name: "left non-voter goes at once",
			servers: []srv{voter("a"), nonvoter("b")},
			members: []member{mem("a", stateAlive), mem("b", stateLeft)},
			gone:    map[string]time.Duration{"b": 0},
			want:    &raftChange{op: opRemove, id: "b"}},
		{name: "the leader never removes itself",
			servers: []srv{voter("a"), voter("b"), voter("c")},
			members: []member{mem("a", stateLeaving), mem("b", stateAlive), mem("c", stateAlive)}},
		{name: "dead within the grace period stays",
			servers: []srv{voter("a"), voter("b"), voter("c")},
			members: []member{mem("a", stateAlive), mem("b", stateDead), mem("c", stateAlive)},
			gone:    map[string]time.Duration{"b": grace / 2}},
		{name: "dead past the grace period goes",
			servers: []srv{voter("a"), voter("b"), voter("c")},
			members: []member{mem("a", stateAlive), mem("b", stateDead), mem("c", stateAlive)},
			gone:    map[string]time.Duration{"b": grace},
			want:    &raftChange{op: opRemove, id: "b"}},
		{name: "never seen in gossip counts as dead",
			servers: []srv{voter("a"), voter("b"), voter("c")}, members: alive("a", "c"),
			gone: map[string]time.Duration{"b": 2 * grace},
			want: &raftChange{op: opRemove, id: "b"}},
		{name: "then a non-voter receiving the log is promoted back to three",
			servers: []srv{voter("a"), voter("c"), nonvoter("d")}, members: replicating(alive("a", "c", "d"), "d"),
			want: &raftChange{op: opAddVoter, id: "d", addr: "d:7000"}},
		{name: "but not one that does not receive it",
			servers: []srv{voter("a"), voter("c"), nonvoter("d")}, members: alive("a", "c", "d")},
		{name: "removal before addition",
			servers: []srv{voter("a"), voter("b"), voter("c")},
			members: []member{mem("a", stateAlive), mem("b", stateDead), mem("c", stateAlive), mem("d", stateAlive)},
			gone:    map[string]time.Duration{"b": grace},
			want:    &raftChange{op: opRemove, id: "b"}},
		{name: "no removal that gossip says could not commit",
			servers: []srv{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: alive("a", "b"),
			gone:    map[string]time.Duration{"c": grace, "d": grace, "e": grace}},
		{name: "one dead voter of five may go",
			servers: []srv{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: alive("a", "b", "c", "e"),
			gone:    map[string]time.Duration{"d": grace},
			want:    &raftChange{op: opRemove, id: "d"}},
		{name: "new raft address",
			servers: []srv{voter("a"), voter("b"), nonvoter("c")},
			members: []member{mem("a", stateAlive), {Name: "b", State: stateAlive,
				Meta: memberMeta{Name: "b", RaftAddr: "b:7001"}}, mem("c", stateAlive)},
			want: &raftChange{op: opAddVoter, id: "b", addr: "b:7001"}},
		{name: "promotion prefers a zone without voters",
			servers: []srv{voter("a"), voter("b"), voter("c"), voter("d"), nonvoter("e"), nonvoter("f")},
			members: replicating([]member{mem("a", stateAlive, "z1"), mem("b", stateAlive, "z1"),
				mem("c", stateAlive, "z2"), mem("d", stateAlive, "z2"), mem("e", stateAlive, "z1"),
				mem("f", stateAlive, "z3")}, "e", "f"),
			want: &raftChange{op: opAddVoter, id: "f", addr: "f:7000"}},
		{name: "promotion passes over a zone's non-voter that does not receive the log",
			servers: []srv{voter("a"), voter("b"), voter("c"), voter("d"), nonvoter("e"), nonvoter("f")},
			members: replicating([]member{mem("a", stateAlive, "z1"), mem("b", stateAlive, "z1"),
				mem("c", stateAlive, "z2"), mem("d", stateAlive, "z2"), mem("e", stateAlive, "z1"),
				mem("f", stateAlive, "z3")}, "e"),
			want: &raftChange{op: opAddVoter, id: "e", addr: "e:7000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := raftView{self: "a", servers: tc.servers, members: map[string]member{}, gone: map[string]time.Time{},
				now: now, grace: grace}
			for _, m := range tc.members {
				v.members[m.Name] = m
			}
			for id, ago := range tc.gone {
				v.gone[id] = now.Add(-ago)
			}
			got, ok := planRaftChange(v)
			if tc.want == nil {
				require.False(t, ok, "unexpected change %+v", got)
				return
			}
			require.True(t, ok)
			got.why = ""
			require.Equal(t, *tc.want, got)
		})
	}
}

// testNode is one member of a test cluster: its own raft store in its own directory, gossip and raft on loopback.
type testNode struct {
	name, dir string
	store     *raftstore.Store
	m         *membership
	rm        *raftMembers
	cancel    context.CancelFunc
	done      chan struct{}
	stopOnce  sync.Once
}

type nodeOpts struct {
	expect int
	seeds  []string
	zone   string
	gossip string // gossip bind address; default 127.0.0.1:0
	// raftAdvertise is the Raft address the node advertises (default: the bound one); one nobody listens on makes
	// a member the leader cannot send the log to.
	raftAdvertise string
	// wrapGossip puts a test network (partitionNet) under the node's gossip.
	wrapGossip func(addr string, t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

const testGrace = time.Second

func startTestNode(t testing.TB, name, dir string, o nodeOpts) *testNode {
	t.Helper()
	log := membersTestLogger(t)
	store, err := raftstore.Open(raftstore.Config{
		NodeID: name, RaftDir: filepath.Join(dir, "raft"), StatePath: filepath.Join(dir, "state.db"),
		BindAddr: "127.0.0.1:0", AdvertiseAddr: o.raftAdvertise, Logger: log,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		SnapshotThreshold: 1 << 20, SnapshotInterval: time.Hour, ApplyTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	cfg := testMembershipConfig(t, name, o.seeds...)
	cfg.Logger = log
	if o.gossip != "" {
		cfg.BindAddr = o.gossip
	}
	cfg.wrapTransport = o.wrapGossip
	cfg.Meta = memberMeta{URL: "http://" + name + ".test", RaftAddr: store.Addr(), Zone: o.zone, Version: "test"}
	m, err := newMembership(cfg)
	if err != nil {
		store.Close()
		require.NoError(t, err)
	}
	n := &testNode{name: name, dir: dir, store: store, m: m, done: make(chan struct{}),
		rm: newRaftMembers(store, m, o.expect, testGrace, log)}
	// No periodic re-check: every decision must come from a membership or leadership change, the first join
	// attempt, or a settle or grace period ending.
	n.rm.interval, n.rm.settle = time.Hour, 300*time.Millisecond
	var ctx context.Context
	ctx, n.cancel = context.WithCancel(context.Background())
	go func() { defer close(n.done); n.rm.run(ctx) }()
	t.Cleanup(n.kill)
	return n
}

// kill stops the node without a goodbye, like a crash.
func (n *testNode) kill() {
	n.stopOnce.Do(func() {
		n.cancel()
		<-n.done
		n.m.Shutdown()
		n.store.Close()
	})
}

func (n *testNode) config(t testing.TB) map[string]string {
	t.Helper()
	servers, err := n.store.Servers()
	require.NoError(t, err)
	out := map[string]string{}
	for _, s := range servers {
		out[s.ID] = s.Suffrage
	}
	return out
}

// leaderOf waits until exactly one of nodes leads and every other one knows it.
func leaderOf(t testing.TB, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	require.Eventually(t, func() bool {
		leader = nil
		for _, n := range nodes {
			if n.store.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		for _, n := range nodes {
			if id, _ := n.store.Leader(); id != leader.name {
				return false
			}
		}
		return true
	}, 15*time.Second, 10*time.Millisecond, "no single leader")
	return leader
}

// eventuallyConfig waits until the leader of nodes has the configuration want (ID → suffrage).
func eventuallyConfig(t testing.TB, want map[string]string, nodes ...*testNode) *testNode {
	t.Helper()
	leader, _ := eventuallyConfigOf(t, []map[string]string{want}, nodes...)
	return leader
}

// eventuallyConfigOf waits until the leader of nodes has one of the configurations wants, and returns it.
func eventuallyConfigOf(t testing.TB, wants []map[string]string, nodes ...*testNode) (*testNode, map[string]string) {
	t.Helper()
	var (
		leader *testNode
		got    map[string]string
	)
	require.Eventually(t, func() bool {
		leader = nil
		for _, n := range nodes {
			if n.store.IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		got = leader.config(t)
		return slices.ContainsFunc(wants, func(want map[string]string) bool { return maps.Equal(got, want) })
	}, 20*time.Second, 20*time.Millisecond, "the raft configuration never became one of %v", wants)
	return leader, got
}

func voters(names ...string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		out[n] = "Voter"
	}
	return out
}

func with(m map[string]string, suffrage string, names ...string) map[string]string {
	out := maps.Clone(m)
	for _, n := range names {
		out[n] = suffrage
	}
	return out
}

func without(m map[string]string, names ...string) map[string]string {
	out := maps.Clone(m)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// TestRaftMembersBootstrapTogether: three members started with the same seed list and expect=3 form one cluster;
// a member restarted on its data (from new ports) neither bootstraps again nor loses its vote.
func TestRaftMembersBootstrapTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	seeds := []string{freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var nodes []*testNode
	for i, name := range []string{"n1", "n2", "n3"} {
		n := startTestNode(t, name, dirs[i], nodeOpts{expect: 3, seeds: seeds, gossip: seeds[i]})
		nodes = append(nodes, n)
	}
	leader := leaderOf(t, nodes...)
	want := voters("n1", "n2", "n3")
	for _, n := range nodes {
		require.Eventually(t, func() bool { return maps.Equal(n.config(t), want) }, 5*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return n.m.selfMeta().Formed }, 5*time.Second, 10*time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("removal outside the leader names the leader", func(t *testing.T) {
		for _, n := range nodes {
			err := n.rm.RemoveServer(ctx, "absent")
			if n == leader {
				require.NoError(t, err, "removing an absent member is a no-op")
				require.ErrorContains(t, n.rm.RemoveServer(ctx, n.name), "cannot remove itself")
				continue
			}
			require.ErrorIs(t, err, raftstore.ErrNotLeader)
			var nle *raftstore.NotLeaderError
			require.True(t, errors.As(err, &nle))
			require.Equal(t, leader.name, nle.LeaderID)
			require.Equal(t, leader.store.Addr(), nle.LeaderAddr)
		}
	})

	t.Run("a restarted member does not bootstrap again", func(t *testing.T) {
		victim := nodes[2]
		if victim == leader {
			victim = nodes[1]
		}
		oldAddr := victim.store.Addr()
		victim.kill()
		i := slices.Index(nodes, victim)
		again := startTestNode(t, victim.name, victim.dir, nodeOpts{expect: 3, seeds: seeds})
		nodes[i] = again
		require.NotEqual(t, oldAddr, again.store.Addr(), "raft comes back on a new port")
		leaderOf(t, nodes...)
		require.Eventually(t, func() bool {
			servers, err := leader.store.Servers()
			return err == nil && slices.Contains(servers,
				raftstore.Server{ID: again.name, Addr: again.store.Addr(), Suffrage: "Voter"})
		}, 10*time.Second, 10*time.Millisecond, "the leader moves the member to its new raft address")
		require.Zero(t, again.rm.bootstraps.Load())
	})
}

// TestRaftMembersGrowAndShrink: five members (expect=3) end with five voters; a sixth and seventh join as
// non-voters; the leader leaves gracefully (handing over leadership) and a non-voter takes its vote; a crashed
// voter is removed after the grace period and the other non-voter takes its vote.
func TestRaftMembersGrowAndShrink(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a seven-node cluster")
	}
	first := startTestNode(t, "n1", t.TempDir(), nodeOpts{expect: 3, zone: "z1"})
	seeds := []string{first.m.Addr()}
	nodes := []*testNode{first}
	for _, name := range []string{"n2", "n3", "n4", "n5"} {
		nodes = append(nodes, startTestNode(t, name, t.TempDir(), nodeOpts{expect: 3, seeds: seeds, zone: "z1"}))
	}
	five := voters("n1", "n2", "n3", "n4", "n5")
	eventuallyConfig(t, five, nodes...)
	leaderOf(t, nodes...)

	for _, name := range []string{"n6", "n7"} {
		nodes = append(nodes, startTestNode(t, name, t.TempDir(), nodeOpts{expect: 3, seeds: seeds, zone: "z2"}))
	}
	seven := with(five, "Nonvoter", "n6", "n7")
	leader := eventuallyConfig(t, seven, nodes...)
	for _, n := range nodes[5:] {
		require.Zero(t, n.rm.bootstraps.Load(), "%s joined an existing cluster", n.name)
	}

	// The leader leaves: it hands leadership over, has the new leader remove it (forwarded as the peer API
	// does), and n6 (first by name) takes its vote.
	nodes = slices.DeleteFunc(nodes, func(n *testNode) bool { return n == leader })
	leader.rm.removeSelf = forwardToLeader(nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, leader.rm.leave(ctx))
	next := leaderOf(t, nodes...)
	require.NotContains(t, next.config(t), leader.name, "leave returns once the removal has committed")
	leader.kill()
	// Either non-voter may take the vote: the one that shows first that it receives the log.
	_, afterLeave := eventuallyConfigOf(t, []map[string]string{
		with(without(seven, leader.name), "Voter", "n6"), with(without(seven, leader.name), "Voter", "n7"),
	}, nodes...)
	require.Eventually(t, func() bool { return stateOf(next.m, leader.name).State == stateLeft },
		5*time.Second, 10*time.Millisecond)

	// A voter crashes: after the grace period it is removed and n7 takes its vote.
	victim := nodes[0]
	if victim == next {
		victim = nodes[1]
	}
	crashed := time.Now()
	victim.kill()
	nodes = slices.DeleteFunc(nodes, func(n *testNode) bool { return n == victim })
	require.Eventually(t, func() bool { return stateOf(next.m, victim.name).State == stateDead },
		5*time.Second, 10*time.Millisecond)
	require.Contains(t, next.config(t), victim.name, "a dead member stays during the grace period")
	eventuallyConfig(t, with(without(afterLeave, victim.name), "Voter", "n6", "n7"), nodes...)
	require.GreaterOrEqual(t, time.Since(crashed), testGrace)
}

// TestRaftMembersOneNodeCluster: with expect=1 the first node bootstraps alone; a second stays a non-voter (two
// voters are no safer than one); a third makes three voters.
func TestRaftMembersOneNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	n1 := startTestNode(t, "n1", t.TempDir(), nodeOpts{expect: 1})
	eventuallyConfig(t, voters("n1"), n1)
	n2 := startTestNode(t, "n2", t.TempDir(), nodeOpts{expect: 1, seeds: []string{n1.m.Addr()}})
	eventuallyConfig(t, with(voters("n1"), "Nonvoter", "n2"), n1, n2)
	n3 := startTestNode(t, "n3", t.TempDir(), nodeOpts{expect: 1, seeds: []string{n1.m.Addr()}})
	eventuallyConfig(t, voters("n1", "n2", "n3"), n1, n2, n3)
	require.Equal(t, int32(1), n1.rm.bootstraps.Load())
	require.Zero(t, n2.rm.bootstraps.Load(), "a member that finds a cluster never bootstraps its own")
	require.Zero(t, n3.rm.bootstraps.Load())

	// Without a way to reach the leader, a leaving member is removed by the leader on seeing the leave.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leaver := n3
	if n3.store.IsLeader() {
		leaver = n2
	}
	require.NoError(t, leaver.rm.leave(ctx))
	leaver.kill()
	rest := slices.DeleteFunc([]*testNode{n1, n2, n3}, func(n *testNode) bool { return n == leaver })
	eventuallyConfig(t, without(voters("n1", "n2", "n3"), leaver.name), rest...)
}

// forwardToLeader stands in for the peer API: it runs removeServer on whichever node leads now.
func forwardToLeader(nodes []*testNode) func(context.Context, string) error {
	return func(ctx context.Context, id string) error {
		for _, n := range nodes {
			if n.store.IsLeader() {
				return n.rm.RemoveServer(ctx, id)
			}
		}
		return raftstore.ErrNotLeader
	}
}
