// Package status holds the JSON a member reports about the cluster and about an asset: GET /cluster
// (docs/api.md §9.4) and GET /ui/api/asset-status (§9.8). The node fills it; `edgefactory status` and the web UI read
// it, from this member or, over HTTP, from the others.
package status

import (
	"time"

	"github.com/edgefactory/edgefactory/imager/buildprofile"
)

// Cluster is the JSON of GET /cluster: what an operator needs to see at a glance.
type Cluster struct {
	Node         string   `json:"node"`
	URL          string   `json:"url"`
	Leader       string   `json:"leader"`
	Voters       []string `json:"voters"`
	Members      []Member `json:"members"`
	Ring         Ring     `json:"ring"`
	Builds       Builds   `json:"builds"`
	Cache        Cache    `json:"cache"`
	AppliedIndex uint64   `json:"appliedIndex"`
	Catalog      []string `json:"catalog"`
	// CatalogSync is when the release catalog was last read whole from the upstream registry.
	CatalogSync CatalogSync `json:"catalogSync"`
	Transfers   int         `json:"transfersInFlight"`
	// RecentErrors are this node's last failed builds and corrupt copies from peers, newest first.
	RecentErrors []Error `json:"recentErrors"`
	// BuildProfile is the build profile the cluster builds with and the members that may build.
	BuildProfile BuildProfile `json:"buildProfile"`
	// Profile is this node's own build profile, whole.
	Profile buildprofile.Profile `json:"profile"`
}

// BuildProfile is the build profile the cluster builds with (docs/architecture.md §16).
type BuildProfile struct {
	// ID names it; Setting is the buildProfile cluster setting it comes from ("" = the profile most live members
	// share).
	ID      string `json:"id"`
	Setting string `json:"setting"`
	// Arch and Builder are what every member plans recipe keys with (empty when this node does not know them).
	Arch    string `json:"arch,omitempty"`
	Builder string `json:"builder,omitempty"`
	// Builders are the alive members that may build.
	Builders []string `json:"builders"`
}

// CatalogSync is the state of the release catalog's synchronisation with the upstream registry.
type CatalogSync struct {
	// LastSync is the last round that read everything, recorded in Raft by the leader (at most once a minute).
	LastSync time.Time `json:"lastSync,omitzero"`
	// LastError is the failure of the last round, on the member that ran it (the leader).
	LastError string `json:"lastError,omitempty"`
}

// Error is one failure on this node.
type Error struct {
	Time  time.Time `json:"time"`
	What  string    `json:"what"`
	Error string    `json:"error"`
}

// Member is one member as this node sees it.
type Member struct {
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
	// Profile is the ID of the member's build profile and Arch its architecture; Role is build or cache (empty for
	// a member older than build profiles).
	Profile string `json:"profile,omitempty"`
	Arch    string `json:"arch,omitempty"`
	Role    string `json:"role,omitempty"`
	// DegradedTools names its host tools that run but make less than proper ones (an old mksquashfs).
	DegradedTools []string `json:"degradedTools,omitempty"`
	// MayBuild says whether it may build; WhyNot why not: role cache, another build profile, degraded tools, not
	// alive.
	MayBuild bool   `json:"mayBuild"`
	WhyNot   string `json:"whyNot,omitempty"`
}

// Ring identifies this node's view of the ring (equal IDs place every key the same way).
type Ring struct {
	Version    uint64   `json:"version"`
	ID         string   `json:"id"`
	Members    []string `json:"members"`
	Partitions int      `json:"partitions"`
	Replicas   int      `json:"replicas"`
}

// Builds counts this node's builds and lists those in flight.
type Builds struct {
	Running  int     `json:"running"`
	Queued   int     `json:"queued"`
	InFlight []Build `json:"inFlight"`
}

// Build is one build in flight on a node.
type Build struct {
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

// Cache is this node's asset store usage, and how often it answered from it.
type Cache struct {
	UsedBytes   int64 `json:"usedBytes"`
	BudgetBytes int64 `json:"budgetBytes"`
	Blobs       int   `json:"blobs"`
	// Hits and Requests count the asset requests since the node started, and those its store answered.
	Hits     uint64  `json:"hits"`
	Requests uint64  `json:"requests"`
	HitRate  float64 `json:"hitRate"`
}

// The states of an asset, as GET /ui/api/asset-status answers them.
const (
	AssetCached   = "cached"    // the asset index has a record of its recipe key
	AssetBuilding = "building"  // a member builds it now
	AssetNotBuilt = "not-built" // neither: the first request builds it
)

// Asset is the answer of GET /ui/api/asset-status: whether an asset of a link exists, is being built, or not.
type Asset struct {
	State string `json:"state"`
	Key   string `json:"key"`
	// Member is the member holding it (this one when it has the bytes, else the one that built it), the one
	// building it, or the one that would (the first on the ring of members that may build).
	Member         string    `json:"member,omitempty"`
	Stage          string    `json:"stage,omitempty"`
	Started        time.Time `json:"started,omitzero"`
	ElapsedSeconds float64   `json:"elapsedSeconds,omitempty"`
}
