package raftstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Server is one member of the Raft configuration. Suffrage is "Voter", "Nonvoter" or "Staging".
type Server struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage"`
}

// pollInterval paces the waits below; raft offers no notification for them.
const pollInterval = 10 * time.Millisecond

// IsLeader reports whether this node is the Raft leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the current leader's ID and Raft address as this node knows them; empty when unknown.
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderlessFor is how long this node has been without a leader (since its last contact with one, or since it
// opened): 0 while it has one. A node cut off from its quorum sees it grow past the election timeout.
func (s *Store) LeaderlessFor() time.Duration {
	if id, _ := s.Leader(); id != "" {
		return 0
	}

	if last := s.raft.LastContact(); !last.IsZero() {
		return time.Since(last)
	}

	return time.Since(s.opened)
}

// ElectionTimeout is the configured election timeout: a cluster without a leader for several of them has lost
// its quorum rather than being in an election.
func (s *Store) ElectionTimeout() time.Duration { return s.cfg.ElectionTimeout }

// WaitForLeader blocks until this node knows a leader (possibly itself) or ctx ends.
func (s *Store) WaitForLeader(ctx context.Context) error {
	return poll(ctx, func() bool { id, _ := s.Leader(); return id != "" })
}

// WaitApplied blocks until this node's state includes log index idx (e.g. Result.Index of a write made through the
// leader), giving read-your-writes on a follower.
func (s *Store) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		changed := s.fsm.appliedChanged()
		if s.fsm.applied.Load() >= idx {
			return nil
		}

		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func poll(ctx context.Context, done func() bool) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// PublishCommit makes followers learn the leader's commit index now instead of at the next commit timeout: it
// appends a barrier entry, and appending replicates at once, carrying the commit index. A follower that forwarded a
// write and waits to read it back (WaitApplied) is then answered in a round trip, not in CommitTimeout.
func (s *Store) PublishCommit() {
	if s.IsLeader() {
		s.raft.Barrier(s.cfg.ApplyTimeout) // asynchronous: nobody waits for the barrier itself
	}
}

// Barrier returns once every entry committed before it is applied to this leader's state.
func (s *Store) Barrier(ctx context.Context) error {
	return s.wait(ctx, "barrier", s.raft.Barrier(s.timeout(ctx)))
}

// VerifyLeader confirms with a quorum that this node is still the leader (a linearizable-read check).
func (s *Store) VerifyLeader(ctx context.Context) error {
	return s.wait(ctx, "verify leader", s.raft.VerifyLeader())
}

// ReadIndex is the leader's answer to "what must a reader apply to see every write acknowledged so far": its
// applied index, once it has applied everything committed before its term and confirmed with a quorum that it still
// leads. A new leader learns which entries of earlier terms committed only when an entry of its own term commits,
// so a write the old leader acknowledged may not be applied here yet; the first read of each term therefore waits
// for a barrier (one log entry per term, not per read). On a follower it fails with a *NotLeaderError.
func (s *Store) ReadIndex(ctx context.Context) (uint64, error) {
	if err := s.barrierThisTerm(ctx); err != nil {
		return 0, fmt.Errorf("read index: %w", err)
	}
	if err := s.VerifyLeader(ctx); err != nil {
		return 0, fmt.Errorf("read index: %w", err)
	}
	return s.AppliedIndex(), nil
}

// readBarrier remembers the Raft term in which ReadIndex's barrier succeeded; barrier admits one at a time.
type readBarrier struct {
	term    atomic.Uint64
	barrier chan struct{}
}

// barrierThisTerm runs a barrier unless one already succeeded in the current term; concurrent first readers of a
// term share one. A node leads at most once per term, so a term whose barrier succeeded needs no other.
func (s *Store) barrierThisTerm(ctx context.Context) error {
	term := s.raft.CurrentTerm()
	if s.read.term.Load() == term {
		return nil
	}
	select {
	case s.read.barrier <- struct{}{}:
		defer func() { <-s.read.barrier }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.read.term.Load() == term {
		return nil
	}
	// Were the term to move meanwhile, the barrier committed in a later one and the recorded term is merely stale:
	// the next read barriers again.
	if err := s.Barrier(ctx); err != nil {
		return err
	}
	s.read.term.Store(term)
	return nil
}

// AddVoter adds (or promotes) a voting member. Leader only.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	return s.wait(ctx, "add voter "+id,
		s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.timeout(ctx)))
}

