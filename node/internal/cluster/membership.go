package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hashicorp/memberlist"

	"github.com/edgefactory/edgefactory/imager/buildprofile"
)

// memberMeta is what a member tells the others about itself through gossip (JSON, at most
// memberlist.MetaMaxSize bytes).
type memberMeta struct {
	Name string `json:"name"`
	URL  string `json:"url,omitempty"` // advertised HTTP base URL
	// Peer is the base URL of the member's peer API when members talk mutual TLS on the cluster port
	// (https://host:port); empty: the peer API is under URL.
	Peer     string `json:"peer,omitempty"`
	RaftAddr string `json:"raft,omitempty"` // Raft transport address
	Zone     string `json:"zone,omitempty"`
	Version  string `json:"version,omitempty"`
	// Expect is the member's --bootstrap-expect; members that disagree refuse to bootstrap together.
	Expect int `json:"expect,omitempty"`
	// Formed is set once the member belongs to a Raft cluster: a cluster exists, so nobody may bootstrap another.
	Formed bool `json:"formed,omitempty"`
	// Replicating is set while the member receives the Raft log: it hears from a leader, and the configuration it
	// holds, which only the log brings, lists it at the Raft address it advertises. The leader promotes no
	// non-voter without it.
	Replicating bool `json:"replicating,omitempty"`
	// Netboot lists the segments (interface prefixes, like "10.80.0.0/24") the member answers network boot on.
	Netboot []string `json:"netboot,omitempty"`
	// Build is the member's build profile (its ID, architecture and builder), role and degraded tools: what
	// decides whether it may build (placement.go). Absent from members older than build profiles.
	Build *buildprofile.Member `json:"build,omitempty"`
}

// wireMeta is memberMeta plus the leaving flag, which only the membership itself sets.
type wireMeta struct {
	memberMeta
	// Leaving is announced before a graceful leave: memberlist reports a member that left and one that failed
	// alike (both through NotifyLeave), so without it nobody could tell the two apart.
	Leaving bool `json:"leaving,omitempty"`
}

// Member states as this node sees them. memberlist does not expose "suspect" through its public API, so a
// suspected member shows as alive until it is declared dead.
const (
	stateAlive   = "alive"
	stateLeaving = "leaving" // announced a graceful leave and is still answering
	stateDead    = "dead"    // stopped answering probes
	stateLeft    = "left"    // left gracefully
)

// member is one entry of the membership table, as /cluster shows it.
type member struct {
	Name  string     `json:"name"`
	Addr  string     `json:"addr"` // gossip address
	State string     `json:"state"`
	Since time.Time  `json:"since"` // when this node saw the state begin
	Meta  memberMeta `json:"meta"`
	// Heard is when this node last heard from the member: a probe answered, or news of it through gossip.
	Heard time.Time `json:"heard"`
}

