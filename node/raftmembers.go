package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgefactory/edgefactory/raftstore"
)

const (
	// maxVoters caps the Raft voters: 5 tolerate two failures, and more only slow every commit down.
	maxVoters = 5
	// metaTimeout bounds the wait for a metadata broadcast; the update spreads anyway.
	metaTimeout = 250 * time.Millisecond
)

// raftMembers keeps the Raft configuration in line with gossip membership:
//   - before any cluster exists, the first `expect` members (sorted by name) bootstrap it together, once;
//   - on the leader, every alive member is added (as a voter up to 3 or 5, else as a non-voter), a member that
//     left is removed at once, one dead longer than the grace period is removed, and non-voters are promoted to
//     keep 3 or 5 voters.
//
// It makes one change at a time and re-reads the configuration after each.
type raftMembers struct {
	store  *raftstore.Store
	m      *membership
	expect int
	grace  time.Duration
	log    *slog.Logger

	// Set before run; newRaftMembers fills defaults.
	interval time.Duration // periodic re-check besides membership and leadership changes
	settle   time.Duration // the alive set must hold still this long before bootstrapping
	// removeSelf asks the leader to remove this node when it leaves, returning once the removal committed: the
	// node sets it to run removeServer here and, on raftstore.ErrNotLeader, on the leader over the peer API.
	// When nil, leave relies on the leader seeing the leave in gossip.
	removeSelf func(ctx context.Context, id string) error

	bootstraps atomic.Int32 // bootstrap attempts made, for tests

	gone      map[string]time.Time // servers not alive in gossip → since when (leader only)
	aliveSet  string               // names of alive members at the last pass, for settle
	aliveFrom time.Time
	wakeAt    time.Time // when a pending decision comes due (settle or grace ends); zero: none
	waitLog   string    // last reason given for not bootstrapping, so it is logged once
}

func newRaftMembers(store *raftstore.Store, m *membership, expect int, grace time.Duration,
	log *slog.Logger) *raftMembers {
	if grace <= 0 {
		grace = 5 * time.Minute
	}
	r := &raftMembers{store: store, m: m, expect: max(expect, 1), grace: grace,
		log:      log.With("component", "raft-members", "node", store.ID()),
		interval: 10 * time.Second, settle: 3 * time.Second, gone: map[string]time.Time{}}
	if err := m.updateMeta(func(mm *memberMeta) { mm.Expect = r.expect; mm.Formed = r.formed() },
		metaTimeout); err != nil {
		r.log.Debug("advertising bootstrap settings", "error", err)
	}
	return r
}

