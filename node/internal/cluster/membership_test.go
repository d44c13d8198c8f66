package cluster

import (
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
)

// gossipTestLog sends log lines to t.Log until the test's cleanups have run, so late gossip goroutines cannot log
// into a finished test.
type gossipTestLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *gossipTestLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func membersTestLogger(t testing.TB) *slog.Logger {
	w := &gossipTestLog{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// fastGossip shortens memberlist's LAN timers for loopback tests: failures are detected in well under a second
// and dead members are forgotten after half a second.
func fastGossip(c *memberlist.Config) {
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = 500 * time.Millisecond
	c.SuspicionMult = 2
	c.GossipToTheDeadTime = 500 * time.Millisecond
	c.TCPTimeout = time.Second
}

func testMembershipConfig(t testing.TB, name string, seeds ...string) membershipConfig {
	return membershipConfig{
		NodeName:            name,
		BindAddr:            "127.0.0.1:0",
		Meta:                memberMeta{URL: "http://" + name + ".test", RaftAddr: "127.0.0.1:1", Zone: "z1", Version: "test"},
		Seeds:               seeds,
		RejoinInterval:      200 * time.Millisecond,
		DeadNodeReclaimTime: 200 * time.Millisecond,
		Logger:              membersTestLogger(t),
		tune:                fastGossip,
	}
}

func startMembership(t testing.TB, cfg membershipConfig) *membership {
	t.Helper()
	m, err := newMembership(cfg)
	require.NoError(t, err)
	t.Cleanup(m.Shutdown)
	return m
}

func aliveNames(m *membership) []string {
	var names []string
	for _, a := range m.Alive() {
		names = append(names, a.Name)
	}
	return names
}

func stateOf(m *membership, name string) member {
	for _, mb := range m.Members() {
		if mb.Name == name {
			return mb
		}
	}
	return member{}
}

// eventuallyAlive waits until every one of ms sees exactly the alive members want.
func eventuallyAlive(t testing.TB, ms []*membership, want ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, m := range ms {
			if !slices.Equal(aliveNames(m), want) {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "members never agreed on %v", want)
}

func TestGossipLogLevel(t *testing.T) {
	for _, tc := range []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:5", slog.LevelDebug, "Stream connection from=127.0.0.1:5"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelInfo, "Marking b as failed"},
		{"[WARN] memberlist: Refuting a dead message", slog.LevelWarn, "Refuting a dead message"},
		{"[ERR] memberlist: Failed to send ping", slog.LevelError, "Failed to send ping"},
		{"[ERR] memberlist: Conflicting address for c", slog.LevelWarn, "Conflicting address for c"},
		{"[ERROR] memberlist: x", slog.LevelError, "x"},
		{"no prefix at all", slog.LevelInfo, "no prefix at all"},
	} {
		level, msg := gossipLogLevel(tc.line)
		require.Equal(t, tc.level, level, tc.line)
		require.Equal(t, tc.msg, msg, tc.line)
	}
}

func TestMembershipConfigErrors(t *testing.T) {
	for name, change := range map[string]func(*membershipConfig){
		"no name":         func(c *membershipConfig) { c.NodeName = "" },
		"no bind address": func(c *membershipConfig) { c.BindAddr = "" },
		"bind w/o port":   func(c *membershipConfig) { c.BindAddr = "127.0.0.1" },
		"short key":       func(c *membershipConfig) { c.EncryptKey = []byte("12345") },
		"huge metadata":   func(c *membershipConfig) { c.Meta.URL = strings.Repeat("x", memberlist.MetaMaxSize) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testMembershipConfig(t, "a")
			change(&cfg)
			m, err := newMembership(cfg)
			require.Error(t, err)
			require.Nil(t, m)
		})
	}
}

func TestMembershipJoinAndMetadata(t *testing.T) {
	a := startMembership(t, testMembershipConfig(t, "a"))
	_, port, err := net.SplitHostPort(a.Addr())
	require.NoError(t, err)
	require.NotEqual(t, "0", port, "Addr reports the bound port")
	select {
	case <-a.joinAttempted():
	default:
		t.Fatal("without seeds there is nothing to attempt")
	}

	var changes atomic.Int32
	bcfg := testMembershipConfig(t, "b", a.Addr())
	bcfg.OnChange = func() { changes.Add(1) }
	b := startMembership(t, bcfg)
	c := startMembership(t, testMembershipConfig(t, "c", a.Addr(), b.Addr()))
	all := []*membership{a, b, c}
	eventuallyAlive(t, all, "a", "b", "c")
	<-c.joinAttempted()

	require.Equal(t, memberMeta{Name: "b", URL: "http://b.test", RaftAddr: "127.0.0.1:1", Zone: "z1", Version: "test"},
		a.Alive()[1])
	mb := stateOf(a, "c")
	require.Equal(t, stateAlive, mb.State)
	require.Equal(t, c.Addr(), mb.Addr)
	require.Positive(t, changes.Load(), "OnChange runs on joins")

	t.Run("metadata updates spread", func(t *testing.T) {
		before := changes.Load()
		require.NoError(t, c.updateMeta(func(m *memberMeta) { m.Version = "v2"; m.Name = "renamed" }, time.Second))
		require.Eventually(t, func() bool {
			return stateOf(a, "c").Meta.Version == "v2" && stateOf(b, "c").Meta.Version == "v2"
		}, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, "c", c.selfMeta().Name, "the name is not metadata a member may change")
		require.Eventually(t, func() bool { return changes.Load() > before }, time.Second, time.Millisecond)
	})

	t.Run("oversized metadata is refused and changes nothing", func(t *testing.T) {
		err := c.updateMeta(func(m *memberMeta) { m.URL = strings.Repeat("u", 600) }, time.Second)
		require.ErrorContains(t, err, "more than gossip carries")
		require.Equal(t, "http://c.test", c.selfMeta().URL)
	})
}

func TestMembershipSeedRetry(t *testing.T) {
	addr := freeLoopbackAddr(t)
	b := startMembership(t, testMembershipConfig(t, "b", addr))
	<-b.joinAttempted()
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	require.Equal(t, []string{"b"}, aliveNames(b))

	acfg := testMembershipConfig(t, "a")
	acfg.BindAddr = addr
	a := startMembership(t, acfg)
	eventuallyAlive(t, []*membership{a, b}, "a", "b")
}

// freeLoopbackAddr finds a loopback port free for both TCP and UDP, for a member that must be started later at an
// address known now.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		require.NoError(t, ln.Close())
		if err == nil {
			require.NoError(t, pc.Close())
			return addr
		}
	}
	t.Fatal("no free port for TCP and UDP")
	return ""
}

