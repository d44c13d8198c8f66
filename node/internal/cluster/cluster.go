// Package cluster is this member's part in the cluster: gossip membership (memberlist), the Raft configuration
// kept in line with it (bootstrap together, promote to 3 or 5 voters only members that receive the log, leave
// without costing the quorum, remove the long dead), the view of alive members and the ring that places keys on
// them, and everything that goes through the leader: writes forwarded from any member, read indexes, and records
// a member lacks read from the leader instead of waited for.
//
// Guarantee: a write returns once committed and applied here (read-your-writes from any member); a read of this
// member's replica after ConfirmRead, and a record read from the leader, sees every write acknowledged before it
// (linearizable, checked by e2e/netns TestNetnsLinearizable); a member is ready only once it has applied the log
// as far as the leader had it when the member came back; a member never bootstraps a second cluster while a seed
// it was given might still answer.
//
// It takes the replicated store (raftstore) and the peer client; it knows nothing of assets, catalogs or keys.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hashicorp/memberlist"

	"github.com/edgefactory/edgefactory/imager/buildprofile"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
	"github.com/edgefactory/edgefactory/ring"
)

// RingPartitionsSetting keeps the ring's partition count in Raft: fixed by the first leader, so a member started
// with another --ring-partitions still places keys like the rest.
const RingPartitionsSetting = "ring-partitions"

// Config is what a member's part in the cluster needs.
type Config struct {
	NodeName string
	URL      string // this member's advertised HTTP base URL
	// PeerURL is this member's peer API base URL on the mutual-TLS cluster port; empty: the peer API is under URL.
	PeerURL string
	Zone    string
	Version string
	// GossipListen and GossipAdvertise are the gossip addresses bound and advertised; Join lists the seeds.
	GossipListen, GossipAdvertise string
	Join                          []string
	// Registerer receives the gossip metrics; nil: not registered.
	Registerer prometheus.Registerer
	// ResolveSeeds turns Join into gossip addresses at every attempt (see membershipConfig.ResolveSeeds).
	ResolveSeeds    func(seeds []string) []string
	GossipKey       []byte
	BootstrapExpect int
	DeadMemberGrace time.Duration
	RingPartitions  int
	// NetbootSegments are the prefixes of the interfaces this member answers network boot on, gossiped so the
	// members of a segment agree which of them answers a machine.
	NetbootSegments []string
	// Build is this member's build profile and role, gossiped so that every member agrees who may build.
	Build  buildprofile.Member
	Logger *slog.Logger
	// Tune shortens timers for clusters on loopback (tests).
	Tune *Tune
	// StaleReads is for tests only: reads skip the leader check and serve this member's replica as it is, so the
	// linearizability check (e2e/netns, TestNetnsLinearizable) can show that it catches stale reads. Never set it
	// in production: a member cut off from its quorum would answer with old settings and "not found".
	StaleReads bool
}

// Tune overrides timers that suit a LAN but slow tests down.
type Tune struct {
	Gossip func(*memberlist.Config) // memberlist's failure detection and gossip timers
	Rejoin time.Duration            // how often seeds are joined again
	Settle time.Duration            // how long the member list must hold still before bootstrapping
}

// Cluster is this member's part in the cluster.
type Cluster struct {
	name    string
	log     *slog.Logger
	store   *raftstore.Store
	peers   *peer.Client
	members *membership
	raft    *raftMembers
	view    *view
	current currency      // whether this member has caught up with the log as it stood when it started
	setting atomic.Value  // string: the buildProfile setting in force (placement.go)
	replace chan struct{} // 1-slot: the setting changed, place builders again
	// staleReads skips the leader check of reads (Config.StaleReads: tests only).
	staleReads bool
}

