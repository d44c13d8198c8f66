package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/node"
)

// edgefactory token: join tokens of a secure cluster (docs/api.md §14).
func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the join tokens that admit new members to a secure cluster",
	}
	client := apiClientFlags(cmd)

	var ttl time.Duration

	create := &cobra.Command{
		Use: "create", Short: "Make a join token and print it", Args: cobra.NoArgs,
		Example: `  edgefactory token create --ttl 2h --node http://10.0.0.11:8080`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := json.Marshal(map[string]string{"ttl": ttl.String()})
			if err != nil {
				return err
			}

			var t node.TokenInfo
			if err := client().do(cmd.Context(), http.MethodPost, "/cluster/tokens", body, &t); err != nil {
				return err
			}

			fmt.Fprintf(cmd.OutOrStdout(), "join token %s (expires %s):\n%s\n", t.ID, t.Expires.Format(time.RFC3339),
				t.Token)

			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", node.DefaultTokenTTL, "how long the token admits members")
	cmd.AddCommand(create)

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the join tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []node.TokenInfo
			if err := client().do(cmd.Context(), http.MethodGet, "/cluster/tokens", nil, &list); err != nil {
				return err
			}

			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEXPIRES\tEXPIRED\tCREATED BY")

			for _, t := range list {
				fmt.Fprintf(tw, "%s\t%s\t%t\t%s\n", t.ID, t.Expires.Format(time.RFC3339), t.Expired, t.CreatedBy)
			}

			return tw.Flush()
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use: "revoke ID", Short: "Revoke a join token (members it admitted keep their certificates)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := client().do(cmd.Context(), http.MethodDelete, "/cluster/tokens/"+url.PathEscape(args[0]), nil,
				nil); err != nil {
				return err
			}

			fmt.Fprintf(cmd.OutOrStdout(), "join token %s revoked\n", args[0])

			return nil
		},
	})

	return cmd
}

// edgefactory certificates: the members' certificates of a secure cluster.
func newCertificatesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certificates",
		Short: "List the members' certificates; revoke a member's",
	}
	client := apiClientFlags(cmd)

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the certificates in use and revoked", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []node.CertificateInfo
			if err := client().do(cmd.Context(), http.MethodGet, "/cluster/certificates", nil, &list); err != nil {
				return err
			}

			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MEMBER\tSERIAL\tEXPIRES\tREVOKED")

			for _, c := range list {
				expires := ""
				if !c.NotAfter.IsZero() {
					expires = c.NotAfter.Format(time.RFC3339)
				}

				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", c.Member, c.Serial, expires, c.Revoked)
			}

			return tw.Flush()
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use: "revoke MEMBER", Short: "Revoke every certificate of a member: no member accepts it any more",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := client().do(cmd.Context(), http.MethodPost,
				"/cluster/certificates/"+url.PathEscape(args[0])+"/revoke", nil, nil); err != nil {
				return err
			}

			fmt.Fprintf(cmd.OutOrStdout(), "certificates of %s revoked\n", args[0])

			return nil
		},
	})

	return cmd
}

// edgefactory rotate: the cluster CA or the gossip key, without downtime.
func newRotateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:       "rotate ca|gossip-key",
		Short:     "Rotate the cluster CA or the gossip key of a secure cluster without downtime",
		Long:      "A CA rotation makes the join tokens made before it useless: make new ones after it.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"ca", "gossip-key"},
	}
	client := apiClientFlags(cmd)

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if args[0] != "ca" && args[0] != "gossip-key" {
			return fmt.Errorf("rotate %q: want ca or gossip-key", args[0])
		}

		var out map[string]string
		if err := client().do(cmd.Context(), http.MethodPost, "/cluster/rotate/"+args[0], nil, &out); err != nil {
			return err
		}

		fmt.Fprintf(cmd.OutOrStdout(), "%s rotated %s\n", args[0], out["ca"])

		return nil
	}

	return cmd
}