func TestMembershipLeaveAndFailure(t *testing.T) {
	a := startMembership(t, testMembershipConfig(t, "a"))
	b := startMembership(t, testMembershipConfig(t, "b", a.Addr()))
	c := startMembership(t, testMembershipConfig(t, "c", a.Addr()))
	eventuallyAlive(t, []*membership{a, b, c}, "a", "b", "c")

	require.NoError(t, b.Leave(2*time.Second))
	require.Equal(t, stateLeft, stateOf(b, "b").State)
	b.Shutdown()
	require.Error(t, b.Leave(time.Second), "no leave after shutdown (memberlist would panic)")
	eventuallyAlive(t, []*membership{a, c}, "a", "c") // leaving members are no longer alive
	require.Eventually(t, func() bool {
		return stateOf(a, "b").State == stateLeft && stateOf(c, "b").State == stateLeft
	}, 5*time.Second, 10*time.Millisecond, "a graceful leave is told apart from a failure")

	c.Shutdown() // no leave: a must detect the failure
	eventuallyAlive(t, []*membership{a}, "a")
	require.Equal(t, stateDead, stateOf(a, "c").State)
	require.Len(t, a.Members(), 3, "departed members stay listed")
}

func TestMembershipEncryption(t *testing.T) {
	key := []byte("0123456789abcdef")
	keyed := func(name string, key []byte, seeds ...string) *membership {
		cfg := testMembershipConfig(t, name, seeds...)
		cfg.EncryptKey = key
		return startMembership(t, cfg)
	}
	a := keyed("a", key)
	b := keyed("b", key, a.Addr())
	eventuallyAlive(t, []*membership{a, b}, "a", "b")

	wrongKey := keyed("c", []byte("fedcba9876543210"), a.Addr())
	noKey := keyed("d", nil, a.Addr())
	<-wrongKey.joinAttempted()
	<-noKey.joinAttempted()
	time.Sleep(time.Second) // several join attempts and gossip rounds
	require.Equal(t, []string{"a", "b"}, aliveNames(a))
	require.Equal(t, []string{"a", "b"}, aliveNames(b))
	require.Equal(t, []string{"c"}, aliveNames(wrongKey))
	require.Equal(t, []string{"d"}, aliveNames(noKey))
}

