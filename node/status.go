package node

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// ClusterStatus is the JSON of GET /cluster: what an operator needs to see at a glance.
type ClusterStatus struct {
	Node         string         `json:"node"`
	URL          string         `json:"url"`
	Leader       string         `json:"leader"`
	Voters       []string       `json:"voters"`
	Members      []MemberStatus `json:"members"`
	Ring         RingStatus     `json:"ring"`
	Builds       BuildsStatus   `json:"builds"`
	Cache        CacheStatus    `json:"cache"`
	AppliedIndex uint64         `json:"appliedIndex"`
	Catalog      []string       `json:"catalog"`
	Transfers    int            `json:"transfersInFlight"`
}

// MemberStatus is one member as this node sees it.
type MemberStatus struct {
	Name    string `json:"name"`
	URL     string `json:"url,omitempty"`
	Zone    string `json:"zone,omitempty"`
	Version string `json:"version,omitempty"`
	// State is the gossip state: alive, leaving, dead or left.
	State string `json:"state"`
	// Raft is voter, nonvoter, or none (not yet in the Raft configuration).
	Raft string `json:"raft"`
}

// RingStatus identifies this node's view of the ring (equal IDs place every key the same way).
type RingStatus struct {
	Version    uint64   `json:"version"`
	ID         string   `json:"id"`
	Members    []string `json:"members"`
	Partitions int      `json:"partitions"`
	Replicas   int      `json:"replicas"`
}

// BuildsStatus counts this node's builds.
type BuildsStatus struct {
	Running int `json:"running"`
	Queued  int `json:"queued"`
}

// CacheStatus is this node's asset store usage.
type CacheStatus struct {
	UsedBytes   int64 `json:"usedBytes"`
	BudgetBytes int64 `json:"budgetBytes"`
	Blobs       int   `json:"blobs"`
}

// Status reports the cluster as this node sees it.
func (n *Node) Status() ClusterStatus {
	leader, _ := n.store.Leader()
	rg := n.cluster.Ring()
	used, budget, blobs := n.cas.Usage()
	stats := n.builder.Stats()
	versions, _ := n.store.Versions()

	st := ClusterStatus{
		Node:   n.cfg.NodeName,
		URL:    n.cfg.ExternalURL,
		Leader: leader,
		Ring: RingStatus{
			Version: rg.Version(), ID: rg.ID(), Members: rg.Members(), Partitions: rg.Config().PartitionCount,
			Replicas: n.cfg.Replicas,
		},
		Builds:       BuildsStatus{Running: stats.Running, Queued: stats.Queued},
		Cache:        CacheStatus{UsedBytes: used, BudgetBytes: budget, Blobs: blobs},
		AppliedIndex: n.store.AppliedIndex(),
		Catalog:      versions,
	}

	suffrage := map[string]string{}
	if servers, err := n.store.Servers(); err == nil {
		for _, s := range servers {
			suffrage[s.ID] = strings.ToLower(s.Suffrage) // raft spells them "Voter", "Nonvoter"
			if s.Suffrage == "Voter" {
				st.Voters = append(st.Voters, s.ID)
			}
		}
	}

	for _, m := range n.cluster.MemberStates() {
		ms := MemberStatus{Name: m.Name, URL: m.URL, Zone: m.Zone, Version: m.Version, State: m.State,
			Raft: suffrage[m.Name]}
		if ms.Raft == "" {
			ms.Raft = "none"
		}

		st.Members = append(st.Members, ms)
	}

	slices.SortFunc(st.Members, func(a, b MemberStatus) int { return strings.Compare(a.Name, b.Name) })

	st.Transfers = n.assets.Transfers()

	return st
}

func (n *Node) clusterStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")

	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(n.Status()) //nolint:errcheck,errchkjson // the client hung up
}
