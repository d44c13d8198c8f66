package inputs

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// TestPullLogsProgress: a pull slowed on the wire says how far it is while it runs (bytes received of the total),
// for extracted boot files and for layouts alike, and still completes with verified bytes.
func TestPullLogsProgress(t *testing.T) {
	reg := startRegistry(t)
	vi, _ := reg.manifest.Version(testVersion)
	setDuration(t, &progressInterval, 10*time.Millisecond)

	// About 25 MB/s per blob: the imager's layers take about a second, the installer base some 50 ms.
	reg.shape.Store(&wireShape{chunk: 128 << 10, pause: 5 * time.Millisecond, stallAt: -1})

	log, logs := captureLogs(t)
	s, err := Open(t.TempDir(), reg.source(), log)
	require.NoError(t, err)

	in := recipe.Inputs{
		Imager:        recipe.Image{Repository: vi.Imager.Repository, Digest: vi.Imager.Digest},
		InstallerBase: &recipe.Image{Repository: vi.InstallerBase.Repository, Digest: vi.InstallerBase.Digest},
	}

	paths, err := s.Fetch(context.Background(), in, "amd64")
	require.NoError(t, err)

	requireSameFile(t, realParts(t).File("amd64", "vmlinuz"), paths.Kernel)
	requireSameFile(t, realParts(t).File("amd64", "systemd-stub.efi"), paths.SDStub)
	requireValidLayout(t, paths.BaseInstaller)

	records := logs.records(t)

	for _, input := range []string{"imager", "installer base"} {
		pulled := slices.IndexFunc(records, func(r map[string]any) bool {
			return r["msg"] == "pulled input" && r["input"] == input
		})
		require.NotEqual(t, -1, pulled, "no %q line for %s", "pulled input", input)

		var counted int

		for _, r := range records[:pulled] {
			if r["msg"] != "pull progress" || r["input"] != input {
				continue
			}

			received, _ := r["received"].(float64)
			total, _ := r["total"].(float64)
			require.LessOrEqual(t, received, total, "%s: %v", input, r)
			require.Contains(t, r, "rate")
			require.Contains(t, r["ref"], reg.addr+"/")

			if received > 0 {
				counted++
			}
		}

		require.Positive(t, counted, "no progress line with bytes received for %s before it was pulled", input)
	}
}