// TestMembershipRestartOnNewAddress: a member that crashes and comes back under its name from another port is
// accepted once the old address is declared dead and DeadNodeReclaimTime has passed (memberlist's default is
// never).
func TestMembershipRestartOnNewAddress(t *testing.T) {
	a := startMembership(t, testMembershipConfig(t, "a"))
	b := startMembership(t, testMembershipConfig(t, "b", a.Addr()))
	c := startMembership(t, testMembershipConfig(t, "c", a.Addr()))
	eventuallyAlive(t, []*membership{a, b, c}, "a", "b", "c")
	old := c.Addr()
	c.Shutdown() // a crash: no leave

	c2 := startMembership(t, testMembershipConfig(t, "c", a.Addr()))
	require.NotEqual(t, old, c2.Addr())
	require.Eventually(t, func() bool {
		return stateOf(a, "c").Addr == c2.Addr() && stateOf(b, "c").Addr == c2.Addr()
	}, 10*time.Second, 10*time.Millisecond, "the restarted member is accepted at its new address")
	eventuallyAlive(t, []*membership{a, b, c2}, "a", "b", "c")
}

// partitionNet cuts gossip between members on different sides. Each member's transport drops what it would send
// across (datagrams vanish, connections are refused), so cutting both ways takes no change to inbound paths.
type partitionNet struct {
	mu   sync.Mutex
	side map[string]int // gossip address → side; unlisted addresses are on side 0
}

func (p *partitionNet) cut(from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.side[from] != p.side[to]
}

// isolate puts members on a side of their own.
func (p *partitionNet) isolate(addrs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.side = map[string]int{}
	for _, a := range addrs {
		p.side[a] = 1
	}
}

func (p *partitionNet) heal() { p.isolate() }

func (p *partitionNet) wrap(self string, t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return &lossyTransport{NodeAwareTransport: t, self: self, net: p}
}

type lossyTransport struct {
	memberlist.NodeAwareTransport
	self string
	net  *partitionNet
}

var errPartitioned = errors.New("partitioned (test)")

func (l *lossyTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if l.net.cut(l.self, addr) {
		return time.Now(), nil
	}
	return l.NodeAwareTransport.WriteTo(b, addr)
}

func (l *lossyTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if l.net.cut(l.self, a.Addr) {
		return time.Now(), nil
	}
	return l.NodeAwareTransport.WriteToAddress(b, a)
}

func (l *lossyTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if l.net.cut(l.self, addr) {
		return nil, errPartitioned
	}
	return l.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (l *lossyTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if l.net.cut(l.self, a.Addr) {
		return nil, errPartitioned
	}
	return l.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// TestMembershipPartitionHeals cuts one member off until both sides have declared the other dead and forgotten it
// (GossipToTheDeadTime), then heals the network. memberlist alone never talks to a dead member again, so only
// re-joining the seeds merges the halves; the control run, whose re-join is an hour away, stays split.
func TestMembershipPartitionHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for failure detection twice")
	}
	for _, tc := range []struct {
		name   string
		rejoin time.Duration
		heals  bool
	}{
		{"seeds re-joined", 200 * time.Millisecond, true},
		{"control: no re-join", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pn := &partitionNet{}
			cfg := func(name string, seeds ...string) membershipConfig {
				c := testMembershipConfig(t, name, seeds...)
				c.RejoinInterval = tc.rejoin
				c.wrapTransport = pn.wrap
				return c
			}
			a := startMembership(t, cfg("a"))
			b := startMembership(t, cfg("b", a.Addr()))
			c := startMembership(t, cfg("c", a.Addr()))
			eventuallyAlive(t, []*membership{a, b, c}, "a", "b", "c")

			pn.isolate(a.Addr())
			eventuallyAlive(t, []*membership{a}, "a")
			eventuallyAlive(t, []*membership{b, c}, "b", "c")
			time.Sleep(time.Second) // past GossipToTheDeadTime: the dead are no longer even gossiped to

			pn.heal()
			if tc.heals {
				eventuallyAlive(t, []*membership{a, b, c}, "a", "b", "c")
				return
			}
			time.Sleep(2 * time.Second)
			require.Equal(t, []string{"a"}, aliveNames(a))
			require.Equal(t, []string{"b", "c"}, aliveNames(b))
		})
	}
}