// membershipConfig configures the gossip layer of one node.
type membershipConfig struct {
	NodeName string
	// BindAddr is the gossip address (TCP and UDP), host:port; port 0 picks a free port (Addr reports it).
	BindAddr string
	// AdvertiseAddr is the address others reach this node at, when it differs from the bound one: an IP or host
	// name, with an optional port (default: the bound port).
	AdvertiseAddr string
	Meta          memberMeta // Name is set to NodeName
	// Seeds are gossip addresses (host:port) of members to join. They are joined again every RejoinInterval,
	// because memberlist never retries a member it has declared dead: without it a healed partition stays split.
	Seeds          []string
	RejoinInterval time.Duration // default 30s
	// EncryptKey is the AES gossip key (16, 24 or 32 bytes); nil leaves gossip unencrypted.
	EncryptKey []byte
	// DeadNodeReclaimTime is how long after a member is declared dead its name may come back from another
	// address (a restart on a new IP or port). memberlist's default, never, would lock such a node out.
	DeadNodeReclaimTime time.Duration // default 10s
	// ForgetAfter drops dead and departed members from Members after this long.
	ForgetAfter time.Duration // default 24h
	Logger      *slog.Logger
	// OnChange is called after any join, leave, failure or metadata update, from a goroutine of its own (never
	// under a lock); bursts may be coalesced into one call.
	OnChange func()

	// tune adjusts memberlist's configuration after the LAN defaults; tests shorten its timers.
	tune func(*memberlist.Config)
	// wrapTransport lets tests put a lossy network under gossip; addr is the bound address.
	wrapTransport func(addr string, t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	// ResolveSeeds, when set, turns Seeds into gossip addresses before every join attempt (members of a mutual-TLS
	// cluster name each other's cluster ports as seeds, and ask them for their gossip addresses); seeds it cannot
	// resolve are left out of that attempt.
	ResolveSeeds func(seeds []string) []string
	// Registerer receives edgefactory_gossip_refused_total; nil: not registered.
	Registerer prometheus.Registerer
}

// membership is this node's view of the cluster's members, kept by memberlist gossip.
type membership struct {
	cfg  membershipConfig
	log  *slog.Logger
	list *memberlist.Memberlist
	addr string
	// keyring encrypts gossip (nil: plain); its keys change at run time when the cluster rotates its gossip key.
	keyring *memberlist.Keyring
	refused prometheus.Counter // gossip refused for its encryption

	mu      sync.Mutex
	self    wireMeta
	raw     []byte             // self, encoded; what NodeMeta hands memberlist
	members map[string]*member // by name, including this node and departed members

	watchMu  sync.Mutex
	watchers map[chan struct{}]struct{}

	changed   chan struct{} // 1-slot: a change is waiting for OnChange
	rejoin    chan struct{} // 1-slot: join the seeds again soon
	nudge     chan struct{} // 1-slot: join the seeds again now (someone joined this node before any seed answered)
	seeds     []string      // the seeds other than this node's own address
	attempted chan struct{} // closed after the first join attempt (at once without seeds)
	answered  chan struct{} // closed once a seed has answered a join (at once without seeds)
	stop      chan struct{} // closed by Leave or Shutdown: no more joins
	done      chan struct{} // closed by Shutdown
	wg        sync.WaitGroup

	stopOnce, shutdownOnce sync.Once
}

// newMembership starts gossip on cfg.BindAddr and joins the seeds in the background (retrying until one answers,
// then again every RejoinInterval).
func newMembership(cfg membershipConfig) (*membership, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	cfg.Meta.Name = cfg.NodeName
	m := &membership{
		cfg: cfg, log: cfg.Logger.With("component", "membership", "node", cfg.NodeName), members: map[string]*member{},
		self: wireMeta{memberMeta: cfg.Meta}, watchers: map[chan struct{}]struct{}{},
		changed: make(chan struct{}, 1), rejoin: make(chan struct{}, 1), nudge: make(chan struct{}, 1),
		attempted: make(chan struct{}), answered: make(chan struct{}), stop: make(chan struct{}),
		done: make(chan struct{}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgefactory_gossip_refused_total",
			Help: "Gossip messages refused: not encrypted, or with a key the cluster does not hold.",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(m.refused)
	}
	var err error
	if m.raw, err = encodeMeta(m.self); err != nil {
		return nil, err
	}
	mc, err := m.memberlistConfig()
	if err != nil {
		return nil, err
	}
	m.keyring = mc.Keyring
	if m.list, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.BindAddr, err)
	}
	m.addr = m.list.LocalNode().Address()
	m.log.Info("gossip started", "addr", m.addr, "seeds", cfg.Seeds, "encrypted", len(cfg.EncryptKey) > 0)
	m.wg.Add(1)
	go m.dispatch()
	m.seeds = slices.DeleteFunc(slices.Clone(cfg.Seeds), func(s string) bool { return s == m.addr })
	if len(m.seeds) == 0 {
		close(m.attempted)
		close(m.answered)
	} else {
		// Not waited for by Shutdown: a join to an unreachable seed blocks for memberlist's TCP timeout.
		go m.joinLoop(m.seeds)
	}
	return m, nil
}

func (c *membershipConfig) withDefaults() error {
	if c.NodeName == "" {
		return errors.New("membership: node name is empty")
	}
	if c.BindAddr == "" {
		return errors.New("membership: gossip bind address is empty")
	}
	if len(c.EncryptKey) > 0 {
		if err := memberlist.ValidateKey(c.EncryptKey); err != nil {
			return fmt.Errorf("membership: gossip key: %w", err)
		}
	}
	if c.RejoinInterval <= 0 {
		c.RejoinInterval = 30 * time.Second
	}
	if c.DeadNodeReclaimTime <= 0 {
		c.DeadNodeReclaimTime = 10 * time.Second
	}
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func encodeMeta(w wireMeta) ([]byte, error) {
	raw, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode member metadata: %w", err)
	}
	if len(raw) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("member metadata is %d bytes, more than gossip carries (%d)", len(raw),
			memberlist.MetaMaxSize)
	}
	return raw, nil
}