// New starts gossip (joining the seeds in the background); Run keeps the Raft configuration and the view in line
// with it.
func New(cfg Config, store *raftstore.Store, peers *peer.Client) (*Cluster, error) {
	build := cfg.Build
	build.Name = "" // the metadata names the member already: gossip carries at most 512 bytes

	mc := membershipConfig{
		NodeName:      cfg.NodeName,
		BindAddr:      cfg.GossipListen,
		AdvertiseAddr: cfg.GossipAdvertise,
		Meta: memberMeta{URL: cfg.URL, Peer: cfg.PeerURL, RaftAddr: store.Addr(), Zone: cfg.Zone, Version: cfg.Version,
			Netboot: cfg.NetbootSegments, Build: &build},
		Seeds:        cfg.Join,
		ResolveSeeds: cfg.ResolveSeeds,
		Registerer:   cfg.Registerer,
		EncryptKey:   cfg.GossipKey,
		Logger:       cfg.Logger,
	}
	if cfg.Tune != nil {
		mc.tune, mc.RejoinInterval = cfg.Tune.Gossip, cfg.Tune.Rejoin
	}

	m, err := newMembership(mc)
	if err != nil {
		return nil, fmt.Errorf("join the cluster: %w", err)
	}

	c := &Cluster{name: cfg.NodeName, log: cfg.Logger, store: store, peers: peers, members: m, staleReads: cfg.StaleReads,
		replace: make(chan struct{}, 1),
		view:    newView(cfg.NodeName, cfg.URL, peerBase(cfg.URL, cfg.PeerURL), ring.New(ring.Config{PartitionCount: cfg.RingPartitions}))}
	c.raft = newRaftMembers(store, m, cfg.BootstrapExpect, cfg.DeadMemberGrace, cfg.Logger)
	c.raft.removeSelf = c.removeFromRaft

	if cfg.Tune != nil && cfg.Tune.Settle > 0 {
		c.raft.settle = cfg.Tune.Settle
	}

	return c, nil
}

// Run keeps the Raft configuration in line with gossip, the view and the ring in line with the alive members, and
// catches this member up with the log, until ctx ends.
func (c *Cluster) Run(ctx context.Context) {
	var wg sync.WaitGroup

	wg.Go(func() { c.raft.run(ctx) })
	wg.Go(func() { c.followMembership(ctx) })
	wg.Go(func() { c.catchUpAtStart(ctx) })
	wg.Wait()
}

// Leave leaves gracefully: out of the Raft configuration when the quorum allows, then out of gossip.
func (c *Cluster) Leave(ctx context.Context) error { return c.raft.leave(ctx) }

// Shutdown stops gossip at once (no goodbye).
func (c *Cluster) Shutdown() { c.members.Shutdown() }

// Ready says why this member cannot serve yet: no leader (and what it waits for), or still catching up with the
// log; nil once it can.
func (c *Cluster) Ready() error {
	if id, _ := c.store.Leader(); id == "" {
		if why := c.raft.bootstrapWait(); why != "" {
			return fmt.Errorf("no raft leader yet: %s", why)
		}

		return errors.New("no raft leader yet")
	}

	if why := c.current.state(c.store.AppliedIndex()); why != "" {
		return errors.New(why)
	}

	return nil
}

// EnsureRingPartitions is a leader duty: record the ring's partition count once, when the cluster is new.
func (c *Cluster) EnsureRingPartitions(ctx context.Context, partitions int) error {
	if _, ok, _ := c.store.Setting(RingPartitionsSetting); ok {
		return nil
	}

	_, err := raftstore.InitSetting(ctx, c.store, RingPartitionsSetting, []byte(strconv.Itoa(partitions)))

	return err
}

// RemoveServer takes a leaving member out of the Raft configuration; only the leader does (peer.Membership).
func (c *Cluster) RemoveServer(ctx context.Context, id string) error {
	return c.raft.RemoveServer(ctx, id)
}

