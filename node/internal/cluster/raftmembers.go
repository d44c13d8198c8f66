package cluster

import (
	"cmp"
	"context"
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
//     longer than the grace period is removed (a voter, either way, only if the voters alive can still commit
//     without it: see raftView.canRemove), and non-voters that show they receive the log (each node
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
	wakeAt    time.Time // when a pending decision comes due (settle or grace ends); zero: none
	// waiting is why this node has not formed or joined a cluster yet (nil once it belongs to one): for readiness,
	// and logged when it changes.
	waiting  atomic.Pointer[string]
	pollWait time.Duration // while this node does not receive the log: how long until it looks again
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
	r.waiting.Store(nil) // added by a leader: whatever it waited for is over
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

// step makes at most one change to the Raft configuration and reports whether it did.
func (r *raftMembers) step(ctx context.Context) bool {
	servers, err := r.store.Servers()
	if err != nil {
		r.log.Warn("reading raft configuration", "error", err)
		return false
	}
	v := r.view(servers)
	r.trackGone(servers, v.members, v.now)
	change, ok := planRaftChange(v)
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

// view is what this node decides Raft membership changes from: servers and its gossip table, now.
func (r *raftMembers) view(servers []raftstore.Server) raftView {
	members := map[string]member{}
	for _, mb := range r.m.Members() {
		members[mb.Name] = mb
	}
	return raftView{self: r.store.ID(), servers: servers, members: members, gone: r.gone, now: time.Now(),
		grace: r.grace}
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

// canRemove reports whether srv may leave the configuration: a voter only if the voters gossip sees alive can still
// commit without it. Otherwise removing it would only weaken the cluster: gossip and Raft disagree (a gossip-only
// partition), or another voter is down and the rest would lose their quorum to a member that may well come back.
func (v raftView) canRemove(srv raftstore.Server) bool {
	alive, quorum := v.votesWithout(srv.ID)
	return srv.Suffrage != "Voter" || alive >= quorum
}

// votesWithout counts the voters other than id that gossip sees alive (this node always counts), and the quorum of
// the voters other than id.
func (v raftView) votesWithout(id string) (alive, quorum int) {
	voters := 0
	for _, srv := range v.servers {
		if srv.Suffrage != "Voter" || srv.ID == id {
			continue
		}
		voters++
		if _, ok := v.alive(srv.ID); ok || srv.ID == v.self {
			alive++
		}
	}
	return alive, voters/2 + 1
}

// planRaftChange picks the next change, most urgent first: drop members that left, move members that came back
// on a new Raft address, drop members dead past the grace period, add newcomers, promote non-voters.
func planRaftChange(v raftView) (raftChange, bool) {
	voters := 0
	inConfig := map[string]raftstore.Server{}
	for _, srv := range v.servers {
		inConfig[srv.ID] = srv
		if srv.Suffrage == "Voter" {
			voters++
		}
	}
	for _, srv := range v.servers {
		mb, known := v.members[srv.ID]
		if srv.ID != v.self && known && (mb.State == stateLeaving || mb.State == stateLeft) && v.canRemove(srv) {
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
		if srv.ID != v.self && gone && v.now.Sub(since) >= v.grace && v.canRemove(srv) {
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