// Addr is the gossip address other members reach this node at (the bound port when BindAddr asked for port 0).
func (m *membership) Addr() string { return m.addr }

// Members lists every member this node knows, including itself and recently departed ones, sorted by name.
func (m *membership) Members() []member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]member, 0, len(m.members))
	for name, mb := range m.members {
		if (mb.State == stateDead || mb.State == stateLeft) && name != m.cfg.NodeName &&
			time.Since(mb.Since) > m.cfg.ForgetAfter {
			delete(m.members, name)
			continue
		}
		out = append(out, *mb)
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Alive returns the metadata of the members that are alive and not leaving, this node included, sorted by name.
func (m *membership) Alive() []memberMeta {
	var out []memberMeta
	for _, mb := range m.Members() {
		if mb.State == stateAlive {
			out = append(out, mb.Meta)
		}
	}
	return out
}

// self returns this node's current metadata.
func (m *membership) selfMeta() memberMeta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self.memberMeta
}

// updateMeta changes this node's metadata and gossips it, waiting up to timeout (> 0) for the broadcast to go
// out; a timeout is reported, but the update still spreads.
func (m *membership) updateMeta(change func(*memberMeta), timeout time.Duration) error {
	return m.setWire(func(w *wireMeta) { change(&w.memberMeta) }, timeout)
}

func (m *membership) setWire(change func(*wireMeta), timeout time.Duration) error {
	m.mu.Lock()
	w := m.self
	change(&w)
	w.Name = m.cfg.NodeName
	raw, err := encodeMeta(w)
	if err == nil {
		m.self, m.raw = w, raw
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if err := m.list.UpdateNode(timeout); err != nil {
		return fmt.Errorf("gossip metadata update: %w", err)
	}
	return nil
}

// watch returns a channel that receives a value (coalesced) after every membership change, until stop is called.
func (m *membership) watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.watchMu.Lock()
	m.watchers[ch] = struct{}{}
	m.watchMu.Unlock()
	return ch, func() {
		m.watchMu.Lock()
		delete(m.watchers, ch)
		m.watchMu.Unlock()
	}
}

// joinAttempted is closed once the first attempt to join the seeds has finished, successful or not (at once when
// there are no seeds). Whether a seed answered is seedAnswered's to tell.
func (m *membership) joinAttempted() <-chan struct{} { return m.attempted }

// seedAnswered is closed once a seed has answered a join (at once when there are no seeds): from then on this node
// sees the cluster its seeds belong to, if there is one. Until then it cannot tell a cluster being out there from
// a cluster not existing yet.
func (m *membership) seedAnswered() <-chan struct{} { return m.answered }

// hasSeeds reports whether this node was given anyone to join besides itself.
func (m *membership) hasSeeds() bool { return len(m.seeds) > 0 }

// Leave announces that this node is leaving (others stop counting it at once), then broadcasts memberlist's
// leave and waits up to timeout for it to go out. Gossip keeps answering until Shutdown, so the leave spreads.
func (m *membership) Leave(timeout time.Duration) error {
	select {
	case <-m.done:
		return errors.New("leave gossip: already shut down")
	default:
	}
	m.stopJoining()
	start := time.Now()
	if err := m.announceLeave(timeout / 2); err != nil {
		m.log.Warn("announcing the leave", "error", err)
	}
	if err := m.list.Leave(max(timeout-time.Since(start), time.Millisecond)); err != nil {
		return fmt.Errorf("leave gossip: %w", err)
	}
	m.log.Info("left the cluster")
	return nil
}

// announceLeave tells the others this node is about to leave, so they stop counting it before it goes, and can
// tell its departure from a failure. It waits up to timeout for the news to go out: memberlist's own leave
// message replaces any older message about this node still queued, so it must not overtake this one.
func (m *membership) announceLeave(timeout time.Duration) error {
	m.mu.Lock()
	announced := m.self.Leaving
	m.mu.Unlock()
	if announced {
		return nil
	}
	return m.setWire(func(w *wireMeta) { w.Leaving = true }, timeout)
}

