package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edgefactory/edgefactory/bundle"
)

// newMirrorCmd is `edgefactory mirror`: copy a Talos release, with the images its clusters pull and their
// signatures, from where a registry is reachable into a bundle (bundle.Mirror) to carry into an air-gapped site.
func newMirrorCmd() *cobra.Command {
	var (
		opts     bundle.Options
		keyFiles []string
		verbose  bool
	)

	cmd := &cobra.Command{
		Use:   "mirror --versions VERSIONS --to DIR|FILE.tar|docker://REGISTRY[/PREFIX]",
		Short: "Copy Talos releases, their cluster images and signatures into a bundle for an air-gapped site",
		Long: `Copy what an air-gapped site needs of one or more Talos releases into a bundle: per version the imager,
installer-base (installer before Talos 1.10), extensions and overlays catalogs, the extensions and overlays
selected, with --talosctl the talosctl-all image, with --cluster-images every image a cluster of that version pulls
(what the version's own 'talosctl images default' prints, run from its talosctl-all image), and any --extra-image.
Every index, manifest and blob is copied by digest with the image's cosign signature (tag sha256-<hex>.sig) and OCI
referrers. Blobs are stored once, however many images share them.

The bundle is an OCI image layout (a directory, or FILE.tar) with bundle.json listing every image under its original
reference (docs/bundle.md); docker://REGISTRY[/PREFIX] pushes the images into a registry instead, under their
repository paths without the origin's host. A rerun, or a run after an interruption, fetches only what is missing
or does not match its digest; a tar is built in FILE.tar.partial/ and appears only once complete.

Images named in another registry (registry.k8s.io/..., gcr.io/...) are read from there, or from where --source-map
says (a pull-through cache, or the synthetic release's registry). With --public-key every signature found must
verify with one of the keys (cosign's legacy tag scheme, offline). An image that cannot be copied does not stop the
others: the command exits non-zero naming each one and why.

With --ipxe-dir the bundle also carries the iPXE binaries network boot hands out (all three, and the directory's
VERSION text): imported, they let the site's members answer network boot without --ipxe-dir. A registry target
cannot carry them.`,
		Example: `  edgefactory mirror --versions v1.12.0,v1.13.0 --extensions all --overlays all --talosctl \
      --cluster-images --ipxe-dir build/parts/ipxe --to talos.tar
  edgefactory mirror --versions '>=v1.12.0' --extensions siderolabs/iscsi-tools --to /srv/bundle
  edgefactory mirror --from 127.0.0.1:5000 --source-map registry.k8s.io=127.0.0.1:5000/registry.k8s.io \
      --versions v1.13.0 --cluster-images --public-key lab.pub --to docker://mirror.local:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range keyFiles {
				pem, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--public-key: %w", err)
				}

				opts.PublicKeys = append(opts.PublicKeys, pem)
			}

			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}

			stderr := cmd.ErrOrStderr()
			opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			opts.Progress = stderr
			opts.ProgressBar = isTerminal(stderr)
			opts.Tool = "edgefactory " + version

			res, err := bundle.Mirror(cmd.Context(), opts)
			if res != nil {
				fmt.Fprintln(cmd.OutOrStdout(), "mirrored", res.Summary())
			}

			return err
		},
	}

	f := cmd.Flags()
	f.StringVar(&opts.From, "from", bundle.DefaultFrom, "where the release is read, `REGISTRY[/NAMESPACE]` (a mirror of ghcr.io/siderolabs)")
	f.StringVar(&opts.Versions, "versions", "", "Talos versions: a list (v1.12.0,v1.13.0) or a semver range over the published ones ('>=v1.12.0')")
	f.StringSliceVar(&opts.Extensions, "extensions", nil, "extensions to copy, by name (siderolabs/iscsi-tools or iscsi-tools), or all")
	f.StringSliceVar(&opts.Overlays, "overlays", nil, "overlays to copy, by name (rpi_generic), or all")
	f.BoolVar(&opts.Talosctl, "talosctl", false, "copy the talosctl-all image (Talos 1.11 and later)")
	f.BoolVar(&opts.ClusterImages, "cluster-images", false, "copy the images a cluster of each version pulls (talosctl images default)")
	f.StringArrayVar(&opts.ExtraImages, "extra-image", nil, "another image to copy, by full `REF` (repeatable)")
	f.StringVar(&opts.To, "to", "", "where the bundle goes: `DIR`, FILE.tar, or docker://REGISTRY[/PREFIX]")
	f.StringArrayVar(&opts.SourceMap, "source-map", nil, "read images of `ORIGIN` from REGISTRY[/PREFIX] instead: ORIGIN=REGISTRY[/PREFIX] (repeatable)")
	f.BoolVar(&opts.Insecure, "insecure", false, "use plain HTTP with every registry (loopback registries always do)")
	f.StringArrayVar(&keyFiles, "public-key", nil, "PEM public key `FILE` every signature must verify with (repeatable)")
	f.StringVar(&opts.IPXEDir, "ipxe-dir", "", "carry the iPXE binaries of `DIR` (undionly.kpxe, ipxe.efi, ipxe-arm64.efi; make deps puts Debian's in build/parts/ipxe) for network boot at the site (not with docker://)")
	f.BoolVar(&opts.RequireSignatures, "require-signatures", false, "refuse images without a (verified, with --public-key) signature")
	f.IntVar(&opts.Jobs, "jobs", bundle.DefaultJobs, "blobs copied at once")
	f.BoolVarP(&verbose, "verbose", "v", false, "log each step, not only warnings")
	_ = cmd.MarkFlagRequired("to") // the flag exists

	return cmd
}

// isTerminal reports whether w is a terminal (progress is then a bar, not a line every few seconds).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)

	return ok && term.IsTerminal(int(f.Fd()))
}
