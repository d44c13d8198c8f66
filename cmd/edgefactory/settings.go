package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/frontends/settings"
)

// edgefactory settings: the cluster settings over a member's API (docs/api.md §12).
func newSettingsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "settings",
		Short: "Show and change the cluster settings (catalog policy, replicas, cache limits)",
		Long: `The cluster settings are kept in Raft and apply to every member: the minimum and broken Talos versions, the
replica count, how often the catalog is read, each member's cache budget and free-space floor. A member's flags give
only the values a new cluster starts with. Changes are authenticated outside dev (--token or --user) and logged
with who made them.`,
	}
	client := apiClientFlags(cmd)

	cmd.AddCommand(&cobra.Command{
		Use: "get", Short: "Show the settings in force, as YAML", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s settings.Settings
			if err := client().do(cmd.Context(), http.MethodGet, "/cluster/settings", nil, &s); err != nil {
				return err
			}

			return yaml.NewEncoder(cmd.OutOrStdout()).Encode(s)
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "set NAME=VALUE...",
		Short: "Change settings: " + strings.Join(settings.Names, ", "),
		Example: `  edgefactory settings set replicas=3
  edgefactory settings set brokenVersions=v1.12.1,v1.12.2 minVersion=1.10.0
  edgefactory settings set cacheBudget=200GiB lowSpaceWatermark=20GiB catalogInterval=30m
  edgefactory settings set buildProfile=6634bb31da717223   # "" again: the profile most members share`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			change := map[string]string{}

			for _, a := range args {
				name, value, ok := strings.Cut(a, "=")
				if !ok || name == "" {
					return fmt.Errorf("%q: want NAME=VALUE, e.g. replicas=3", a)
				}

				change[name] = value
			}

			body, err := json.Marshal(change)
			if err != nil {
				return err
			}

			var s settings.Settings
			if err := client().do(cmd.Context(), http.MethodPut, "/cluster/settings", body, &s); err != nil {
				return err
			}

			fmt.Fprintln(cmd.OutOrStdout(), "cluster settings changed")

			return yaml.NewEncoder(cmd.OutOrStdout()).Encode(s)
		},
	})

	return cmd
}
