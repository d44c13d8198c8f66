package node_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
	"github.com/edgefactory/edgefactory/node"
)

// running is a node started by a test, with its own data dir and ports, driven over real HTTP.
type running struct {
	*node.Node
	base string
	stop func()
}

// upstream starts an in-process registry on loopback holding the synthetic release.
func upstream(t testing.TB) string {
	t.Helper()

	return synthetictest.StartRegistry(t, synthetic.Options{Parts: synthetic.StandInParts()})
}

// testConfig is a one-node configuration reading registry, with state in dataDir.
func testConfig(t testing.TB, dataDir, registry string) node.Config {
	t.Helper()

	cfg := node.Defaults()
	cfg.NodeName = "test-node"
	cfg.Listen = "127.0.0.1:0"
	cfg.RaftListen = "127.0.0.1:0"
	cfg.GossipListen = "127.0.0.1:0"
	cfg.DataDir = dataDir
	cfg.Upstream.Registry = registry
	cfg.Upstream.Insecure = true
	cfg.Logger = testLogger(t)
	cfg.SecureBootKeyBits = 2048
	cfg.InputPublicKeys = [][]byte{synthetic.PublicKeyPEM()} // the synthetic release's signatures verify

	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("EDGEFACTORY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	return slog.New(slog.DiscardHandler)
}

// start runs a node until the test ends (or stop is called) and waits until it answers /healthz.
func start(t testing.TB, cfg node.Config) *running {
	t.Helper()

	n, err := node.New(cfg)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	go func() { done <- n.Run(ctx) }()

	r := &running{Node: n, base: "http://" + n.Addr()}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}

		stopped = true

		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(r.stop)

	require.Eventually(t, func() bool {
		resp, err := http.Get(r.base + "/healthz")
		if err != nil {
			return false
		}

		resp.Body.Close()

		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)

	return r
}

// startReady starts a node and waits until /readyz says it has a leader and a catalog.
func startReady(t testing.TB, cfg node.Config) *running {
	t.Helper()

	r := start(t, cfg)
	require.Eventually(t, func() bool {
		return r.do(t, "GET", "/readyz", "", nil).StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "node never became ready")

	return r
}

type response struct {
	StatusCode int
	Header     http.Header
	Body       string
}

// do sends one request and reads the whole answer.
func (r *running) do(t testing.TB, method, path, body string, header map[string]string) response {
	t.Helper()

	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}

	req, err := http.NewRequest(method, r.base+path, rd)
	require.NoError(t, err)

	for k, v := range header {
		req.Header.Set(k, v)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := client.Do(req)
	require.NoError(t, err)

	defer resp.Body.Close()

	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	return response{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(data)}
}

// repoFile returns the absolute path of a file in the repository.
func repoFile(t testing.TB, rel string) string {
	t.Helper()

	dir, err := os.Getwd()
	require.NoError(t, err)

	for {
		if _, err := os.Stat(dir + "/go.mod"); err == nil {
			return dir + "/" + rel
		}

		parent := dir[:strings.LastIndex(dir, "/")]
		require.NotEqual(t, parent, dir, "go.mod not found")
		dir = parent
	}
}