// run reconciles on every membership change, leadership change and interval tick until ctx ends.
func (r *raftMembers) run(ctx context.Context) {
	changes, stopWatch := r.m.watch()
	defer stopWatch()
	leadership, stopLead := r.store.WatchLeadership()
	defer stopLead()
	attempted := r.m.joinAttempted() // bootstrapping waits for the first join attempt
	timer := time.NewTimer(r.interval)
	defer timer.Stop()
	for {
		r.reconcile(ctx)
		next := r.interval
		if !r.wakeAt.IsZero() {
			next = min(next, time.Until(r.wakeAt)+10*time.Millisecond)
		}
		timer.Reset(max(next, time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-attempted:
			attempted = nil
		case _, ok := <-leadership:
			if !ok {
				return
			}
		case <-timer.C:
		}
	}
}

// formed reports whether this node belongs to a Raft cluster (its configuration lists anyone).
func (r *raftMembers) formed() bool {
	servers, err := r.store.Servers()
	return err == nil && len(servers) > 0
}

func (r *raftMembers) reconcile(ctx context.Context) {
	r.wakeAt = time.Time{}
	if !r.formed() {
		r.tryBootstrap()
		return
	}
	if !r.m.selfMeta().Formed {
		if err := r.m.updateMeta(func(mm *memberMeta) { mm.Formed = true }, metaTimeout); err != nil {
			r.log.Debug("advertising cluster membership", "error", err)
		}
	}
	if !r.store.IsLeader() {
		clear(r.gone)
		return
	}
	for range 2 * maxVoters { // one change per step; a bound so a flapping member cannot spin the loop
		if ctx.Err() != nil || !r.step(ctx) {
			break
		}
	}
	now := time.Now()
	for _, since := range r.gone {
		if due := since.Add(r.grace); due.After(now) && (r.wakeAt.IsZero() || due.Before(r.wakeAt)) {
			r.wakeAt = due
		}
	}
}

// tryBootstrap forms the cluster when this node is one of the first `expect` alive members and no member reports
// an existing cluster. Every candidate computes the same server list from the same gossip view.
func (r *raftMembers) tryBootstrap() {
	select {
	case <-r.m.joinAttempted():
	default:
		return // a cluster may be out there: ask the seeds first
	}
	has, err := r.store.HasState()
	if err != nil || has {
		// Voted in an election, or being sent the log: a leader knows of this node already.
		return
	}
	alive := r.m.Alive()
	names := make([]string, len(alive))
	for i, a := range alive {
		names[i] = a.Name
	}
	if set := strings.Join(names, ","); set != r.aliveSet {
		r.aliveSet, r.aliveFrom = set, time.Now()
	}
	servers, why := bootstrapServers(r.m.cfg.NodeName, r.expect, alive)
	// Candidates must bootstrap from the same view: wait until gossip has stopped bringing news. Only a lone
	// node with nobody to wait for starts at once.
	lone := r.expect == 1 && !r.m.hasSeeds()
	if why == "" && !lone && time.Since(r.aliveFrom) < r.settle {
		why = "waiting for the member list to settle"
		r.wakeAt = r.aliveFrom.Add(r.settle)
	}
	if why != "" {
		if why != r.waitLog {
			r.waitLog = why
			r.log.Info("not bootstrapping raft: "+why, "alive", len(alive), "expect", r.expect)
		}
		return
	}
	r.bootstraps.Add(1)
	err = r.store.BootstrapCluster(servers)
	switch {
	case errors.Is(err, raftstore.ErrCantBootstrap):
		r.log.Info("raft state appeared; bootstrap skipped")
	case err != nil:
		r.log.Error("bootstrapping raft", "error", err)
	default:
		r.log.Info("bootstrapped raft with the first members", "servers", names[:r.expect])
	}
}

// bootstrapServers returns the initial voters (the first expect alive members by name) when self is one of them
// and nothing forbids bootstrapping, else the reason to wait. alive is sorted by name.
func bootstrapServers(self string, expect int, alive []memberMeta) ([]raftstore.Server, string) {
	for _, a := range alive {
		switch {
		case a.Formed:
			return nil, "member " + a.Name + " already belongs to a raft cluster; waiting to be added"
		case a.Expect != 0 && a.Expect != expect:
			return nil, fmt.Sprintf("member %s expects %d members, this node %d", a.Name, a.Expect, expect)
		}
	}
	if len(alive) < expect {
		return nil, fmt.Sprintf("%d of %d members alive", len(alive), expect)
	}
	first := alive[:expect]
	if !slices.ContainsFunc(first, func(a memberMeta) bool { return a.Name == self }) {
		return nil, "not among the first members by name; waiting to be added"
	}
	servers := make([]raftstore.Server, 0, expect)
	for _, a := range first {
		if a.RaftAddr == "" {
			return nil, "member " + a.Name + " advertises no raft address"
		}
		servers = append(servers, raftstore.Server{ID: a.Name, Addr: a.RaftAddr, Suffrage: "Voter"})
	}
	return servers, ""
}

// step makes at most one change to the Raft configuration and reports whether it did.
func (r *raftMembers) step(ctx context.Context) bool {
	servers, err := r.store.Servers()
	if err != nil {
		r.log.Warn("reading raft configuration", "error", err)
		return false
	}
	members := map[string]member{}
	for _, mb := range r.m.Members() {
		members[mb.Name] = mb
	}
	now := time.Now()
	r.trackGone(servers, members, now)
	change, ok := planRaftChange(raftView{self: r.store.ID(), servers: servers, members: members, gone: r.gone,
		now: now, grace: r.grace})
	if !ok {
		return false
	}
	if err := r.apply(ctx, change); err != nil {
		r.log.Warn("raft membership change failed; will retry", "change", change.op, "server", change.id,
			"why", change.why, "error", err)
		return false
	}
	r.log.Info("raft membership changed", "change", change.op, "server", change.id, "addr", change.addr,
		"why", change.why)
	return true
}

// trackGone records since when each configured server has been missing from gossip; a server this node never saw
// counts from the first time it looked.
func (r *raftMembers) trackGone(servers []raftstore.Server, members map[string]member, now time.Time) {
	inConfig := map[string]bool{}
	for _, srv := range servers {
		inConfig[srv.ID] = true
		mb, known := members[srv.ID]
		switch {
		case known && mb.State == stateAlive:
			delete(r.gone, srv.ID)
		case r.gone[srv.ID].IsZero():
			since := now
			if known && mb.State != stateLeaving && mb.Since.Before(now) {
				since = mb.Since
			}
			r.gone[srv.ID] = since
		}
	}
	for id := range r.gone {
		if !inConfig[id] {
			delete(r.gone, id)
		}
	}
}

func (r *raftMembers) apply(ctx context.Context, c raftChange) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch c.op {
	case opAddVoter:
		return r.store.AddVoter(ctx, c.id, c.addr)
	case opAddNonvoter:
		return r.store.AddNonvoter(ctx, c.id, c.addr)
	default:
		return r.store.RemoveServer(ctx, c.id)
	}
}

