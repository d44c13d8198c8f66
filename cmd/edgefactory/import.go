package main

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edgefactory/edgefactory/bundle"
	"github.com/edgefactory/edgefactory/frontends/imports"
)

// newImportCmd is `edgefactory import`: stream a bundle into a cluster through one member (bundle.Import;
// frontends/imports says the protocol).
func newImportCmd() *cobra.Command {
	var (
		nodeURL, secret, token string
		interval               time.Duration
	)

	cmd := &cobra.Command{
		Use:   "import BUNDLE --node URL",
		Short: "Bring a bundle (edgefactory mirror) into a cluster through any one member",
		Long: `Bring a bundle written by edgefactory mirror (a directory or a tar) into a cluster through any one member.
The member is told every blob the bundle holds and answers which the cluster lacks; only those are sent, each checked
against its digest on arrival. Then the member checks every image whole (manifests, configs and layers present and
matching, the cosign signature good with the cluster's --input-public-key keys), stores each blob on its holders on
the ring and records the images. A bundle that fails a check is refused, naming the image and the reason, and the
cluster keeps nothing of it. Running it again moves no blob; a newer bundle adds what it has more.`,
		Example: `  edgefactory import talos.tar --node http://10.0.0.11:8080 --cluster-secret "$SECRET"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := bundle.Open(args[0])
			if err != nil {
				return fmt.Errorf("open bundle: %w", err)
			}
			defer b.Close()

			out := cmd.OutOrStdout()
			f, isFile := out.(*os.File)
			opts := bundle.ImportOptions{Progress: out, ProgressInterval: interval,
				ProgressBar: isFile && term.IsTerminal(int(f.Fd()))}

			if token != "" {
				secret = token // either is presented as the bearer token
			}

			res, err := bundle.Import(cmd.Context(), b, &imports.Client{Base: nodeURL, Secret: secret,
				HTTP: &http.Client{}}, opts)
			if err != nil {
				return err
			}

			fmt.Fprintf(out, "imported %d images: %d blobs, %s in the cluster (%d sent now)\n", res.Images, res.Blobs,
				humanize.IBytes(uint64(max(res.Bytes, 0))), res.Moved)

			if x := b.Manifest().IPXE; x != nil && res.IPXE > 0 {
				fmt.Fprintf(out, "imported the iPXE binaries (%d files, %s): members with --netboot-interface and no "+
					"--ipxe-dir serve them; checked by digest only, they carry no signature\n", res.IPXE,
					ipxeSource(x.Source))
			}

			return nil
		},
	}

	cmd.Flags().StringVar(&nodeURL, "node", "http://127.0.0.1:8080", "URL of any member of the cluster")
	cmd.Flags().StringVar(&secret, "cluster-secret", os.Getenv(envPrefix+"CLUSTER_SECRET"),
		"the cluster's secret, when it has one (default $EDGEFACTORY_CLUSTER_SECRET)")
	cmd.Flags().StringVar(&token, "token", os.Getenv(envPrefix+"TOKEN"),
		"API token (--api-token-file) a secure cluster asks imports for (default $EDGEFACTORY_TOKEN)")
	cmd.Flags().DurationVar(&interval, "progress-interval", bundle.DefaultProgressInterval,
		"how often a progress line is written when the output is not a terminal")

	return cmd
}

// ipxeSource names where a bundle's iPXE binaries come from.
func ipxeSource(s string) string {
	if s == "" {
		return "source not recorded"
	}

	return s
}
