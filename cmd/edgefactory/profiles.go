package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/frontends/machines"
)

// edgefactory profiles: the network-boot machine table over a member's API (docs/api.md §11).
func newProfilesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profiles",
		Short: "List, show, write and delete network-boot machine profiles; list the last boots",
		Long: `Machine profiles say what a network-booting machine boots: selectors (mac, uuid, serial, hostname,
subnet, labels) match machines, the most specific profile wins, and a profile without selectors is the default.
They are replicated in the cluster: any member takes the change.`,
	}
	client := apiClientFlags(cmd)

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the profiles", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []machines.Profile
			if err := client().do(cmd.Context(), http.MethodGet, "/machines/profiles", nil, &list); err != nil {
				return err
			}

			return printProfiles(cmd.OutOrStdout(), list)
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use: "get NAME", Short: "Show one profile as YAML", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p machines.Profile
			if err := client().do(cmd.Context(), http.MethodGet, "/machines/profiles/"+url.PathEscape(args[0]), nil,
				&p); err != nil {
				return err
			}

			return yaml.NewEncoder(cmd.OutOrStdout()).Encode(p)
		},
	})

	cmd.AddCommand(newProfilesPutCmd(client))

	cmd.AddCommand(&cobra.Command{
		Use: "delete NAME", Short: "Delete a profile", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := client().do(cmd.Context(), http.MethodDelete, "/machines/profiles/"+url.PathEscape(args[0]),
				nil, nil); err != nil {
				return err
			}

			fmt.Fprintf(cmd.OutOrStdout(), "profile %s deleted\n", args[0])

			return nil
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use: "seen", Short: "List the last network boots the members saw", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var boots []machines.Boot
			if err := client().do(cmd.Context(), http.MethodGet, "/machines/seen", nil, &boots); err != nil {
				return err
			}

			return printBoots(cmd.OutOrStdout(), boots)
		},
	})

	return cmd
}

func newProfilesPutCmd(client func() *apiClient) *cobra.Command {
	var (
		file   string
		p      machines.Profile
		labels map[string]string
	)

	cmd := &cobra.Command{
		Use:   "put NAME",
		Short: "Write a profile, from a JSON or YAML file (-f, - for stdin) or from flags",
		Example: `  edgefactory profiles put rack1-node1 --mac 52:54:00:12:34:56 --schematic <id> --version v1.13.0 \
      --extra-kernel-arg console=ttyS0
  edgefactory profiles put default -f default.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := profileBody(cmd, file, p, labels)
			if err != nil {
				return err
			}

			var stored machines.Profile
			if err := client().do(cmd.Context(), http.MethodPut, "/machines/profiles/"+url.PathEscape(args[0]),
				body, &stored); err != nil {
				return err
			}

			fmt.Fprintf(cmd.OutOrStdout(), "profile %s written\n", stored.Name)

			return yaml.NewEncoder(cmd.OutOrStdout()).Encode(stored)
		},
	}

	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "profile as JSON or YAML (- reads stdin); flags are ignored with it")
	f.StringVar(&p.Selectors.MAC, "mac", "", "select the machine with this MAC address")
	f.StringVar(&p.Selectors.UUID, "uuid", "", "select the machine with this SMBIOS UUID")
	f.StringVar(&p.Selectors.Serial, "serial", "", "select the machine with this serial number")
	f.StringVar(&p.Selectors.Hostname, "hostname", "", "select the machine DHCP names so")
	f.StringVar(&p.Selectors.Subnet, "subnet", "", "select machines whose address is in this CIDR")
	f.StringToStringVar(&labels, "label", nil, "select machines whose boot URL carries ?KEY=VALUE (repeatable)")
	f.StringVar(&p.Schematic, "schematic", "", "schematic ID to boot")
	f.StringVar(&p.Version, "version", "", "Talos version to boot")
	f.StringVar(&p.Platform, "platform", "metal", "Talos platform")
	f.BoolVar(&p.SecureBoot, "secureboot", false, "boot the secure-boot UKI")
	f.StringArrayVar(&p.ExtraKernelArgs, "extra-kernel-arg", nil, "kernel argument to add (repeatable)")

	return cmd
}

// profileBody is the request body: the file as given (the member parses and checks it), or the flags as JSON.
func profileBody(cmd *cobra.Command, file string, p machines.Profile, labels map[string]string) ([]byte, error) {
	switch file {
	case "":
		p.Selectors.Labels = labels

		return json.Marshal(p)
	case "-":
		return io.ReadAll(cmd.InOrStdin())
	default:
		return os.ReadFile(file)
	}
}

func printProfiles(w io.Writer, list []machines.Profile) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSELECTORS\tSCHEMATIC\tVERSION\tPLATFORM\tSECUREBOOT\tEXTRA ARGS")

	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\n", p.Name, selectorsText(p.Selectors), short(p.Schematic),
			p.Version, p.Platform, p.SecureBoot, strings.Join(p.ExtraKernelArgs, " "))
	}

	return tw.Flush()
}

func selectorsText(s machines.Selectors) string {
	var parts []string

	for _, kv := range [][2]string{{"mac", s.MAC}, {"uuid", s.UUID}, {"serial", s.Serial},
		{"hostname", s.Hostname}, {"subnet", s.Subnet}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}

	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}

	sort.Strings(keys)

	for _, k := range keys {
		parts = append(parts, "label:"+k+"="+s.Labels[k])
	}

	if len(parts) == 0 {
		return "(default)"
	}

	return strings.Join(parts, ",")
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}

	return id
}

func printBoots(w io.Writer, boots []machines.Boot) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tMAC\tMEMBER\tSTAGE\tPROFILE\tSERVED")

	for _, b := range boots {
		profile := b.Profile
		if profile == "" {
			profile = "-"
		}

		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Time.Local().Format(time.DateTime), b.MAC, b.Member,
			b.Stage, profile, b.Served)
	}

	return tw.Flush()
}