type changeOp string

const (
	opAddVoter    changeOp = "add-voter" // also promotes a non-voter, or moves a voter to a new address
	opAddNonvoter changeOp = "add-nonvoter"
	opRemove      changeOp = "remove"
)

type raftChange struct {
	op       changeOp
	id, addr string
	why      string
}

// raftView is what the leader decides from: the configuration, the gossip table and how long servers have been
// gone.
type raftView struct {
	self    string
	servers []raftstore.Server
	members map[string]member
	gone    map[string]time.Time
	now     time.Time
	grace   time.Duration
}

func (v raftView) alive(id string) (member, bool) {
	mb, ok := v.members[id]
	return mb, ok && mb.State == stateAlive
}

// planRaftChange picks the next change, most urgent first: drop members that left, move members that came back
// on a new Raft address, drop members dead past the grace period, add newcomers, promote non-voters.
func planRaftChange(v raftView) (raftChange, bool) {
	voters, aliveVoters := 0, 0
	inConfig := map[string]raftstore.Server{}
	for _, srv := range v.servers {
		inConfig[srv.ID] = srv
		if srv.Suffrage == "Voter" {
			voters++
			if _, ok := v.alive(srv.ID); ok || srv.ID == v.self {
				aliveVoters++
			}
		}
	}
	// A voter may go only if the voters gossip sees alive can still commit without it; otherwise gossip and Raft
	// disagree (a gossip-only partition) and removing would only weaken the cluster.
	canRemove := func(srv raftstore.Server) bool {
		if srv.Suffrage != "Voter" {
			return true
		}
		stillAlive := aliveVoters
		if _, ok := v.alive(srv.ID); ok {
			stillAlive--
		}
		return stillAlive >= (voters-1)/2+1
	}
	for _, srv := range v.servers {
		mb, known := v.members[srv.ID]
		if srv.ID != v.self && known && (mb.State == stateLeaving || mb.State == stateLeft) && canRemove(srv) {
			return raftChange{op: opRemove, id: srv.ID, why: "member " + mb.State}, true
		}
	}
	for _, srv := range v.servers {
		if mb, ok := v.alive(srv.ID); ok && mb.Meta.RaftAddr != "" && mb.Meta.RaftAddr != srv.Addr {
			op := opAddNonvoter
			if srv.Suffrage == "Voter" {
				op = opAddVoter
			}
			return raftChange{op: op, id: srv.ID, addr: mb.Meta.RaftAddr, why: "new raft address"}, true
		}
	}
	for _, srv := range v.servers {
		since, gone := v.gone[srv.ID]
		if srv.ID != v.self && gone && v.now.Sub(since) >= v.grace && canRemove(srv) {
			return raftChange{op: opRemove, id: srv.ID, why: "gone since " + since.Format(time.RFC3339)}, true
		}
	}
	healthy := 0
	var newcomers, nonvoters []member
	for _, mb := range v.members {
		if mb.State != stateAlive || mb.Meta.RaftAddr == "" {
			continue
		}
		healthy++
		srv, in := inConfig[mb.Name]
		switch {
		case !in:
			newcomers = append(newcomers, mb)
		case srv.Suffrage != "Voter":
			nonvoters = append(nonvoters, mb)
		}
	}
	target := voterTarget(healthy)
	if len(newcomers) > 0 {
		mb := slices.MinFunc(newcomers, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
		if voters < target {
			return raftChange{op: opAddVoter, id: mb.Name, addr: mb.Meta.RaftAddr, why: "new member"}, true
		}
		return raftChange{op: opAddNonvoter, id: mb.Name, addr: mb.Meta.RaftAddr, why: "new member"}, true
	}
	if voters < target && len(nonvoters) > 0 {
		mb := promotionPick(v, nonvoters)
		return raftChange{op: opAddVoter, id: mb.Name, addr: inConfig[mb.Name].Addr,
			why: fmt.Sprintf("promote to keep %d voters", target)}, true
	}
	return raftChange{}, false
}

// voterTarget is the voter count to aim for with this many healthy members: odd, 5 at most (an even count
// tolerates no more failures than the odd count below it, and needs a bigger quorum).
func voterTarget(healthy int) int {
	switch {
	case healthy >= maxVoters:
		return maxVoters
	case healthy >= 3:
		return 3
	default:
		return 1
	}
}

// promotionPick prefers a non-voter from the zone with the fewest voters, so voters spread across zones; then by
// name, so every leader picks alike.
func promotionPick(v raftView, nonvoters []member) member {
	perZone := map[string]int{}
	for _, srv := range v.servers {
		if srv.Suffrage == "Voter" {
			perZone[v.members[srv.ID].Meta.Zone]++
		}
	}
	return slices.MinFunc(nonvoters, func(a, b member) int {
		return cmp.Or(cmp.Compare(perZone[a.Meta.Zone], perZone[b.Meta.Zone]), strings.Compare(a.Name, b.Name))
	})
}

// removeServer removes a member from the Raft configuration; the leader runs it for a member that is leaving. On
// a follower it fails with an error wrapping raftstore.ErrNotLeader (errors.As gives the *NotLeaderError naming
// the leader), for the caller to forward. Removing an absent member succeeds.
func (r *raftMembers) removeServer(ctx context.Context, id string) error {
	if !r.store.IsLeader() {
		leaderID, leaderAddr := r.store.Leader()
		return fmt.Errorf("remove raft server %s: %w", id,
			&raftstore.NotLeaderError{LeaderID: leaderID, LeaderAddr: leaderAddr})
	}
	if id == r.store.ID() {
		return fmt.Errorf("remove raft server %s: the leader cannot remove itself; transfer leadership first", id)
	}
	servers, err := r.store.Servers()
	if err != nil {
		return fmt.Errorf("remove raft server %s: %w", id, err)
	}
	if !slices.ContainsFunc(servers, func(s raftstore.Server) bool { return s.ID == id }) {
		return nil
	}
	if err := r.store.RemoveServer(ctx, id); err != nil {
		return fmt.Errorf("remove raft server %s: %w", id, err)
	}
	r.log.Info("raft membership changed", "change", opRemove, "server", id, "why", "asked to leave")
	return nil
}

// leave takes this node out of the cluster gracefully: it announces the leave (the leader then stops counting
// it), hands leadership over if it leads, has itself removed from the Raft configuration, then leaves gossip.
// The node calls it on SIGTERM before shutting Raft down; ctx bounds the whole sequence.
func (r *raftMembers) leave(ctx context.Context) error {
	self := r.store.ID()
	if err := r.m.announceLeave(time.Second); err != nil {
		r.log.Warn("announcing the leave", "error", err)
	}
	if r.member(self) && !r.onlyVoter(self) {
		if r.store.IsLeader() {
			if err := r.store.TransferLeadership(ctx); err != nil {
				r.log.Warn("handing over leadership before leaving", "error", err)
			}
		}
		if err := r.removeFromRaft(ctx, self); err != nil {
			r.log.Warn("leaving without a confirmed removal; the leader removes this node when it sees the leave",
				"error", err)
		}
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), 100*time.Millisecond)
	}
	return r.m.Leave(timeout)
}

// removeFromRaft has the leader remove this node, retrying through the election a leadership transfer causes.
func (r *raftMembers) removeFromRaft(ctx context.Context, self string) error {
	if r.removeSelf == nil {
		// Nobody to forward to: the leader removes this node when gossip shows the leave, and sends the removal
		// to the removed member on a best-effort basis, so look for it here for a moment.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		for r.member(self) {
			select {
			case <-ctx.Done():
				return errors.New("removal not seen in this node's raft configuration")
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil
	}
	for {
		if r.store.IsLeader() {
			return errors.New("still the raft leader: leadership could not be handed over")
		}
		err := r.removeSelf(ctx, self)
		if err == nil {
			r.log.Info("removed from the raft configuration")
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *raftMembers) member(id string) bool {
	servers, err := r.store.Servers()
	return err == nil && slices.ContainsFunc(servers, func(s raftstore.Server) bool { return s.ID == id })
}

// onlyVoter reports whether id is the last voter: removing it would end the cluster, so it stays.
func (r *raftMembers) onlyVoter(id string) bool {
	servers, err := r.store.Servers()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if s.Suffrage == "Voter" && s.ID != id {
			return false
		}
	}
	return true
}