// AddNonvoter adds a member that replicates the log without voting. Leader only.
func (s *Store) AddNonvoter(ctx context.Context, id, addr string) error {
	return s.wait(ctx, "add nonvoter "+id,
		s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.timeout(ctx)))
}

// RemoveServer removes a member. Leader only.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	return s.wait(ctx, "remove server "+id, s.raft.RemoveServer(raft.ServerID(id), 0, s.timeout(ctx)))
}

func (s *Store) wait(ctx context.Context, what string, f raft.Future) error {
	if err := await(ctx, f); err != nil {
		return fmt.Errorf("%s: %w", what, s.raftErr(err))
	}
	return nil
}

// Servers returns the latest Raft configuration.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", s.raftErr(err))
	}
	var out []Server
	for _, srv := range f.Configuration().Servers {
		out = append(out, Server{ID: string(srv.ID), Addr: string(srv.Address), Suffrage: srv.Suffrage.String()})
	}
	return out, nil
}

// PauseApply holds this node's state machine until resume is called: entries still replicate, commit and count
// towards the quorum, but none reaches this node's state, as on a node far behind the log. For tests of what a
// node behind the log answers.
func (s *Store) PauseApply() (resume func()) {
	gate := make(chan struct{})
	s.fsm.paused.Store(&gate)
	return func() {
		if s.fsm.paused.CompareAndSwap(&gate, nil) {
			close(gate)
		}
	}
}

// AppliedIndex is the last log index whose effect is in this node's state file.
func (s *Store) AppliedIndex() uint64 { return s.fsm.applied.Load() }

// Stats returns raft's counters plus the state machine's.
func (s *Store) Stats() map[string]string {
	st := s.raft.Stats()
	st["fsm_applied_index"] = strconv.FormatUint(s.fsm.applied.Load(), 10)
	st["fsm_halted"] = ""
	if err := s.fsm.failure(); err != nil {
		st["fsm_halted"] = err.Error()
	}
	st["raft_addr"] = s.addr
	return st
}

// Snapshot takes a snapshot now and truncates the log behind it (keeping TrailingLogs). Nothing new to snapshot is
// not an error.
func (s *Store) Snapshot() error {
	err := s.raft.Snapshot().Error()
	if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("snapshot: %w", s.raftErr(err))
	}
	return nil
}

// WatchLeadership returns a channel that first carries whether this node leads now, then every change; a slow
// reader sees only the latest value. The channel closes (after a final false) when the store closes or stop is
// called. The node starts and stops leader-only work (the catalog sync) on it.
func (s *Store) WatchLeadership() (ch <-chan bool, stop func()) {
	return s.lead.subscribe()
}

func (s *Store) watchLeadership() {
	defer s.wg.Done()
	for {
		select {
		case isLeader := <-s.raft.LeaderCh():
			s.lead.set(isLeader)
			id, addr := s.Leader()
			s.log.Info("raft leadership changed", "is_leader", isLeader, "leader", id, "leader_addr", addr)
		case <-s.done:
			return
		}
	}
}

// leadership fans raft's single leader channel out to any number of watchers.
type leadership struct {
	mu     sync.Mutex
	leader bool
	subs   map[chan bool]struct{}
	closed bool
}

// offer replaces whatever ch holds with v. Only called under mu, so the send never blocks on the 1-slot buffer.
func offer(ch chan bool, v bool) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

func (l *leadership) set(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = v
	for ch := range l.subs {
		offer(ch, v)
	}
}

func (l *leadership) subscribe() (<-chan bool, func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan bool, 1)
	if l.closed {
		ch <- false
		close(ch)
		return ch, func() {}
	}
	ch <- l.leader
	l.subs[ch] = struct{}{}
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.subs[ch]; ok {
			delete(l.subs, ch)
			close(ch)
		}
	}
}

func (l *leadership) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for ch := range l.subs {
		offer(ch, false)
		close(ch)
	}
	l.subs = nil
}
