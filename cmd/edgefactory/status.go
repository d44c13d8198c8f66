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
		Short: "Show a node's view of the cluster: members, leader, ring, builds, cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := fetchStatus(cmd, nodeURL)
			if err != nil {
				return err
			}

			return printStatus(cmd.OutOrStdout(), st)
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

func printStatus(w io.Writer, st node.ClusterStatus) error {
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

	fmt.Fprintf(w, "cache: %s of %s in %d blobs\n", humanize.IBytes(uint64(st.Cache.UsedBytes)), budget, st.Cache.Blobs)
	fmt.Fprintf(w, "catalog: %s\n\n", strings.Join(st.Catalog, " "))

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tRAFT\tZONE\tVERSION\tURL")

	for _, m := range st.Members {
		name := m.Name
		if m.Name == st.Leader {
			name += " *"
		}

		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, m.State, m.Raft, dash(m.Zone), dash(m.Version), m.URL)
	}

	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}

	return s
}
