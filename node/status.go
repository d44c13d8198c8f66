package node

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgefactory/edgefactory/frontends/status"

	"github.com/edgefactory/edgefactory/node/internal/assets"
)

// The JSON of GET /cluster is frontends/status's (the web UI reads it too); these are its names in this package.
type (
	ClusterStatus      = status.Cluster
	CatalogSyncStatus  = status.CatalogSync
	ErrorStatus        = status.Error
	MemberStatus       = status.Member
	RingStatus         = status.Ring
	BuildsStatus       = status.Builds
	BuildStatus        = status.Build
	CacheStatus        = status.Cache
	BuildProfileStatus = status.BuildProfile
)

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
			Replicas: n.settings.Replicas(),
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
	whyNot := n.buildStatus(&st)

	for _, m := range n.cluster.MemberStates() {
		ms := MemberStatus{Name: m.Name, URL: m.URL, Zone: m.Zone, Version: m.Version, State: m.State,
			Raft: suffrage[m.Name], Voter: suffrage[m.Name] == "voter", Leader: m.Name == leader,
			LastContact: m.LastContact, RingShare: shares[m.Name], Profile: m.Build.Profile, Arch: m.Build.Arch,
			Role: m.Build.Role, DegradedTools: m.Build.Degraded}
		if ms.Raft == "" {
			ms.Raft = "none"
		}

		why, alive := whyNot[m.Name]
		if !alive {
			why = "not alive"
		}

		ms.MayBuild, ms.WhyNot = why == "", why

		st.Members = append(st.Members, ms)
	}

	slices.SortFunc(st.Members, func(a, b MemberStatus) int { return strings.Compare(a.Name, b.Name) })

	st.Transfers = n.assets.Transfers()

	return st
}

// buildStatus fills in the build profile the cluster builds with, and returns why each alive member may not build
// ("" when it may).
func (n *Node) buildStatus(st *ClusterStatus) map[string]string {
	id, setting, members := n.cluster.BuildStates()
	st.Profile = n.profile
	st.BuildProfile = BuildProfileStatus{ID: id, Setting: setting, Builders: []string{}}

	if p, err := n.cluster.BuildProfile(); err == nil {
		st.BuildProfile.Arch, st.BuildProfile.Builder = p.Arch, p.Builder
	}

	whyNot := map[string]string{}

	for _, m := range members {
		whyNot[m.Name] = m.WhyNot
		if m.WhyNot == "" {
			st.BuildProfile.Builders = append(st.BuildProfile.Builders, m.Name)
		}
	}

	return whyNot
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
