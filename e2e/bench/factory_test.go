package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// version is the Talos version of the synthetic release every benchmark asks for.
const version = "v1.13.0"

// sharedData is the data directory of every benchmark's server: each benchmark starts its own process (so memory
// readings start fresh), but an asset built for one benchmark is a cache hit for the next.
var sharedData string

func TestMain(m *testing.M) {
	if addr := os.Getenv(bareListenEnv); addr != "" { // started by bareServer
		err := serveBare(addr, os.Getenv(bareBodyEnv))
		fmt.Fprintln(os.Stderr, "bare server:", err)
		os.Exit(1)
	}

	dir, err := os.MkdirTemp("", "edgefactory-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: data directory:", err)
		os.Exit(1)
	}

	sharedData = dir
	code := m.Run()

	os.RemoveAll(dir) // temporary
	os.Exit(code)
}

// factory is a running `edgefactory dev` with one schematic (the empty customization).
type factory struct {
	*e2e.Dev
	data      string
	schematic string
	client    *http.Client
}

// startFactory skips under -short or without the real synthetic parts, and otherwise starts the server on the
// shared data directory with EDGEFACTORY_BENCH_DEV_ARGS appended (its --data wins over the harness's: for pflag the
// last occurrence of a flag counts).
func startFactory(b *testing.B) *factory {
	b.Helper()

	return startFactoryUnder(b, nil)
}

// startFactoryUnder is startFactory with the server started by launcher (see e2e.StartDevUnder) and flags added
// before EDGEFACTORY_BENCH_DEV_ARGS.
func startFactoryUnder(b *testing.B, launcher []string, flags ...string) *factory {
	b.Helper()

	skipUnlessFactory(b)

	args := append([]string{"--data", sharedData}, flags...)
	args = append(args, strings.Fields(os.Getenv("EDGEFACTORY_BENCH_DEV_ARGS"))...)
	f := &factory{Dev: e2e.StartDevUnder(b, launcher, args...), data: sharedData, client: newClient(64)}
	b.Cleanup(f.client.CloseIdleConnections)

	resp, err := f.client.Post(f.URL+"/schematics", "application/yaml", strings.NewReader("customization: {}\n"))
	require.NoError(b, err)

	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(b, err)
	require.Contains(b, []int{http.StatusOK, http.StatusCreated}, resp.StatusCode, "%s", body)

	const idField = `"id":"`
	i := strings.Index(string(body), idField)
	require.GreaterOrEqual(b, i, 0, "%s", body)
	f.schematic = string(body[i+len(idField) : i+len(idField)+64])

	return f
}

// skipUnlessFactory skips under -short or without the real synthetic parts.
func skipUnlessFactory(b *testing.B) {
	b.Helper()

	if testing.Short() {
		b.Skip("runs the binary and builds multi-GB assets; skipped with -short")
	}

	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	require.NoError(b, err)

	if !parts.Real() {
		b.Skipf("the synthetic release would be made of stand-ins (missing %v): run `make deps`", parts.Missing())
	}
}

// asset is one stored boot asset: its URL on the factory and its file in the factory's content-addressed store.
type asset struct {
	path string // URL path, e.g. /image/<id>/v1.13.0/metal-amd64.iso
	url  string
	size int64
	file string
}

// warm makes sure the factory has built the asset at name (a Range request of one byte: the first request of an
// asset builds it) and finds its stored file.
func (f *factory) warm(b *testing.B, name string) asset {
	b.Helper()

	a := asset{path: "/image/" + f.schematic + "/" + version + "/" + name}
	a.url = f.URL + a.path
	start := time.Now()

	req, err := http.NewRequest(http.MethodGet, a.url, nil)
	require.NoError(b, err)
	req.Header.Set("Range", "bytes=0-0")

	resp, err := f.client.Do(req)
	require.NoError(b, err)
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // one byte
	resp.Body.Close()
	require.Equal(b, http.StatusPartialContent, resp.StatusCode, "warm %s", name)

	// Content-Range: bytes 0-0/<size>
	cr := resp.Header.Get("Content-Range")
	a.size, err = strconv.ParseInt(cr[strings.LastIndexByte(cr, '/')+1:], 10, 64)
	require.NoError(b, err, "Content-Range %q", cr)

	hexDigest := resp.Header.Get("X-Content-Sha256")
	require.Len(b, hexDigest, 64)
	a.file = filepath.Join(f.data, "cas", "sha256", hexDigest[:2], hexDigest)

	info, err := os.Stat(a.file)
	require.NoError(b, err, "stored file of %s", name)
	require.Equal(b, a.size, info.Size())

	b.Logf("%s: %d bytes (%d allocated on disk), ready after %v", name, a.size, allocated(info),
		time.Since(start).Round(time.Millisecond))

	return a
}

// get fetches path from the factory and returns the body of a 200 answer.
func (f *factory) get(b *testing.B, path string) []byte {
	b.Helper()

	resp, err := f.client.Get(f.URL + path)
	require.NoError(b, err)

	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(b, err)
	require.Equal(b, http.StatusOK, resp.StatusCode, "GET %s: %s", path, body)

	return body
}

// newClient returns a client that keeps up to conns connections alive and never asks for compression (both sides
// send the stored bytes as they are).
func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
}

// allocated is the disk space a file occupies (far less than its size for the sparse raw image).
func allocated(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}

	return info.Size()
}
