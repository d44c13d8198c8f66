package inputs

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
)

func sha256Of(s string) string {
	sum := sha256.Sum256([]byte(s))

	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestExtractFile copies single root files out of a three-layer image, checked against the size and digest the
// catalog recorded: the file of the flattened image (a later layer's copy wins), reading no layer after the one that
// completes it; a file the image lacks, or whose bytes differ from the catalog's, is an error and leaves nothing.
func TestExtractFile(t *testing.T) {
	var (
		mu    sync.Mutex
		blobs []string // blob GETs, by digest
	)

	inner := registry.New(registry.Logger(slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); r.Method == http.MethodGet && i >= 0 {
			mu.Lock()
			blobs = append(blobs, r.URL.Path[i+len("/blobs/"):])
			mu.Unlock()
		}

		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	addr := strings.TrimPrefix(srv.URL, "http://")

	layers := []v1.Layer{
		layerOf(t, "gzip", tarFile{name: "talosctl-linux-amd64", data: "old"}, tarFile{name: "talosctl-linux-arm64", data: "arm"}),
		layerOf(t, "zstd", tarFile{name: "./talosctl-linux-amd64", data: "new"}, tarFile{name: "bin/talosctl-darwin-arm64", data: "deep"}),
		layerOf(t, "none", tarFile{name: "talosctl-windows-amd64.exe", data: "windows"}),
	}

	img, err := mutate.AppendLayers(empty.Image, layers...)
	require.NoError(t, err)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	require.NoError(t, err)

	// An index whose linux/amd64 entry is img, as the real talosctl-all (and a decoy for arm64).
	decoy, err := mutate.AppendLayers(empty.Image, layerOf(t, "gzip", tarFile{name: "talosctl-linux-amd64", data: "decoy"}))
	require.NoError(t, err)

	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: decoy, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)

	tag, err := name.NewTag(addr+"/siderolabs/talosctl-all:v1.13.0", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.WriteIndex(tag, idx))

	imgDigest, err := img.Digest()
	require.NoError(t, err)

	idxDigest, err := idx.Digest()
	require.NoError(t, err)

	layerDigest := func(i int) string {
		d, err := layers[i].Digest()
		require.NoError(t, err)

		return d.String()
	}

	s := openStore(t, t.TempDir(), release.Source{Registry: addr, Insecure: true})
	image := recipe.Image{Repository: "siderolabs/talosctl-all", Digest: imgDigest.String()}

	extract := func(t *testing.T, img recipe.Image, file, content string) (string, []string, error) {
		t.Helper()

		mu.Lock()
		blobs = nil
		mu.Unlock()

		out := t.TempDir()
		p, err := s.ExtractFile(t.Context(), img, file, int64(len(content)), sha256Of(content), out)

		mu.Lock()
		defer mu.Unlock()

		if err != nil {
			require.Empty(t, p)
		}

		return p, append([]string(nil), blobs...), err
	}

	t.Run("later layer wins, last layer unread", func(t *testing.T) {
		p, read, err := extract(t, image, "talosctl-linux-amd64", "new")
		require.NoError(t, err)
		requireSameFile(t, []byte("new"), p)
		require.Equal(t, "talosctl-linux-amd64", filepath.Base(p))
		require.NotContains(t, read, layerDigest(2), "stops at the layer that completes the file")
	})

	t.Run("first layer only", func(t *testing.T) {
		p, read, err := extract(t, image, "talosctl-linux-arm64", "arm")
		require.NoError(t, err)
		requireSameFile(t, []byte("arm"), p)
		require.Contains(t, read, layerDigest(0))
		require.NotContains(t, read, layerDigest(1))
		require.NotContains(t, read, layerDigest(2))
	})

	t.Run("by index digest, the linux/amd64 image", func(t *testing.T) {
		p, _, err := extract(t, recipe.Image{Repository: image.Repository, Digest: idxDigest.String()}, "talosctl-windows-amd64.exe", "windows")
		require.NoError(t, err)
		requireSameFile(t, []byte("windows"), p)
	})

	for _, tc := range []struct{ name, file, content, err string }{
		{"missing", "talosctl-plan9-amd64", "x", "image has no /talosctl-plan9-amd64"},
		{"not at the root", "talosctl-darwin-arm64", "deep", "image has no /talosctl-darwin-arm64"},
		{"other bytes than the catalog's", "talosctl-linux-amd64", "tampered", "is not the file the catalog recorded"},
		{"not a file name", "bin/talosctl-darwin-arm64", "deep", "not a file name at the image root"},
		{"dot dot", "..", "x", "not a file name at the image root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := extract(t, image, tc.file, tc.content)
			require.ErrorContains(t, err, tc.err)
		})
	}

	t.Run("unpinned", func(t *testing.T) {
		_, _, err := extract(t, recipe.Image{Repository: image.Repository, Digest: "v1.13.0"}, "talosctl-linux-amd64", "new")
		require.ErrorContains(t, err, "want sha256:<64 lowercase hex>")
	})

	entries, err := os.ReadDir(filepath.Join(s.Dir(), "sha256"))
	require.NoError(t, err)
	require.Empty(t, entries, "nothing kept in the store: the caller keeps the file")
}
