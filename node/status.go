package node

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgefactory/edgefactory/node/internal/assets"
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
	// CatalogSync is when the release catalog was last read whole from the upstream registry.
	CatalogSync CatalogSyncStatus `json:"catalogSync"`
	Transfers   int               `json:"transfersInFlight"`
	// RecentErrors are this node's last failed builds and corrupt copies from peers, newest first.
	RecentErrors []ErrorStatus `json:"recentErrors"`
}

// CatalogSyncStatus is the state of the release catalog's synchronisation with the upstream registry.
type CatalogSyncStatus struct {
	// LastSync is the last round that read everything, recorded in Raft by the leader (at most once a minute).
	LastSync time.Time `json:"lastSync,omitzero"`
	// LastError is the failure of the last round, on the member that ran it (the leader).
	LastError string `json:"lastError,omitempty"`
}

// ErrorStatus is one failure on this node.
type ErrorStatus struct {
	Time  time.Time `json:"time"`
	What  string    `json:"what"`
	Error string    `json:"error"`
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
	Raft   string `json:"raft"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
	// LastContact is when this node last heard from the member through gossip (absent for this node itself).
	LastContact time.Time `json:"lastContact,omitzero"`
	// RingShare is the fraction of the ring's partitions the member owns (0 when it is not on the ring).
	RingShare float64 `json:"ringShare"`
}

// RingStatus identifies this node's view of the ring (equal IDs place every key the same way).
type RingStatus struct {
	Version    uint64   `json:"version"`
	ID         string   `json:"id"`
	Members    []string `json:"members"`
	Partitions int      `json:"partitions"`
	Replicas   int      `json:"replicas"`
}

// BuildsStatus counts this node's builds and lists those in flight.
type BuildsStatus struct {
	Running  int           `json:"running"`
	Queued   int           `json:"queued"`
	InFlight []BuildStatus `json:"inFlight"`
}

// BuildStatus is one build in flight on a node.
type BuildStatus struct {
	Key       string `json:"key"`
	Schematic string `json:"schematic,omitempty"`
	Version   string `json:"version"`
	Path      string `json:"path"`
	Kind      string `json:"kind"`
	Arch      string `json:"arch,omitempty"`
	// Stage is queued, fetching inputs, building, signing, compressing, storing, copying to holders (or checking
	// the index, before a build: docs/api.md §9.4).
	Stage          string    `json:"stage"`
	Started        time.Time `json:"started"`
	ElapsedSeconds float64   `json:"elapsedSeconds"`
	Member         string    `json:"member"`
}

// CacheStatus is this node's asset store usage, and how often it answered from it.
type CacheStatus struct {
	UsedBytes   int64 `json:"usedBytes"`
	BudgetBytes int64 `json:"budgetBytes"`
	Blobs       int   `json:"blobs"`
	// Hits and Requests count the asset requests since the node started, and those its store answered.
	Hits     uint64  `json:"hits"`
	Requests uint64  `json:"requests"`
	HitRate  float64 `json:"hitRate"`
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
		Builds: BuildsStatus{Running: stats.Running, Queued: stats.Queued,
			InFlight: buildStatuses(n.assets.Building(), n.cfg.NodeName, time.Now())},
		Cache:        n.cacheStatus(used, budget, blobs),
		AppliedIndex: n.store.AppliedIndex(),
		Catalog:      versions,
		CatalogSync:  n.catalogSyncStatus(),
		RecentErrors: errorStatuses(n.assets.Problems()),
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

	shares := rg.Shares()

	for _, m := range n.cluster.MemberStates() {
		ms := MemberStatus{Name: m.Name, URL: m.URL, Zone: m.Zone, Version: m.Version, State: m.State,
			Raft: suffrage[m.Name], Voter: suffrage[m.Name] == "voter", Leader: m.Name == leader,
			LastContact: m.LastContact, RingShare: shares[m.Name]}
		if ms.Raft == "" {
			ms.Raft = "none"
		}

		st.Members = append(st.Members, ms)
	}

	slices.SortFunc(st.Members, func(a, b MemberStatus) int { return strings.Compare(a.Name, b.Name) })

	st.Transfers = n.assets.Transfers()

	return st
}

func (n *Node) cacheStatus(used, budget int64, blobs int) CacheStatus {
	hits, requests := n.assets.CacheStats()

	return CacheStatus{UsedBytes: used, BudgetBytes: budget, Blobs: blobs, Hits: hits, Requests: requests,
		HitRate: ratio(hits, requests)}
}

func (n *Node) catalogSyncStatus() CatalogSyncStatus {
	var st CatalogSyncStatus

	if meta, ok, err := n.store.CatalogMeta(); err == nil && ok {
		st.LastSync = meta.LastSync
	}

	if err := n.catalog.LastSyncError(); err != nil {
		st.LastError = err.Error()
	}

	return st
}

// ratio is part/whole, 0 for no whole, rounded to 4 places.
func ratio(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}

	return math.Round(float64(part)/float64(whole)*1e4) / 1e4
}

// buildStatuses presents the builds in flight on member at now.
func buildStatuses(builds []assets.Build, member string, now time.Time) []BuildStatus {
	out := make([]BuildStatus, 0, len(builds))

	for _, b := range builds {
		out = append(out, BuildStatus{Key: b.Key, Schematic: b.Schematic, Version: b.Version, Path: b.Path,
			Kind: b.Kind, Arch: b.Arch, Stage: b.Stage, Started: b.Started.UTC(),
			ElapsedSeconds: elapsedSeconds(b.Started, now), Member: member})
	}

	return out
}

// elapsedSeconds is the time from start to now in seconds, to a tenth.
func elapsedSeconds(start, now time.Time) float64 {
	return math.Round(now.Sub(start).Seconds()*10) / 10
}

func errorStatuses(problems []assets.Problem) []ErrorStatus {
	out := make([]ErrorStatus, 0, len(problems))

	for _, p := range problems {
		out = append(out, ErrorStatus{Time: p.Time, What: p.What, Error: p.Error})
	}

	return out
}

func (n *Node) clusterStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")

	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(n.Status()) //nolint:errcheck,errchkjson // the client hung up
}
