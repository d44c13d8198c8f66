package node_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestStateSurvivesRestart creates a schematic, stops the node and starts a new one on the same data directory:
// the schematic and the catalog are read back from disk (Raft log, snapshots and state.db), not rebuilt.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	reg := upstream(t)

	first := startReady(t, testConfig(t, dir, reg))
	resp := first.do(t, "POST", "/schematics", `{"customization":{"extraKernelArgs":["console=ttyS1"]}}`, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
	id := resp.Body[len(`{"id":"`) : len(`{"id":"`)+64]
	first.stop()

	// The upstream is gone on the second start: the catalog must come from the replicated state.
	cfg := testConfig(t, dir, unreachableRegistry(t))
	second := start(t, cfg)

	got := second.do(t, "GET", "/schematics/"+id, "", nil)
	require.Equal(t, http.StatusOK, got.StatusCode)
	assert.Equal(t, "customization:\n    extraKernelArgs:\n        - console=ttyS1\n", got.Body)
	require.Eventually(t, func() bool {
		return second.do(t, "GET", "/readyz", "", nil).StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, `["v1.12.0","v1.13.0"]`+"\n", second.do(t, "GET", "/versions", "", nil).Body)
}

// TestNotReadyUntilCatalogRead: with an unreachable upstream a fresh node is alive but not ready, and says why.
func TestNotReadyUntilCatalogRead(t *testing.T) {
	n := start(t, testConfig(t, t.TempDir(), unreachableRegistry(t)))

	assert.Equal(t, http.StatusOK, n.do(t, "GET", "/healthz", "", nil).StatusCode)

	require.Eventually(t, func() bool {
		resp := n.do(t, "GET", "/readyz", "", nil)

		return resp.StatusCode == http.StatusServiceUnavailable &&
			strings.Contains(resp.Body, "release catalog not read yet from") &&
			strings.Contains(resp.Body, "connection refused")
	}, 10*time.Second, 50*time.Millisecond)

	assert.Equal(t, "[]\n", n.do(t, "GET", "/versions", "", nil).Body)
}

// unreachableRegistry returns a loopback address nothing listens on.
func unreachableRegistry(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	return addr
}

// TestStopDuringDownload: a node stopped while a client is in the middle of a large download lets it run for the
// drain time, then cuts it and stops cleanly (a stop is not a failure: systemd must not report one).
func TestStopDuringDownload(t *testing.T) {
	r := startReady(t, node.WithDrain(testConfig(t, t.TempDir(), realUpstream(t)), time.Second))
	id := r.createSchematic(t, `customization: {extraKernelArgs: [stop-during-download]}`)
	path := "/image/" + id + "/v1.13.0/metal-amd64.iso"
	require.True(t, fetchURL(http.DefaultClient, r.base+path).complete(), "build")

	resp, err := http.Get(r.base + path)
	require.NoError(t, err)

	defer resp.Body.Close()

	_, err = io.CopyN(io.Discard, resp.Body, 1<<20) // a slow client: it has read a little and waits
	require.NoError(t, err)

	start := time.Now()
	r.stop() // fails the test if Run returns an error
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "the download had the drain time to finish")

	_, err = io.Copy(io.Discard, resp.Body)
	assert.Error(t, err, "the download was cut, not completed")
}

// TestRaftStateIsPrivate: the Raft log, its snapshots and the state file (state.db, the same keys) carry the
// cluster's private signing keys; whatever the umask and whatever an older version left, only the node's own user
// can reach them.
//
// Shown to fail (docs/test-evidence.md): without the chmod in raftstore.openStateDB, state.db keeps the 0666 an
// older version left ("expected: 0x180, actual: 0x1b6", that is 0600 and 0666).
func TestRaftStateIsPrivate(t *testing.T) {
	old := syscall.Umask(0) // the widest: nothing the node creates is narrowed for it
	t.Cleanup(func() { syscall.Umask(old) })

	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "raft"), 0o755)) // as an older version made it

	private := func(stage string) {
		t.Helper()

		for path, want := range map[string]os.FileMode{"raft": 0o700, "state.db": 0o600} {
			info, err := os.Stat(filepath.Join(dir, path))
			require.NoError(t, err)
			assert.Equal(t, want, info.Mode().Perm(), "%s: %s", stage, path)
		}
	}

	n := startReady(t, testConfig(t, dir, upstream(t)))
	private("a fresh node, umask 0")
	n.stop()

	require.NoError(t, os.Chmod(filepath.Join(dir, "raft"), 0o777))
	require.NoError(t, os.Chmod(filepath.Join(dir, "state.db"), 0o666))

	startReady(t, testConfig(t, dir, upstream(t)))
	private("restarted over wide modes")
}
