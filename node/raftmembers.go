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
	// A node that does not receive the Raft log looks again after replicaPollMin, backing off to replicaPollMax:
	// raft tells a follower nothing when the log starts reaching it.
	replicaPollMin = 100 * time.Millisecond
	replicaPollMax = time.Second
)

// raftMembers keeps the Raft configuration in line with gossip membership:
//   - before any cluster exists, the first `expect` members (sorted by name) bootstrap it together, once; a node
//     given seeds waits until one answers, so it never bootstraps beside a cluster it merely could not reach yet;
//   - on the leader, every alive member is added as a non-voter, a member that left is removed at once, one dead
//     longer than the grace period is removed, and non-voters that show they receive the log (each node
//     advertises it in gossip, see advertise) are promoted to keep 3 or 5 voters.
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
	wakeAt    time.Time     // when a pending decision comes due (settle or grace ends); zero: none
	waitLog   string        // last reason given for not bootstrapping, so it is logged once
	pollWait  time.Duration // while this node does not receive the log: how long until it looks again
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
	answered := r.m.seedAnswered() // bootstrapping waits for a seed to answer
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
		case <-answered:
			answered = nil
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
	formed := r.formed()
	r.advertise(formed)
	if !formed {
		r.tryBootstrap()
		return
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
		if due := since.Add(r.grace); due.After(now) {
			r.wakeBy(due)
		}
	}
}

// wakeBy makes run reconcile again at t at the latest.
func (r *raftMembers) wakeBy(t time.Time) {
	if r.wakeAt.IsZero() || t.Before(r.wakeAt) {
		r.wakeAt = t
	}
}

// advertise keeps this node's gossip metadata in line with its Raft state: Formed once it belongs to a cluster,
// Replicating while it receives the log. Raft does not tell a follower when the log starts or stops reaching it,
// so while it does not, look again soon (the leader waits on it to promote this node).
func (r *raftMembers) advertise(formed bool) {
	replicating := formed && r.replicating()
	self := r.m.selfMeta()
	if self.Replicating != replicating || formed && !self.Formed {
		if err := r.m.updateMeta(func(mm *memberMeta) {
			mm.Formed = mm.Formed || formed
			mm.Replicating = replicating
		}, metaTimeout); err != nil {
			r.log.Debug("advertising raft membership", "error", err)
		}
	}
	if replicating {
		r.pollWait = 0
		return
	}
	r.pollWait = min(max(2*r.pollWait, replicaPollMin), replicaPollMax)
	r.wakeBy(time.Now().Add(r.pollWait))
}

// replicating reports whether this node receives the Raft log: it hears from a leader (raft forgets the leader
// after a heartbeat timeout without one), and the configuration it holds lists it at its own Raft address. Only
// the log brings that entry, so a member the leader cannot reach (a firewall, a wrong --raft-advertise) never
// claims it, nor does one restarted on a new address before the leader's entry for that address reached it.
func (r *raftMembers) replicating() bool {
	if id, _ := r.store.Leader(); id == "" {
		return false
	}
	servers, err := r.store.Servers()
	return err == nil && slices.ContainsFunc(servers, func(s raftstore.Server) bool {
		return s.ID == r.store.ID() && s.Addr == r.store.Addr()
	})
}

// tryBootstrap forms the cluster when this node is one of the first `expect` alive members and no member reports
// an existing cluster. Every candidate computes the same server list from the same gossip view.
func (r *raftMembers) tryBootstrap() {
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
	why := r.unseenCluster()
	var servers []raftstore.Server
	if why == "" {
		servers, why = bootstrapServers(r.m.cfg.NodeName, r.expect, alive)
	}
	// Candidates must bootstrap from the same view: wait until gossip has stopped bringing news. Only a lone
	// node with nobody to wait for starts at once.
	lone := r.expect == 1 && !r.m.hasSeeds()
	if why == "" && !lone && time.Since(r.aliveFrom) < r.settle {
		why = "waiting for the member list to settle"
		r.wakeBy(r.aliveFrom.Add(r.settle))
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

// unseenCluster says why a cluster this node does not see may exist, or "". Until a seed answers, one may be out
// there that this node merely cannot reach yet (the seed is restarting, the network is not up yet): bootstrapping
// beside it would make two clusters with diverging state once gossip connects. A member that belonged to a
// cluster and has since been declared dead says the same.
func (r *raftMembers) unseenCluster() string {
	if r.m.hasSeeds() {
		select {
		case <-r.m.seedAnswered():
		default:
			why := fmt.Sprintf("no member listed in --join (%s) has answered yet; joining again until one does",
				strings.Join(r.m.seeds, ", "))
			if r.expect == 1 {
				why += ". A cluster may be out there: to start a new one-node cluster instead, start this node " +
					"without --join"
			}
			return why
		}
	}
	for _, mb := range r.m.Members() {
		if mb.State == stateDead && mb.Meta.Formed && mb.Name != r.m.cfg.NodeName {
			return "member " + mb.Name + " (unreachable now) belongs to a raft cluster; waiting to be added"
		}
	}
	return ""
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
	if len(newcomers) > 0 {
		// Even when voters are short: a voter counts toward the quorum from the moment its entry is appended, and
		// one the log cannot reach (a firewall, a wrong --raft-advertise) would take a vote the cluster cannot
		// count on: with one other voter, its quorum and leader for good.
		mb := slices.MinFunc(newcomers, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
		return raftChange{op: opAddNonvoter, id: mb.Name, addr: mb.Meta.RaftAddr, why: "new member"}, true
	}
	target := voterTarget(healthy)
	if mb, ok := promotion(v, voters, target, nonvoters); ok {
		return raftChange{op: opAddVoter, id: mb.Name, addr: inConfig[mb.Name].Addr,
			why: fmt.Sprintf("promote to keep %d voters", target)}, true
	}
	return raftChange{}, false
}

// promotion picks the non-voter to promote when there are fewer voters than target, if any. Only non-voters that
// show they receive the log qualify, and only as many as lead to an odd voter count: from 1 (or 3) voters,
// promotions start only when two non-voters qualify, since 2 voters survive no more failures than 1 (nor 4 more
// than 3) and need a bigger quorum.
func promotion(v raftView, voters, target int, nonvoters []member) (member, bool) {
	ready := slices.DeleteFunc(slices.Clone(nonvoters), func(mb member) bool { return !mb.Meta.Replicating })
	reach := min(target, voters+len(ready))
	if reach%2 == 0 {
		reach--
	}
	if reach <= voters {
		return member{}, false
	}
	return promotionPick(v, ready), true
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
