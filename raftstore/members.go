package raftstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// ErrCantBootstrap is returned by BootstrapCluster when this node already has Raft state (it bootstrapped before,
// or joined a cluster): a second bootstrap is refused, and that is the expected outcome on every restart.
var ErrCantBootstrap = raft.ErrCantBootstrap

// BootstrapCluster forms a new cluster whose first configuration is servers, which must include this node. Every
// node that bootstraps the same cluster must pass the identical list (raft relies on that; the order does not
// matter, the list is sorted by ID). A node with any Raft state gets an error wrapping ErrCantBootstrap.
func (s *Store) BootstrapCluster(servers []Server) error {
	conf := raft.Configuration{}
	self := false
	for _, srv := range servers {
		suffrage := raft.Voter
		if srv.Suffrage == raft.Nonvoter.String() {
			suffrage = raft.Nonvoter
		}
		self = self || srv.ID == s.cfg.NodeID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: suffrage, ID: raft.ServerID(srv.ID),
			Address: raft.ServerAddress(srv.Addr)})
	}
	if !self {
		return fmt.Errorf("bootstrap: servers do not include this node %q", s.cfg.NodeID)
	}
	slices.SortFunc(conf.Servers, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil {
		return fmt.Errorf("bootstrap: %w", s.raftErr(err))
	}
	s.log.Info("bootstrapped raft cluster", "servers", len(conf.Servers))
	return nil
}

// HasState reports whether this node has any Raft state (a term, a log entry or a snapshot): it bootstrapped, took
// part in an election, or was sent the log by a leader. Only a node without state may bootstrap.
func (s *Store) HasState() (bool, error) {
	ok, err := raft.HasExistingState(s.logs, s.logs, s.snaps)
	if err != nil {
		return false, fmt.Errorf("read raft state: %w", err)
	}
	return ok, nil
}

// ErrNoOtherVoter is returned by TransferLeadership when no other voter could take over.
var ErrNoOtherVoter = errors.New("no other voter in the raft configuration")

// transferAttempts bounds how often TransferLeadership asks raft to hand over.
const transferAttempts = 3

// TransferLeadership hands leadership to the most up-to-date other voter and returns once another server leads.
// A leader about to leave the cluster calls it first, so the cluster does not wait out an election timeout. raft's
// transfer reports success once it has told the target to stand for election, not once the target won:
// on a busy machine the target's election can fail and this node keep leading, so the transfer is tried again.
func (s *Store) TransferLeadership(ctx context.Context) error {
	if !s.IsLeader() {
		id, addr := s.Leader()
		return fmt.Errorf("transfer leadership: %w", &NotLeaderError{LeaderID: id, LeaderAddr: addr})
	}
	servers, err := s.Servers()
	if err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	if !slices.ContainsFunc(servers, func(srv Server) bool {
		return srv.ID != s.cfg.NodeID && srv.Suffrage == raft.Voter.String()
	}) {
		return fmt.Errorf("transfer leadership: %w", ErrNoOtherVoter)
	}
	for range transferAttempts {
		if err := await(ctx, s.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("transfer leadership: %w", s.raftErr(err))
		}
		if s.waitOtherLeader(ctx, 4*s.cfg.ElectionTimeout) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("transfer leadership: %w", ctx.Err())
		}
		s.log.Warn("leadership transfer did not take; trying again")
	}
	return fmt.Errorf("transfer leadership: still the leader after %d attempts", transferAttempts)
}

// waitOtherLeader waits up to d for another server to lead and reports whether one does. Stepping down is not
// enough: when the target's election fails, this node may win the next one.
func (s *Store) waitOtherLeader(ctx context.Context, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return poll(ctx, func() bool {
		id, _ := s.Leader()
		return id != "" && id != s.cfg.NodeID
	}) == nil
}