// followMembership keeps the view (alive members, their URLs, the ring) in line with gossip until ctx ends.
func (c *Cluster) followMembership(ctx context.Context) {
	changes, stop := c.members.watch()
	defer stop()

	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()

	for {
		if raw, ok, err := c.store.Setting(RingPartitionsSetting); err == nil && ok {
			if p, err := strconv.Atoi(string(raw)); err == nil && p > 0 && c.view.setPartitions(p) {
				c.log.Warn("ring partition count taken from the cluster (fixed when it was created)", "partitions", p)
			}
		}

		alive := c.members.Alive()
		urls, peers := map[string]string{}, map[string]string{}
		for _, m := range alive {
			urls[m.Name], peers[m.Name] = m.URL, peerBase(m.URL, m.Peer)
		}

		if len(urls) > 0 {
			before := c.view.placement()
			after := c.place(alive)

			if c.view.set(urls, peers, after) {
				c.log.Info("ring changed", "members", len(urls), "ring_version", c.view.RingVersion())
			}

			if before.profile != after.profile || !slices.Equal(before.builders(), after.builders()) {
				c.log.Info("builders placed", "build_profile", after.profile, "setting", after.setting,
					"builders", after.builders())
			}
		}

		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-c.replace:
		case <-tick.C:
		}
	}
}

// removeFromRaft has the Raft leader remove member id: here when this member leads, else over the leader's peer
// API. It returns once the removal has committed.
func (c *Cluster) removeFromRaft(ctx context.Context, id string) error {
	err := c.raft.RemoveServer(ctx, id)

	var notLeader *raftstore.NotLeaderError
	if !errors.As(err, &notLeader) || notLeader.LeaderID == "" {
		return err
	}

	base, ok := c.view.PeerURL(notLeader.LeaderID)
	if !ok {
		return err
	}

	return c.peers.RemoveServer(ctx, base, id)
}

// Member is one member as gossip sees it, departed ones included.
type Member struct {
	Name, URL, Zone, Version string
	// State is the gossip state: alive, leaving, dead or left.
	State string
	// LastContact is when this member last heard from it (zero for this member itself).
	LastContact time.Time
	// Build is its build profile and role as it gossiped them (zero from a member older than build profiles).
	Build buildprofile.Member
}

// Members lists the members as gossip sees them, departed ones included.
func (c *Cluster) MemberStates() []Member {
	var out []Member

	for _, m := range c.members.Members() {
		mb := Member{Name: m.Name, URL: m.Meta.URL, Zone: m.Meta.Zone, Version: m.Meta.Version, State: m.State}
		if m.Name != c.Self() {
			mb.LastContact = m.Heard
		}

		if m.Meta.Build != nil {
			mb.Build = *m.Meta.Build
		}

		out = append(out, mb)
	}

	return out
}

// NetbootMembers lists the alive members that answer network boot on segment (a prefix as gossiped), this one
// included when it does, sorted by name.
func (c *Cluster) NetbootMembers(segment string) []string {
	var out []string

	for _, m := range c.members.Alive() {
		if slices.Contains(m.Netboot, segment) {
			out = append(out, m.Name)
		}
	}

	return out
}

// The view: who is alive, where to reach them, and who owns a key.

// Self is this member's name.
func (c *Cluster) Self() string { return c.view.Self() }

// Owner is the alive member that owns key on the ring.
func (c *Cluster) Owner(key string) (string, bool) { return c.view.Owner(key) }

// Holders are the n alive members that should hold key, the owner first.
func (c *Cluster) Holders(key string, n int) []string { return c.view.Holders(key, n) }

// Members lists the alive members, sorted, this one included.
func (c *Cluster) Members() []string { return c.view.Members() }

// URL is a member's advertised base URL.
func (c *Cluster) URL(name string) (string, bool) { return c.view.URL(name) }

// Keyring is the keyring gossip is encrypted with; nil when gossip is plain.
func (c *Cluster) Keyring() *memberlist.Keyring { return c.members.keyring }

// GossipAddr is this member's gossip address, as others reach it.
func (c *Cluster) GossipAddr() string { return c.members.Addr() }

// PeerURL is the base URL of a member's peer API.
func (c *Cluster) PeerURL(name string) (string, bool) { return c.view.PeerURL(name) }

// peerBase is a member's peer API base URL: on the cluster port when it has one, else under its HTTP URL.
func peerBase(url, peer string) string {
	if peer != "" {
		return peer
	}

	return url
}

// RingVersion changes with every membership change; it is logged with routing decisions.
func (c *Cluster) RingVersion() uint64 { return c.view.RingVersion() }

// Ring is the ring as this member sees it now.
func (c *Cluster) Ring() *ring.Ring { return c.view.ring.Load() }
