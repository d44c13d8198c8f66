package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
)

// newWarmCmd is `edgefactory warm`: build assets ahead of a site's first boot (once cluster-wide, as always) and
// leave a copy on every member, so that no machine waits for a build or a copy between members.
func newWarmCmd() *cobra.Command {
	var (
		nodeURL, schematicID string
		versions, assets     []string
	)

	cmd := &cobra.Command{
		Use:   "warm --node URL --schematic ID --versions V[,V...] --assets A[,A...]",
		Short: "Build assets ahead of the first boot and leave a copy on every member",
		Long: `Build the assets a site will boot ahead of time: each is built once cluster-wide (by the owner of its key, as
any request would have it), then read through every member, so that each member keeps a verified copy and a
machine's first download is a cached one wherever it lands. Assets are /image paths (metal-amd64.iso,
kernel-amd64, initramfs-amd64.xz, ...) or "installer" (the metal installer image, pulled whole). The members are
those the given one lists in /cluster.`,
		Example: `  edgefactory warm --node http://10.0.0.11:8080 --schematic 376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba \
      --versions v1.13.0 --assets metal-amd64.iso,kernel-amd64,initramfs-amd64.xz,installer`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if schematicID == "" || len(versions) == 0 || len(assets) == 0 {
				return errors.New("warm needs --schematic, --versions and --assets")
			}

			members, err := memberURLs(cmd, nodeURL)
			if err != nil {
				return err
			}

			return warm(cmd.Context(), cmd.OutOrStdout(), members, schematicID, versions, assets)
		},
	}

	cmd.Flags().StringVar(&nodeURL, "node", "http://127.0.0.1:8080", "URL of any member of the cluster")
	cmd.Flags().StringVar(&schematicID, "schematic", "", "schematic ID")
	cmd.Flags().StringSliceVar(&versions, "versions", nil, "Talos versions, comma separated")
	cmd.Flags().StringSliceVar(&assets, "assets", nil,
		"assets, comma separated: /image paths (metal-amd64.iso, kernel-amd64, ...) or installer")

	return cmd
}

// memberURLs lists the URLs of the alive members, as the member at nodeURL sees them.
func memberURLs(cmd *cobra.Command, nodeURL string) ([]string, error) {
	st, err := fetchStatus(cmd, nodeURL)
	if err != nil {
		return nil, err
	}

	var urls []string

	for _, m := range st.Members {
		if m.State == "alive" && m.URL != "" {
			urls = append(urls, m.URL)
		}
	}

	if len(urls) == 0 {
		return nil, fmt.Errorf("%s lists no alive member", nodeURL)
	}

	return urls, nil
}

// warm reads every asset of every version through the first member (which builds it once, cluster-wide), then
// through the others (each keeps a verified copy), saying what it did as it goes.
func warm(ctx context.Context, out io.Writer, members []string, schematicID string, versions, assets []string) error {
	var failed []string

	for _, v := range versions {
		for _, a := range assets {
			for i, m := range members {
				start := time.Now()

				n, err := warmOne(ctx, m, schematicID, v, a)
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s %s through %s: %v", v, a, m, err))

					continue
				}

				what := "copied to"
				if i == 0 {
					what = "built or found by"
				}

				fmt.Fprintf(out, "warm: %s %s (%s) %s %s in %s\n", v, a, humanize.IBytes(uint64(max(n, 0))), what, m,
					time.Since(start).Round(time.Millisecond))
			}
		}
	}

	if len(failed) > 0 {
		return fmt.Errorf("not warmed:\n  %s", strings.Join(failed, "\n  "))
	}

	return nil
}

// warmOne reads one asset through one member, whole; it returns the bytes read.
func warmOne(ctx context.Context, member, schematicID, version, asset string) (int64, error) {
	if asset == "installer" {
		return warmInstaller(ctx, member, schematicID, version)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimSuffix(member, "/")+"/image/"+schematicID+"/"+version+"/"+asset, nil)
	if err != nil {
		return 0, err
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

		return 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}

	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}

	return n, err
}

// warmInstaller pulls the metal installer image whole (index, manifests, configs, layers) through one member.
func warmInstaller(ctx context.Context, member, schematicID, version string) (int64, error) {
	host := strings.TrimPrefix(strings.TrimPrefix(member, "http://"), "https://")

	ref, err := name.ParseReference(host+"/metal-installer/"+schematicID+":"+version, name.Insecure)
	if err != nil {
		return 0, err
	}

	idx, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		return 0, err
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return 0, err
	}

	var total int64

	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return total, err
		}

		n, err := readImage(img)
		total += n

		if err != nil {
			return total, err
		}
	}

	return total, nil
}

// readImage reads every layer of an image (go-containerregistry checks each against its digest).
func readImage(img v1.Image) (int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}

	var total int64

	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return total, err
		}

		n, err := io.Copy(io.Discard, rc)
		rc.Close()

		total += n
		if err != nil {
			return total, err
		}
	}

	return total, nil
}
