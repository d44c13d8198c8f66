package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Leaving: a member that stops gracefully is taken out of the Raft configuration at once, unless the voters left
// alive could not commit without it; then it leaves gossip only and stays a voter until it returns (or the
// dead-member grace removes it, with the same check).

// A voter kept because the quorum needs it (peer.ErrKeepVoter) leaves gossip only and stays a voter, counted again
// when it comes back; one that never does is removed by the dead-member grace rule, which checks the same.

// RemoveServer removes a member from the Raft configuration; the leader runs it for a member that is leaving. On
// a follower it fails with an error wrapping raftstore.ErrNotLeader (errors.As gives the *NotLeaderError naming
// the leader), for the caller to forward. Removing an absent member succeeds. A voter whose removal would cost the
// quorum (raftView.canRemove, as for members gone from gossip) is kept: the error wraps peer.ErrKeepVoter.
func (r *raftMembers) RemoveServer(ctx context.Context, id string) error {
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
	i := slices.IndexFunc(servers, func(s raftstore.Server) bool { return s.ID == id })
	if i < 0 {
		return nil
	}
	if err := r.checkRemoval(servers, servers[i]); err != nil {
		r.log.Warn("keeping a leaving member in the raft configuration", "server", id, "why", err)
		return fmt.Errorf("remove raft server %s: %w", id, err)
	}
	if err := r.store.RemoveServer(ctx, id); err != nil {
		return fmt.Errorf("remove raft server %s: %w", id, err)
	}
	r.log.Info("raft membership changed", "change", opRemove, "server", id, "why", "asked to leave")
	return nil
}

// checkRemoval returns an error wrapping peer.ErrKeepVoter, naming the voters alive, when srv may not leave the
// configuration now in this node's view.
func (r *raftMembers) checkRemoval(servers []raftstore.Server, srv raftstore.Server) error {
	v := r.view(servers)
	if v.canRemove(srv) {
		return nil
	}
	alive, quorum := v.votesWithout(srv.ID)
	return fmt.Errorf("%w: %d other voters alive, %d needed", peer.ErrKeepVoter, alive, quorum)
}

// leave takes this node out of the cluster gracefully: it announces the leave (the leader then stops counting
// it), hands leadership over if it leads, has itself removed from the Raft configuration, then leaves gossip.
// When the voters alive could not commit without it (another voter is down), it stays a voter and leaves gossip
// only: removed, it would take the quorum with it until that voter came back; kept, it restores the quorum when
// it returns. The node calls it on SIGTERM before shutting Raft down; ctx bounds the whole sequence.
func (r *raftMembers) leave(ctx context.Context) error {
	self := r.store.ID()
	if err := r.m.announceLeave(time.Second); err != nil {
		r.log.Warn("announcing the leave", "error", err)
	}
	if r.member(self) && !r.onlyVoter(self) {
		err := r.leaveRaft(ctx, self)
		switch {
		case keptAsVoter(err):
			r.log.Warn("leaving gossip only: this node stays a raft voter and counts again when it comes back "+
				"(the leader removes it after the dead-member grace if it does not)", "why", err)
		case err != nil:
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

// leaveRaft has this node removed from the Raft configuration. A leader decides for itself whether it may go (its
// view is the one the next leader would judge by), so it hands leadership over only when its removal will follow:
// otherwise the voters left could not keep a leader anyway.
func (r *raftMembers) leaveRaft(ctx context.Context, self string) error {
	if r.store.IsLeader() {
		servers, err := r.store.Servers()
		if err != nil {
			return fmt.Errorf("read the raft configuration: %w", err)
		}
		if i := slices.IndexFunc(servers, func(s raftstore.Server) bool { return s.ID == self }); i >= 0 {
			if err := r.checkRemoval(servers, servers[i]); err != nil {
				return err
			}
		}
		if err := r.store.TransferLeadership(ctx); err != nil {
			r.log.Warn("handing over leadership before leaving", "error", err)
		}
	}
	return r.removeFromRaft(ctx, self)
}

// keptAsVoter reports whether err is the decision that this node stays a voter, here or from the leader.
func keptAsVoter(err error) bool { return errors.Is(err, peer.ErrKeepVoter) }

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
		if keptAsVoter(err) {
			return err // the leader's decision: asking again changes nothing
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
