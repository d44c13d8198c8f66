package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/node"
)

// newDevCmd is the embedded default behind `make run`: one node, state under ./data, and an in-process registry
// holding the synthetic Talos release as its upstream.
func newDevCmd() *cobra.Command {
	cfg := node.Defaults()
	cfg.Version = version
	cfg.NodeName = "dev"
	cfg.Dev = true
	cfg.Listen = "127.0.0.1:8080"
	cfg.RaftListen = "127.0.0.1:0"
	cfg.GossipListen = "127.0.0.1:0"

	var (
		logs  logFlags
		parts string
	)

	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a one-node factory on the synthetic Talos release (no internet needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger()
			if err != nil {
				return err
			}

			cfg.Logger = log

			restore, err := imager.CaptureStderr(log.With("component", "imager"))
			if err != nil {
				return err
			}
			defer restore()

			ctx := cmd.Context()

			upstream, err := startSyntheticUpstream(ctx, parts, filepath.Join(cfg.DataDir, "upstream"), log)
			if err != nil {
				return err
			}

			cfg.Upstream.Registry = upstream
			cfg.Upstream.Insecure = true
			// The synthetic release is signed with its lab key: dev trusts it, as a site trusts Sidero's.
			cfg.InputPublicKeys = append(cfg.InputPublicKeys, synthetic.PublicKeyPEM())

			n, err := node.New(cfg)
			if err != nil {
				return err
			}

			base := n.URL()
			log.Info("ready for curl: try these",
				"create_schematic", fmt.Sprintf(`curl -X POST --data-binary '{"customization":{}}' %s/schematics`, base),
				"versions", "curl "+base+"/versions",
				"extensions", "curl "+base+"/version/v1.13.0/extensions/official")

			tuneGC()

			return n.Run(ctx)
		},
	}

	cmd.Flags().StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP listen address")
	cmd.Flags().StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory")
	cmd.Flags().StringVar(&cfg.ExternalURL, "external-url", cfg.ExternalURL,
		"URL clients use to reach this node (default http://<listen>)")
	cmd.Flags().StringVar(&cfg.PXEURL, "pxe-url", cfg.PXEURL, "URL used in PXE scripts (default --external-url)")
	cmd.Flags().StringVar(&parts, "parts", "", "directory of synthetic release parts (default $EDGEFACTORY_PARTS or ./build/parts)")
	buildNiceFlag(cmd.Flags(), &cfg.BuildNice)
	logs.bind(cmd.Flags())

	return cmd
}

// startSyntheticUpstream serves an in-process OCI registry on loopback holding the synthetic release, its blobs in
// files under blobDir (emptied first: the release is pushed afresh at every start), and returns its address. It
// stops when ctx ends.
func startSyntheticUpstream(ctx context.Context, partsDir, blobDir string, log *slog.Logger) (string, error) {
	if partsDir == "" {
		partsDir = synthetic.DefaultPartsDir()
	}

	parts, err := synthetic.LoadParts(partsDir, log)
	if err != nil {
		return "", err
	}

	if err := os.RemoveAll(blobDir); err != nil {
		return "", fmt.Errorf("empty the synthetic upstream registry: %w", err)
	}

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen for the synthetic upstream registry: %w", err)
	}

	srv, err := synthetic.Start(ctx, ln, synthetic.Options{Parts: parts, BlobDir: blobDir,
		Logger: log.With("component", "synthetic")})
	if err != nil {
		return "", fmt.Errorf("start the synthetic upstream registry: %w", err)
	}

	go func() {
		<-ctx.Done()
		srv.Close() // shutting down
	}()

	return srv.Addr, nil
}
