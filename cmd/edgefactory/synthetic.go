package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// syntheticFlags are the options shared by `synthetic push` and `synthetic serve`.
type syntheticFlags struct {
	namespace string
	versions  []string
	partsDir  string
}

func (f *syntheticFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.namespace, "namespace", synthetic.DefaultNamespace, "repository namespace of the release")
	cmd.Flags().StringSliceVar(&f.versions, "versions", synthetic.DefaultVersions, "Talos versions to publish")
	cmd.Flags().StringVar(&f.partsDir, "parts", "", "`DIR` holding the kernel/busybox/systemd-boot parts (default: $EDGEFACTORY_PARTS or build/parts, filled by make deps)")
}

func (f *syntheticFlags) options(logger *slog.Logger) (synthetic.Options, error) {
	dir := f.partsDir
	if dir == "" {
		dir = synthetic.DefaultPartsDir()
	}

	parts, err := synthetic.LoadParts(dir, logger)
	if err != nil {
		return synthetic.Options{}, err
	}

	return synthetic.Options{Namespace: f.namespace, Versions: f.versions, Parts: parts, Logger: logger}, nil
}

// newSyntheticCmd is `edgefactory synthetic`: publish the synthetic Talos release (what tests and labs use instead
// of ghcr.io) to a registry, serve it from an in-process registry, or print the public key it is signed with.
func newSyntheticCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "synthetic",
		Short: "Publish a synthetic Talos release (Debian kernel, busybox init) with the layout of the real one",
	}

	cmd.AddCommand(newSyntheticPushCmd(), newSyntheticServeCmd(), newSyntheticPublicKeyCmd())

	return cmd
}

func newSyntheticPushCmd() *cobra.Command {
	var (
		flags    syntheticFlags
		registry string
		insecure bool
	)

	cmd := &cobra.Command{
		Use:   "push --registry HOST:PORT",
		Short: "Push the synthetic release to a registry and print what was pushed (JSON) on stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

			opts, err := flags.options(logger)
			if err != nil {
				return err
			}

			opts.Insecure = insecure

			m, err := synthetic.Push(cmd.Context(), registry, opts)
			if err != nil {
				return err
			}

			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")

			return enc.Encode(m)
		},
	}

	flags.register(cmd)
	cmd.Flags().StringVar(&registry, "registry", "", "registry to push to, `HOST:PORT`")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "use plain HTTP (loopback registries always do)")
	_ = cmd.MarkFlagRequired("registry") // the flag exists

	return cmd
}

func newSyntheticServeCmd() *cobra.Command {
	var (
		flags  syntheticFlags
		listen string
	)

	cmd := &cobra.Command{
		Use:   "serve --listen HOST:PORT",
		Short: "Serve the synthetic release from an in-process registry (plain HTTP) until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

			opts, err := flags.options(logger)
			if err != nil {
				return err
			}

			ln, err := (&net.ListenConfig{}).Listen(cmd.Context(), "tcp", listen)
			if err != nil {
				return fmt.Errorf("listen %s: %w", listen, err)
			}

			// Blobs live on disk while the registry runs, not in this process's heap.
			if opts.BlobDir, err = os.MkdirTemp("", "edgefactory-synthetic-"); err != nil {
				return fmt.Errorf("synthetic registry blobs: %w", err)
			}
			defer os.RemoveAll(opts.BlobDir) // temporary

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()

			return synthetic.Serve(ctx, ln, opts)
		},
	}

	flags.register(cmd)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:5000", "`HOST:PORT` to serve the registry on")

	return cmd
}

// newSyntheticPublicKeyCmd is `edgefactory synthetic public-key`: the PEM public key every image of the synthetic
// release is signed with (cosign, legacy tag scheme), for `cosign verify --key` and for trusting the release as an
// input. It is a fixed, public lab key: trust it only where the synthetic release is the input.
func newSyntheticPublicKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "public-key",
		Short: "Print the public key (PEM) the synthetic release is signed with: a public lab key, for labs and tests only",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(synthetic.PublicKeyPEM())

			return err
		},
	}
}
