package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgefactory/edgefactory/raftstore"
)

// Bootstrapping: before any cluster exists, the first expect members (by name) form it together, once.

// tryBootstrap forms the cluster when this node is one of the first `expect` alive members and no member reports
// an existing cluster. Every candidate computes the same server list from the same gossip view.
func (r *raftMembers) tryBootstrap() {
	has, err := r.store.HasState()
	if err != nil || has {
		// Voted in an election, or being sent the log: a leader knows of this node already.
		r.waiting.Store(nil)
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
		if prev := r.waiting.Swap(&why); prev == nil || *prev != why {
			r.log.Info("not bootstrapping raft: "+why, "alive", len(alive), "expect", r.expect)
		}
		return
	}
	r.waiting.Store(nil)
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

// bootstrapWait is why this node has not formed or joined a cluster yet, or "".
func (r *raftMembers) bootstrapWait() string {
	if why := r.waiting.Load(); why != nil {
		return *why
	}
	return ""
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
