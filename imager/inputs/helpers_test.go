package inputs

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

const testVersion = "v1.13.0"

// testRegistry is an in-process OCI registry holding the synthetic release, counting the requests it serves and
// able to corrupt one blob on the wire.
type testRegistry struct {
	srv      *httptest.Server
	addr     string
	manifest *synthetic.Manifest
	requests atomic.Int64
	corrupt  atomic.Pointer[string]    // digest of a blob whose bytes are altered when served
	shape    atomic.Pointer[wireShape] // how blob bodies are sent; nil: as fast as possible
	stop     chan struct{}             // closed when the test ends: held responses give up
}

// wireShape slows or stalls the blob bodies the registry sends, as a slow or stuck upstream does.
type wireShape struct {
	blobs   []string      // digests shaped; none means every blob
	chunk   int           // bytes written at once
	pause   time.Duration // between chunks
	stallAt int64         // after this many bytes of a blob nothing more is sent; negative: never
	silent  bool          // not even a response header is sent
}

func (ws *wireShape) applies(digest string) bool {
	return ws != nil && digest != "" && (len(ws.blobs) == 0 || slices.Contains(ws.blobs, digest))
}

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request, next http.Handler) {
	r.requests.Add(1)

	var blob string
	if i := strings.LastIndex(req.URL.Path, "/blobs/"); req.Method == http.MethodGet && i >= 0 {
		blob = req.URL.Path[i+len("/blobs/"):]
	}

	d := r.corrupt.Load()
	corrupt := d != nil && blob == *d

	shape := r.shape.Load()
	if !shape.applies(blob) {
		shape = nil
	}

	if !corrupt && shape == nil {
		next.ServeHTTP(w, req)

		return
	}

	if shape != nil && shape.silent {
		r.hold(req)

		return
	}

	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, req)

	body := rec.Body.Bytes()
	if corrupt && len(body) > 0 {
		body[len(body)/2] ^= 0xff
	}

	for k, v := range rec.Header() {
		w.Header()[k] = v
	}

	w.WriteHeader(rec.Code)

	if shape == nil {
		w.Write(body) //nolint:errcheck // test server

		return
	}

	r.send(w, req, body, shape)
}

// send writes body as shape says, flushing each chunk so the client sees it arrive.
func (r *testRegistry) send(w http.ResponseWriter, req *http.Request, body []byte, shape *wireShape) {
	for off := 0; off < len(body); {
		if shape.stallAt >= 0 && int64(off) >= shape.stallAt {
			r.hold(req)

			return
		}

		end := min(off+shape.chunk, len(body))
		if shape.stallAt >= 0 {
			end = min(end, int(shape.stallAt))
		}

		if _, err := w.Write(body[off:end]); err != nil {
			return
		}

		http.NewResponseController(w).Flush() // test server
		off = end

		select {
		case <-time.After(shape.pause):
		case <-req.Context().Done():
			return
		case <-r.stop:
			return
		}
	}
}

// hold keeps a request unanswered until the client hangs up or the test ends.
func (r *testRegistry) hold(req *http.Request) {
	select {
	case <-req.Context().Done():
	case <-r.stop:
	}
}

var (
	partsOnce sync.Once
	parts     *synthetic.Parts
)

// realParts returns the parts `make deps` fetched, or skips: the boot files must be real systemd 257 binaries to
// pass the stub check.
func realParts(t *testing.T) *synthetic.Parts {
	t.Helper()

	partsOnce.Do(func() {
		p, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
		if err == nil {
			parts = p
		}
	})

	if parts == nil || !parts.Real() {
		t.Skipf("synthetic release parts missing in %s (run `make deps`): the stub check needs real systemd-boot-efi 257 files",
			synthetic.DefaultPartsDir())
	}

	return parts
}

// startRegistry serves the synthetic release (testVersion only) until the test ends or Close.
func startRegistry(t *testing.T) *testRegistry {
	t.Helper()

	p := realParts(t)
	r := &testRegistry{stop: make(chan struct{})}
	inner := registry.New(registry.Logger(slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.ServeHTTP(w, req, inner)
	}))
	t.Cleanup(r.srv.Close)
	t.Cleanup(func() { close(r.stop) }) // before Close, which waits for held responses
	r.addr = strings.TrimPrefix(r.srv.URL, "http://")

	m, err := synthetic.Push(context.Background(), r.addr, synthetic.Options{
		Parts: p, Versions: []string{testVersion}, Insecure: true,
	})
	require.NoError(t, err)

	r.manifest = m
	r.requests.Store(0)

	return r
}

func (r *testRegistry) source() release.Source {
	return release.Source{Registry: r.addr, Insecure: true}
}

// inputs are all the inputs of testVersion: imager, installer base, every extension and the overlay.
func (r *testRegistry) inputs(t *testing.T) recipe.Inputs {
	t.Helper()

	vi, ok := r.manifest.Version(testVersion)
	require.True(t, ok)

	in := recipe.Inputs{
		Imager:        recipe.Image{Repository: vi.Imager.Repository, Digest: vi.Imager.Digest, Tag: vi.Imager.Tag},
		InstallerBase: &recipe.Image{Repository: vi.InstallerBase.Repository, Digest: vi.InstallerBase.Digest},
		Overlay: &recipe.Overlay{
			Name:  synthetic.OverlayName,
			Image: recipe.Image{Repository: vi.Overlays[0].Repository, Digest: vi.Overlays[0].Digest},
		},
	}

	for _, e := range vi.Extensions {
		in.Extensions = append(in.Extensions, recipe.Image{Repository: e.Repository, Digest: e.Digest, Tag: e.Tag})
	}

	return in
}

func openStore(t *testing.T, dir string, src release.Source) *Store {
	t.Helper()

	s, err := Open(dir, src, testLogger(t))
	require.NoError(t, err)

	return s
}

// testLogger sends the store's logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))

	return len(p), nil
}

// requireNoTemp checks that no pull left anything in the store's temporary directory.
func requireNoTemp(t *testing.T, s *Store) {
	t.Helper()

	entries, err := os.ReadDir(s.tmpDir())
	require.NoError(t, err)
	require.Empty(t, entries, "temporary pull directories left behind")
}

func requireSameFile(t *testing.T, want []byte, path string) {
	t.Helper()

	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "%s differs from the expected %d bytes (has %d)", path, len(want), len(got))
}
