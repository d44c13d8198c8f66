package release_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// countingTransport records the requests a Source sends.
type countingTransport struct {
	mu   sync.Mutex
	seen []string
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.seen = append(c.seen, req.Method+" "+req.URL.Path)
	c.mu.Unlock()

	return http.DefaultTransport.RoundTrip(req)
}

// since returns the requests sent after the first n, and their count now.
func (c *countingTransport) since(n int) ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()

	return append([]string(nil), c.seen[n:]...), len(c.seen)
}

// withoutPings drops the registry version checks (GET /v2/) from a request list.
func withoutPings(sent []string) []string {
	var out []string

	for _, s := range sent {
		if s != "GET /v2/" {
			out = append(out, s)
		}
	}

	return out
}

func fileDigest(b []byte) string {
	sum := sha256.Sum256(b)

	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestReadTalosctl reads the synthetic release's talosctl-all: every binary with its size and sha256, from the
// linux/amd64 image; a recheck of an unchanged tag costs one HEAD; versions before 1.11.0-alpha.3 cost nothing; a
// registry without the image gives an empty list, not an error.
func TestReadTalosctl(t *testing.T) {
	srv := startRelease(t)
	tr := &countingTransport{}
	src := release.Source{Registry: srv.Addr, Transport: tr}

	vi, ok := srv.Manifest.Version("v1.13.0")
	require.True(t, ok)

	got, err := src.ReadTalosctl(t.Context(), "v1.13.0", nil)
	require.NoError(t, err)
	require.Equal(t, "siderolabs/talosctl-all", got.Repository)
	require.Equal(t, vi.Talosctl.Digest, got.Tag)
	require.Equal(t, vi.Talosctl.Platforms["amd64"], got.Image, "the linux/amd64 image, as the official service reads")
	require.Equal(t, synthetic.TalosctlFiles, got.Names(), "sorted")

	for _, f := range got.Files {
		content := synthetic.TalosctlContent("v1.13.0", f.Name)
		require.Equal(t, release.TalosctlFile{Name: f.Name, Size: int64(len(content)), Digest: fileDigest(content)}, f)
	}

	t.Run("tolerant version", func(t *testing.T) {
		again, err := src.ReadTalosctl(t.Context(), "1.13", nil)
		require.NoError(t, err)
		require.Equal(t, got, again)
	})

	t.Run("unchanged tag", func(t *testing.T) {
		_, before := tr.since(0)

		again, err := src.ReadTalosctl(t.Context(), "v1.13.0", got)
		require.NoError(t, err)
		require.Same(t, got, again)

		sent, _ := tr.since(before)
		require.Equal(t, []string{"HEAD /v2/siderolabs/talosctl-all/manifests/v1.13.0"}, withoutPings(sent))
	})

	t.Run("moved tag", func(t *testing.T) {
		stale := *got
		stale.Tag = "sha256:" + strings.Repeat("0", 64)

		again, err := src.ReadTalosctl(t.Context(), "v1.13.0", &stale)
		require.NoError(t, err)
		require.Equal(t, got, again, "read again")
	})

	for _, v := range []string{"v1.10.0", "v1.10.9", "v1.2.0"} {
		t.Run("before talosctl "+v, func(t *testing.T) {
			_, before := tr.since(0)

			none, err := src.ReadTalosctl(t.Context(), v, nil)
			require.NoError(t, err)
			require.Nil(t, none)

			sent, _ := tr.since(before)
			require.Empty(t, sent, "not even asked")
		})
	}

	// The official quirk compares major.minor.patch only, so every 1.11.0 pre-release is asked for.
	for _, v := range []string{"v1.11.0-alpha.2", "v1.11.0-alpha.3", "v1.12.5"} {
		t.Run("no image "+v, func(t *testing.T) {
			none, err := src.ReadTalosctl(t.Context(), v, nil)
			require.NoError(t, err)
			require.Equal(t, &release.Talosctl{Repository: "siderolabs/talosctl-all", Files: []release.TalosctlFile{}}, none)
		})
	}

	t.Run("unreachable registry", func(t *testing.T) {
		_, err := release.Source{Registry: "127.0.0.1:1"}.ReadTalosctl(t.Context(), "v1.13.0", nil)
		require.ErrorContains(t, err, "read siderolabs/talosctl-all:v1.13.0")
	})

	t.Run("bad version", func(t *testing.T) {
		_, err := src.ReadTalosctl(t.Context(), "latest", nil)
		require.ErrorContains(t, err, `read talosctl of "latest"`)
	})
}

// TestReadTalosctlLayout: only root files named talosctl-<os>-<arch>[.exe] of the flattened image count (later layers
// replace and remove files), and a single-architecture image is read as it is.
func TestReadTalosctlLayout(t *testing.T) {
	srv := startRelease(t)

	first, err := crane.Layer(map[string][]byte{
		"talosctl-linux-amd64":          []byte("first"),
		"talosctl-linux-arm64":          []byte("removed below"),
		"talosctl-darwin-arm64":         []byte("kept"),
		"README":                        []byte("not a binary"),
		"talosctl-with-three-parts-x":   []byte("another shape"),
		"talosctl-linux":                []byte("another shape"),
		"bin/talosctl-linux-riscv64":    []byte("not at the root"),
		"talosctl-windows-amd64.exe.sh": []byte("another shape"),
	})
	require.NoError(t, err)

	second, err := crane.Layer(map[string][]byte{
		"talosctl-linux-amd64":     []byte("second"),
		".wh.talosctl-linux-arm64": nil,
	})
	require.NoError(t, err)

	img, err := mutate.AppendLayers(empty.Image, first, second)
	require.NoError(t, err)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	require.NoError(t, err)

	ref, err := name.ParseReference(srv.Addr + "/siderolabs/talosctl-all:v1.14.0")
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img))

	digest, err := img.Digest()
	require.NoError(t, err)

	got, err := release.Source{Registry: srv.Addr}.ReadTalosctl(t.Context(), "v1.14.0", nil)
	require.NoError(t, err)
	require.Equal(t, &release.Talosctl{
		Repository: "siderolabs/talosctl-all",
		Tag:        digest.String(),
		Image:      digest.String(),
		Files: []release.TalosctlFile{
			{Name: "talosctl-darwin-arm64", Size: 4, Digest: fileDigest([]byte("kept"))},
			{Name: "talosctl-linux-amd64", Size: 6, Digest: fileDigest([]byte("second"))},
		},
	}, got)
}

func TestIsTalosctlName(t *testing.T) {
	for name, want := range map[string]bool{
		"talosctl-linux-amd64":       true,
		"talosctl-linux-armv7":       true,
		"talosctl-windows-arm64.exe": true,
		"talosctl-linux":             false,
		"talosctl-linux-amd64-v2":    false,
		"talosctl-linux-amd64.sh":    false,
		"talosctl-Linux-amd64":       false,
		"talosctl-/-amd64":           false,
		"../talosctl-linux-amd64":    false,
		"talosctl":                   false,
	} {
		require.Equal(t, want, release.IsTalosctlName(name), name)
	}
}
