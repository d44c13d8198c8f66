package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgefactory/edgefactory/frontends/machines"
	"github.com/edgefactory/edgefactory/frontends/status"
)

// The cluster page (/ui/cluster), the machines page (/ui/machines) and the asset badges of the final page: what
// the members report (frontends/status, network-boot profiles), rendered on the server and refreshed by htmx.

// ClusterReader is this member's report of the cluster (what GET /cluster answers).
type ClusterReader interface {
	Status() status.Cluster
}

// AssetReader says whether an asset is cached, being built or not built; it never builds anything.
type AssetReader interface {
	AssetStatus(ctx context.Context, schematicID, version, path string) (status.Asset, error)
}

// memberAskTimeout bounds the question to another member for its own report.
const memberAskTimeout = 2 * time.Second

// ClusterPage is what /ui/cluster shows.
type ClusterPage struct {
	Title, Section string
	Self           status.Cluster
	Members        []MemberRow
	Builds         []status.Build
	Errors         []ErrorRow
	// Unreachable names the members whose own report did not arrive.
	Unreachable []string
	Now         time.Time
}

// MemberRow is one member: how this member sees it, and what it reports about itself.
type MemberRow struct {
	status.Member
	Cache    *status.Cache
	Building int
}

// ErrorRow is one recent failure, with the member it happened on.
type ErrorRow struct {
	status.Error
	Member string
}

func (u *UI) clusterPage(w http.ResponseWriter, r *http.Request) {
	if u.Cluster == nil {
		http.NotFound(w, r)

		return
	}

	self := u.Cluster.Status()
	reports := u.reports(r.Context(), self)
	page := ClusterPage{Title: "Cluster", Section: "cluster", Self: self, Now: time.Now()}

	for _, m := range self.Members {
		row := MemberRow{Member: m}

		if rep, ok := reports[m.Name]; ok {
			row.Cache, row.Building = &rep.Cache, len(rep.Builds.InFlight)
			page.Builds = append(page.Builds, rep.Builds.InFlight...)

			for _, e := range rep.RecentErrors {
				page.Errors = append(page.Errors, ErrorRow{Error: e, Member: m.Name})
			}
		} else if m.State == "alive" {
			page.Unreachable = append(page.Unreachable, m.Name)
		}

		page.Members = append(page.Members, row)
	}

	slices.SortFunc(page.Builds, func(a, b status.Build) int { return a.Started.Compare(b.Started) })
	slices.SortFunc(page.Errors, func(a, b ErrorRow) int { return b.Time.Compare(a.Time) })
	page.Errors = page.Errors[:min(len(page.Errors), 20)]

	u.render(w, r, http.StatusOK, "cluster-page", page)
}

// reports gathers every alive member's own report: this member's, and the others' GET /cluster.
func (u *UI) reports(ctx context.Context, self status.Cluster) map[string]status.Cluster {
	ctx, cancel := context.WithTimeout(ctx, memberAskTimeout)
	defer cancel()

	out := map[string]status.Cluster{self.Node: self}

	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)

	for _, m := range self.Members {
		if m.Name == self.Node || m.State != "alive" || m.URL == "" {
			continue
		}

		wg.Go(func() {
			rep, err := fetchReport(ctx, m.URL)
			if err != nil {
				u.Logger.Debug("member report", "member", m.Name, "error", err)

				return
			}

			mu.Lock()
			out[m.Name] = rep
			mu.Unlock()
		})
	}

	wg.Wait()

	return out
}

func fetchReport(ctx context.Context, base string) (status.Cluster, error) {
	var rep status.Cluster

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/cluster", nil)
	if err != nil {
		return rep, err
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("GET /cluster: %s", resp.Status)
	}

	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// MachinesPage is what /ui/machines shows.
type MachinesPage struct {
	Title, Section string
	Profiles       []machines.Profile
	Boots          []machines.Boot
}

func (u *UI) machinesPage(w http.ResponseWriter, r *http.Request) {
	if u.Machines == nil {
		http.NotFound(w, r)

		return
	}

	profiles, err := u.Machines.Profiles(r.Context())
	if err != nil {
		u.fail(w, r, err)

		return
	}

	boots, err := u.Machines.Seen(r.Context())
	if err != nil {
		u.fail(w, r, err)

		return
	}

	u.render(w, r, http.StatusOK, "machines-page", MachinesPage{Title: "Machines", Section: "machines", Profiles: profiles,
		Boots: boots[:min(len(boots), 50)]})
}

// Badge is an asset's status next to its link on the final page.
type Badge struct {
	Schematic, Version, Path string
	status.Asset
	// Poll is set until the asset is cached: a download may start its build any time.
	Poll bool
}

// assetBadge answers the badge fragment of one asset: cached, will be built, or its build's stage and elapsed time.
func (u *UI) assetBadge(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	b := Badge{Schematic: q.Get("schematic"), Version: q.Get("version"), Path: q.Get("path")}

	if u.Assets == nil {
		http.NotFound(w, r)

		return
	}

	st, err := u.Assets.AssetStatus(r.Context(), b.Schematic, b.Version, b.Path)
	if err != nil {
		u.fail(w, r, err)

		return
	}

	b.Asset, b.Poll = st, st.State != status.AssetCached

	u.render(w, r, http.StatusOK, "asset-badge", b)
}

func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	u.Logger.Warn("ui page", "path", r.URL.Path, "error", err)
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
}

// ago says how long ago t was, for people.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}

	return duration(now.Sub(t)) + " ago"
}

// duration rounds d for people: seconds below two minutes, then minutes, then hours.
func duration(d time.Duration) string {
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	default:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
}

func percent(f float64) string { return fmt.Sprintf("%.0f %%", 100*f) }

func bytesIEC(n int64) string {
	const unit = 1024

	if n < unit {
		return fmt.Sprintf("%d B", n)
	}

	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}

	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func selectorsText(s machines.Selectors) string {
	var parts []string

	for _, kv := range [][2]string{{"mac", s.MAC}, {"uuid", s.UUID}, {"serial", s.Serial}, {"hostname", s.Hostname},
		{"subnet", s.Subnet}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}

	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}

	slices.SortFunc(keys, cmp.Compare[string])

	for _, k := range keys {
		parts = append(parts, "label "+k+"="+s.Labels[k])
	}

	if len(parts) == 0 {
		return "default (every machine)"
	}

	return strings.Join(parts, ", ")
}

var pageFuncs = map[string]any{
	"ago": ago, "percent": percent, "bytes": bytesIEC, "selectors": selectorsText,
	"seconds":   func(s float64) string { return duration(time.Duration(s * float64(time.Second))) },
	"short":     func(s string) string { return s[:min(len(s), 12)] },
	"hasPrefix": strings.HasPrefix,
}
