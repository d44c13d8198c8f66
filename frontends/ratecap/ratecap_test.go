package ratecap_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends/ratecap"
)

// serve starts a server of a file (through http.ServeContent, as the asset routes do: sendfile) and of generated
// bytes (plain writes) behind a limiter of caps; /_peer/ is exempt.
func serve(t testing.TB, caps ratecap.Caps, size int) (*httptest.Server, []byte) {
	t.Helper()

	data := bytes.Repeat([]byte{'e'}, size)
	path := filepath.Join(t.TempDir(), "asset")
	require.NoError(t, os.WriteFile(path, data, 0o600))

	lim := ratecap.New(caps, func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/_peer/") })
	file := func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)

			return
		}
		defer f.Close()

		http.ServeContent(w, r, "asset", time.Time{}, f)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/file", file)
	mux.HandleFunc("/_peer/file", file)
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, _ *http.Request) {
		w.Write(data) //nolint:errcheck // the client's problem
	})

	srv := httptest.NewServer(lim.Middleware(mux))
	t.Cleanup(srv.Close)

	return srv, data
}

// download fetches url and returns how long it took.
func download(t testing.TB, url string, want []byte) time.Duration {
	t.Helper()

	start := time.Now()

	resp, err := http.Get(url)
	require.NoError(t, err)

	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, bytes.Equal(want, got), "the capped response differs from the file")

	return time.Since(start)
}

// floor is the least time size bytes can take at rate with one burst up front: the cap's promise.
func floor(size int, rate int64) time.Duration {
	return time.Duration(float64(size-ratecap.Burst) / float64(rate) * float64(time.Second))
}

func TestClientCap(t *testing.T) {
	const (
		size = 4 << 20
		cap  = 8 << 20 // 0.5 s for the file
	)

	srv, data := serve(t, ratecap.Caps{Client: cap}, size)

	for _, path := range []string{"/file", "/bytes"} {
		took := download(t, srv.URL+path, data)
		assert.GreaterOrEqual(t, took, floor(size, cap), "%s: faster than the client's cap", path)
	}

	// Two downloads at once from one address share its cap.
	assert.GreaterOrEqual(t, downloadAtOnce(t, 2, srv.URL+"/file", data), floor(2*size, cap),
		"two downloads from one address exceed its cap")

	// The members' copies are not slowed: the same file through an exempt path beats the cap's floor by far.
	assert.Less(t, download(t, srv.URL+"/_peer/file", data), floor(size, cap)/2, "an exempt response was capped")
}

func TestMemberCap(t *testing.T) {
	const (
		size = 2 << 20
		cap  = 8 << 20
	)

	srv, data := serve(t, ratecap.Caps{Member: cap}, size)

	assert.GreaterOrEqual(t, downloadAtOnce(t, 3, srv.URL+"/file", data), floor(3*size, cap),
		"all clients together exceed the member's cap")
}

// downloadAtOnce runs n downloads of url at once and returns how long they took together.
func downloadAtOnce(t *testing.T, n int, url string, want []byte) time.Duration {
	t.Helper()

	var wg sync.WaitGroup

	start := time.Now()

	for range n {
		wg.Go(func() { download(t, url, want) })
	}

	wg.Wait()

	return time.Since(start)
}

type handler struct{ name string }

func (handler) ServeHTTP(http.ResponseWriter, *http.Request) {}

func TestUncappedIsUntouched(t *testing.T) {
	h := &handler{"next"}

	assert.Same(t, h, ratecap.New(ratecap.Caps{}, nil).Middleware(h), "no caps: no middleware")
	_, same := ratecap.New(ratecap.Caps{Member: 1}, nil).Middleware(h).(*handler)
	assert.False(t, same, "a cap: a middleware")
}

// BenchmarkClientCap reports what one client over its cap receives, against the cap (50 MiB/s; a 64 MiB file sent
// with sendfile): held-to-cap near 1.0 means the cap holds and costs the client nothing under it.
func BenchmarkClientCap(b *testing.B) {
	const (
		size = 64 << 20
		cap  = 50 << 20
	)

	srv, data := serve(b, ratecap.Caps{Client: cap}, size)

	var took time.Duration

	for b.Loop() {
		took += download(b, srv.URL+"/file", data)
	}

	rate := float64(size) * float64(b.N) / took.Seconds()
	b.ReportMetric(rate/(1<<20), "MiB/s")
	b.ReportMetric(rate/cap, "held-to-cap")
}
