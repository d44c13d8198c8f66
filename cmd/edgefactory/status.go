package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/node"
)

func newStatusCmd() *cobra.Command {
	var nodeURL string

	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a node's view of the cluster: members, leader, ring, builds in flight, cache, recent errors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := fetchStatus(cmd, nodeURL)
			if err != nil {
				return err
			}

			return printStatus(cmd.OutOrStdout(), st, time.Now())
		},
	}

	cmd.Flags().StringVar(&nodeURL, "node", "http://127.0.0.1:8080", "URL of the node to ask")

	return cmd
}

func fetchStatus(cmd *cobra.Command, nodeURL string) (node.ClusterStatus, error) {
	var st node.ClusterStatus

	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, strings.TrimSuffix(nodeURL, "/")+"/cluster", nil)
	if err != nil {
		return st, err
	}

	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return st, fmt.Errorf("ask %s: %w", nodeURL, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

		return st, fmt.Errorf("ask %s: %s: %s", nodeURL, resp.Status, strings.TrimSpace(string(body)))
	}

	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func printStatus(w io.Writer, st node.ClusterStatus, now time.Time) error {
	leader := st.Leader
	if leader == "" {
		leader = "NONE (no quorum: writes are refused)"
	}

	fmt.Fprintf(w, "node %s (%s), leader %s, raft index %d\n", st.Node, st.URL, leader, st.AppliedIndex)
	fmt.Fprintf(w, "ring v%d %s: %d members, %d partitions, %d replicas per asset\n", st.Ring.Version, st.Ring.ID,
		len(st.Ring.Members), st.Ring.Partitions, st.Ring.Replicas)
	fmt.Fprintf(w, "builds: %d running, %d queued; transfers in flight: %d\n", st.Builds.Running, st.Builds.Queued,
		st.Transfers)

	budget := "unlimited"
	if st.Cache.BudgetBytes > 0 {
		budget = humanize.IBytes(uint64(st.Cache.BudgetBytes))
	}

	fmt.Fprintf(w, "cache: %s of %s in %d blobs; %d of %d requests answered from it (%.0f%%)\n",
		humanize.IBytes(uint64(st.Cache.UsedBytes)), budget, st.Cache.Blobs, st.Cache.Hits, st.Cache.Requests,
		100*st.Cache.HitRate)
	fmt.Fprintf(w, "catalog: %s; %s\n", strings.Join(st.Catalog, " "), syncLine(st.CatalogSync, now))
	fmt.Fprintf(w, "%s\n\n", buildProfileLine(st.BuildProfile))

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tRAFT\tRING\tHEARD\tZONE\tVERSION\tPROFILE\tROLE\tBUILDS\tURL")

	for _, m := range st.Members {
		name := m.Name
		if m.Name == st.Leader {
			name += " *"
		}

		heard := "-"
		if !m.LastContact.IsZero() {
			heard = ago(m.LastContact, now)
		}

		builds := "yes"
		if !m.MayBuild {
			builds = "no"
		}

		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, m.State, m.Raft,
			100*m.RingShare, heard, dash(m.Zone), dash(m.Version), profileCell(m), dash(m.Role), builds, m.URL)
	}

	if err := tw.Flush(); err != nil {
		return err
	}

	printWhyNot(w, st.Members)

	if len(st.Builds.InFlight) > 0 {
		fmt.Fprintln(w, "\nbuilds in flight:")

		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PATH\tVERSION\tSCHEMATIC\tSTAGE\tELAPSED\tKEY")

		for _, b := range st.Builds.InFlight {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.1fs\t%s\n", b.Path, b.Version, dash(short(b.Schematic)), b.Stage,
				b.ElapsedSeconds, short(b.Key))
		}

		if err := tw.Flush(); err != nil {
			return err
		}
	}

	if len(st.RecentErrors) > 0 {
		fmt.Fprintf(w, "\nrecent errors (%d, newest first):\n", len(st.RecentErrors))

		for _, e := range st.RecentErrors[:min(10, len(st.RecentErrors))] {
			fmt.Fprintf(w, "  %s ago  %s: %s\n", ago(e.Time, now), e.What, e.Error)
		}
	}

	return nil
}

// buildProfileLine says which build profile builds and who may build.
func buildProfileLine(p node.BuildProfileStatus) string {
	how := "the profile most live members share"
	if p.Setting != "" {
		how = "set explicitly (buildProfile)"
	}

	builders := strings.Join(p.Builders, " ")
	if builders == "" {
		builders = "NONE (nothing can be built)"
	}

	return fmt.Sprintf("build profile %s (%s), %s %s; builders: %s", dash(p.ID), how, dash(p.Arch),
		dash(p.Builder), builders)
}

// profileCell is a member's build profile and architecture.
func profileCell(m node.MemberStatus) string {
	if m.Profile == "" {
		return "-"
	}

	return m.Profile + " " + m.Arch
}

// printWhyNot lists the alive members that may not build, and why (role cache, another profile, degraded tools).
func printWhyNot(w io.Writer, members []node.MemberStatus) {
	first := true

	for _, m := range members {
		if m.MayBuild || m.State != "alive" {
			continue
		}

		if first {
			fmt.Fprintln(w, "\nmembers that do not build:")

			first = false
		}

		fmt.Fprintf(w, "  %s: %s\n", m.Name, m.WhyNot)
	}
}

func syncLine(s node.CatalogSyncStatus, now time.Time) string {
	line := "never read whole"
	if !s.LastSync.IsZero() {
		line = "last read whole " + ago(s.LastSync, now) + " ago"
	}

	if s.LastError != "" {
		line += "; last round failed: " + s.LastError
	}

	return line
}

// ago is the time from t to now, rounded to the second.
func ago(t, now time.Time) string { return now.Sub(t).Round(time.Second).String() }

func dash(s string) string {
	if s == "" {
		return "-"
	}

	return s
}