// TestPullAbandonsStall: a registry that stops sending (part of a blob, then nothing; or no answer at all) fails
// the pull within seconds with an error naming the image, the registry and the silence, not at PullTimeout; and
// nothing of it is kept, so the next pull from a healthy registry succeeds.
func TestPullAbandonsStall(t *testing.T) {
	reg := startRegistry(t)
	vi, _ := reg.manifest.Version(testVersion)
	setDuration(t, &progressInterval, 100*time.Millisecond)
	setDuration(t, &stallTimeout, time.Second)

	imager := recipe.Image{Repository: vi.Imager.Repository, Digest: vi.Imager.Digest}
	extension := recipe.Image{Repository: vi.Extensions[0].Repository, Digest: vi.Extensions[0].Digest}
	imagerLayer := largestLayer(t, reg, vi.Imager.Repository, vi.Imager.Platforms["amd64"])
	extensionLayer := largestLayer(t, reg, extension.Repository, vi.Extensions[0].Platforms["amd64"])

	tests := []struct {
		name    string
		in      recipe.Inputs
		stalled recipe.Image
		what    string
		shape   wireShape
	}{
		{
			name: "imager layer: 1 MiB, then nothing", in: recipe.Inputs{Imager: imager}, stalled: imager, what: "imager",
			shape: wireShape{blobs: []string{imagerLayer.Digest.String()}, chunk: 64 << 10, stallAt: 1 << 20},
		},
		{
			name: "imager layer: no answer at all", in: recipe.Inputs{Imager: imager}, stalled: imager, what: "imager",
			shape: wireShape{blobs: []string{imagerLayer.Digest.String()}, silent: true},
		},
		{
			name:    "extension layer: part, then nothing",
			in:      recipe.Inputs{Imager: imager, Extensions: []recipe.Image{extension}},
			stalled: extension, what: "extension " + extension.Repository,
			shape: wireShape{blobs: []string{extensionLayer.Digest.String()}, chunk: 64, stallAt: extensionLayer.Size / 2},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), reg.source())

			reg.shape.Store(&tc.shape)
			defer reg.shape.Store(nil)

			// Far above the stall timeout, far below PullTimeout: a pull that only the overall bound stops fails here.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			_, err := s.Fetch(ctx, tc.in, "amd64")

			require.Error(t, err)
			require.NotErrorIs(t, err, context.DeadlineExceeded)

			var stall *StallError
			require.ErrorAs(t, err, &stall)
			require.GreaterOrEqual(t, stall.Idle, stallTimeout)
			require.ErrorContains(t, err, tc.what+" "+reg.addr+"/"+tc.stalled.Repository+"@"+tc.stalled.Digest+": ")
			require.ErrorContains(t, err, "no bytes from the registry "+reg.addr+" for 1.")
			require.Positive(t, stall.Received)
			require.Greater(t, stall.Total, stall.Received)

			// Nothing of the stalled input is kept, complete or not.
			require.NoDirExists(t, filepath.Join(s.Dir(), "sha256", strings.TrimPrefix(tc.stalled.Digest, "sha256:")))
			requireNoTemp(t, s)

			// The registry recovered: the same store pulls it whole.
			reg.shape.Store(nil)

			paths, err := s.Fetch(context.Background(), tc.in, "amd64")
			require.NoError(t, err)
			requireSameFile(t, realParts(t).File("amd64", "vmlinuz"), paths.Kernel)

			for _, x := range paths.Extensions {
				requireValidLayout(t, x.OCIPath)
			}
		})
	}
}

func setDuration(t *testing.T, v *time.Duration, d time.Duration) {
	t.Helper()

	old := *v
	*v = d

	t.Cleanup(func() { *v = old })
}

// largestLayer is the descriptor of the largest layer of the image repo@digest in reg.
func largestLayer(t *testing.T, reg *testRegistry, repo, digest string) v1.Descriptor {
	t.Helper()

	ref, err := name.NewDigest(reg.addr+"/"+repo+"@"+digest, name.Insecure)
	require.NoError(t, err)

	img, err := remote.Image(ref)
	require.NoError(t, err)

	m, err := img.Manifest()
	require.NoError(t, err)
	require.NotEmpty(t, m.Layers)

	return slices.MaxFunc(m.Layers, func(a, b v1.Descriptor) int { return int(a.Size - b.Size) })
}

// requireValidLayout reads every blob of every image of the OCI layout in dir and checks it against its digest.
func requireValidLayout(t *testing.T, dir string) {
	t.Helper()

	idx, err := layout.ImageIndexFromPath(dir)
	require.NoError(t, err)

	im, err := idx.IndexManifest()
	require.NoError(t, err)
	require.NotEmpty(t, im.Manifests)

	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		require.NoError(t, err)
		require.NoError(t, validate.Image(img), "%s in %s", m.Digest, dir)
	}
}

// logCapture keeps a store's log records (as JSON lines) for the test to read, and echoes them to the test log
// while the test runs.
type logCapture struct {
	t     *testing.T
	mu    sync.Mutex
	buf   bytes.Buffer
	ended bool
}

func captureLogs(t *testing.T) (*slog.Logger, *logCapture) {
	c := &logCapture{t: t}
	t.Cleanup(func() {
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
	})

	return slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), c
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.buf.Write(p)

	if !c.ended {
		c.t.Log(strings.TrimRight(string(p), "\n"))
	}

	return len(p), nil
}

func (c *logCapture) records(t *testing.T) []map[string]any {
	t.Helper()

	c.mu.Lock()
	defer c.mu.Unlock()

	var out []map[string]any

	for line := range strings.SplitSeq(strings.TrimSpace(c.buf.String()), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)

		out = append(out, r)
	}

	return out
}