// Shutdown stops gossip without a leave (others will declare this node dead). Safe to call more than once.
func (m *membership) Shutdown() {
	m.shutdownOnce.Do(func() {
		m.stopJoining()
		if err := m.list.Shutdown(); err != nil {
			m.log.Warn("stopping gossip", "error", err)
		}
		close(m.done)
		m.wg.Wait()
	})
}

func (m *membership) stopJoining() { m.stopOnce.Do(func() { close(m.stop) }) }

// joinLoop joins the seeds, retrying with backoff until this node has company, then again every RejoinInterval
// (or sooner when a name conflict says others still know this node at an old address).
func (m *membership) joinLoop(seeds []string) {
	first := min(time.Second, m.cfg.RejoinInterval)
	backoff := first
	lastWarn := time.Time{}
	answered := false
	for attempt := 0; ; attempt++ {
		select {
		case <-m.stop:
			return
		default:
		}
		addrs := seeds
		if m.cfg.ResolveSeeds != nil {
			addrs = m.cfg.ResolveSeeds(seeds)
		}
		contacted, err := m.list.Join(addrs)
		alone := m.list.NumMembers() <= 1
		if attempt == 0 {
			close(m.attempted)
		}
		if contacted > 0 && !answered {
			answered = true
			close(m.answered)
		}
		switch {
		case !alone:
			// Seeds that do not answer while others do are down or partitioned: normal, and retried.
			m.log.Debug("re-joined seeds", "contacted", contacted, "members", m.list.NumMembers(), "error", err)
			backoff = first
		case time.Since(lastWarn) > time.Minute:
			lastWarn = time.Now()
			m.log.Warn("alone: no seed answered; retrying", "seeds", seeds, "error", err)
		}
		wait := m.cfg.RejoinInterval
		if alone {
			wait, backoff = backoff, min(2*backoff, m.cfg.RejoinInterval)
		}
		t := time.NewTimer(wait)
		select {
		case <-m.stop:
			t.Stop()
			return
		case <-m.nudge:
			t.Stop() // a member joined this node: the seeds it came with may well answer now
		case <-m.rejoin:
			// Give memberlist a moment to declare the old address dead before asking again.
			t.Reset(first)
			select {
			case <-m.stop:
				t.Stop()
				return
			case <-t.C:
			}
		case <-t.C:
		}
	}
}

// dispatch calls OnChange and wakes the watchers after changes, outside memberlist's locks (its event callbacks
// run under them).
func (m *membership) dispatch() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case <-m.changed:
		}
		if m.cfg.OnChange != nil {
			m.cfg.OnChange()
		}
		m.watchMu.Lock()
		for ch := range m.watchers {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		m.watchMu.Unlock()
	}
}

func (m *membership) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// heardFrom notes that a member answered at t.
func (m *membership) heardFrom(name string, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mb, ok := m.members[name]; ok && t.After(mb.Heard) {
		mb.Heard = t
	}
}

// record applies one memberlist event to the table. Called from memberlist's callbacks, under its node lock: it
// must not call back into memberlist.
func (m *membership) record(n *memberlist.Node, left bool) {
	var w wireMeta
	if err := json.Unmarshal(n.Meta, &w); err != nil {
		m.log.Warn("unreadable member metadata", "member", n.Name, "error", err)
		w = wireMeta{}
	}
	w.Name = n.Name
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, known := m.members[n.Name]
	state := stateAlive
	switch {
	case left && (w.Leaving || known && prev.State == stateLeaving):
		state = stateLeft
	case left:
		state = stateDead
	case w.Leaving:
		state = stateLeaving
	}
	mb := &member{Name: n.Name, Addr: n.Address(), State: state, Since: time.Now(), Meta: w.memberMeta}
	if known && prev.State == state {
		mb.Since = prev.Since
	}
	if known {
		mb.Heard = prev.Heard
	}
	if !left {
		mb.Heard = time.Now()
	}
	m.members[n.Name] = mb
	if n.Name != m.cfg.NodeName && state == stateAlive && (!known || prev.State != stateAlive) {
		select {
		case <-m.answered:
		default:
			select {
			case m.nudge <- struct{}{}:
			default:
			}
		}
	}
	if !known || prev.State != state {
		m.log.Info("member "+state, "member", n.Name, "addr", mb.Addr, "url", w.URL, "raft", w.RaftAddr,
			"zone", w.Zone)
	}
	m.signal()
}
