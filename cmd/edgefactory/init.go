package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/node"
)

// edgefactory init: the first member of a secure cluster (docs/architecture.md §15).
func newInitCmd() *cobra.Command {
	var (
		dataDir, cluster string
		ttl              time.Duration
	)

	cmd := &cobra.Command{
		Use:   "init",
		Short: "Prepare the first member of a secure cluster: its CA, gossip key and a first join token",
		Long: `init creates the cluster CA, the gossip key and a join token in the first member's data directory
(<data>/tls, private), and prints the token. Start that member with --cluster-listen; start the others with
--cluster-listen, --join <first member's cluster port> and --join-token <token>: each checks the CA's fingerprint
in the token, presents its secret and receives its certificate and the gossip key. Nothing secret is copied by hand
but the token, which expires.`,
		Example: `  edgefactory init --data /var/lib/edgefactory
  edgefactory serve --data /var/lib/edgefactory --cluster-listen 10.0.0.11:7950 ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := node.Init(dataDir, cluster, ttl)
			if err != nil {
				return err
			}

			fmt.Fprintf(cmd.OutOrStdout(), "cluster CA %s\njoin token (expires %s):\n%s\n", res.CAFingerprint,
				res.Expires.Format(time.RFC3339), res.Token)

			return nil
		},
	}

	cmd.Flags().StringVar(&dataDir, "data", os.Getenv(envPrefix+"DATA"), "data directory of the first member")
	cmd.Flags().StringVar(&cluster, "cluster", "edgefactory", "cluster name, in the CA's name")
	cmd.Flags().DurationVar(&ttl, "ttl", node.DefaultTokenTTL, "how long the join token admits members")
	_ = cmd.MarkFlagRequired("data")

	return cmd
}
