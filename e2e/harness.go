// Package e2e holds black-box tests of the edgefactory binary (they build it, run it as a user would, and talk to
// it over the network only) and the harness other end-to-end suites (e2e/boot, e2e/netns, benchmarks) share.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds bin/edgefactory once per test run, into a temporary directory.
func Binary(t testing.TB) string {
	t.Helper()

	buildOnce.Do(func() {
		// One stable path under build/ (no temporary directories left behind); built beside it and renamed into
		// place, so suites running in parallel never execute a half-written binary.
		dir := filepath.Join(RepoRoot(t), "build", "e2e")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err

			return
		}

		binPath = filepath.Join(dir, "edgefactory")
		tmp := fmt.Sprintf("%s.%d", binPath, os.Getpid())
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", tmp, "./cmd/edgefactory")
		cmd.Dir = RepoRoot(t)

		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{out: string(out), err: err}

			return
		}

		buildErr = os.Rename(tmp, binPath)
	})

	require.NoError(t, buildErr)

	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func RepoRoot(t testing.TB) string {
	t.Helper()

	dir, err := os.Getwd()
	require.NoError(t, err)

	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}

		parent := filepath.Dir(dir)
		require.NotEqual(t, parent, dir, "go.mod not found")
		dir = parent
	}
}

// Dev is a running `edgefactory dev`.
type Dev struct {
	// Addr is the listener (127.0.0.1:port), URL its http:// form.
	Addr, URL string
	// PID is the server's process ID (for resident-memory measurements).
	PID  int
	logs *SyncBuffer
}

// Rewrite points README commands (written for 127.0.0.1:8080) at this server.
func (d *Dev) Rewrite(s string) string {
	return strings.ReplaceAll(s, "127.0.0.1:8080", d.Addr)
}

// StartDev runs `edgefactory dev` on a free port with its own data directory until the test ends, and waits until
// it is ready. extraArgs are added to the command line (e.g. --external-url).
func StartDev(t testing.TB, extraArgs ...string) *Dev {
	t.Helper()

	return StartDevUnder(t, nil, extraArgs...)
}

// StartDevUnder is StartDev with the server started by a launcher command that execs it in its own place (e.g.
// "taskset -c 0", which pins it to CPU 0), so PID is still the server's.
func StartDevUnder(t testing.TB, launcher []string, extraArgs ...string) *Dev {
	t.Helper()

	addr := FreeAddr(t)
	logs := &SyncBuffer{}
	args := append([]string{"dev", "--listen", addr, "--data", t.TempDir()}, extraArgs...)
	if os.Getenv("EDGEFACTORY_MKSQUASHFS") == "" {
		t.Setenv("EDGEFACTORY_MKSQUASHFS", filepath.Join(RepoRoot(t), "build/hosttools/squashfs-tools/usr/bin/mksquashfs"))
	}

	argv := append(slices.Clone(launcher), Binary(t))
	// Stopped with SIGTERM by the cleanup below: t.Context() ends before cleanups run and would SIGKILL it.
	cmd := exec.Command(argv[0], append(argv[1:], args...)...) //nolint:noctx // stopped by the cleanup, see above
	cmd.Stdout = logs
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())

	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have died already; Wait tells
		cmd.Wait()                          //nolint:errcheck // exit status after SIGTERM is not the point

		if t.Failed() {
			t.Logf("edgefactory dev logs:\n%s", logs)
		}
	})

	require.Eventually(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/readyz", nil)
		if err != nil {
			return false
		}

		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}

		resp.Body.Close()

		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "edgefactory dev never became ready")

	return &Dev{Addr: addr, URL: "http://" + addr, PID: cmd.Process.Pid, logs: logs}
}

// FreeAddr returns a loopback address with a port nothing listens on (yet).
func FreeAddr(t testing.TB) string {
	t.Helper()

	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)

	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	return addr
}

// Logs is what the server has printed so far.
func (d *Dev) Logs() string { return d.logs.String() }

// CreateSchematic posts a schematic to the server and returns its ID.
func (d *Dev) CreateSchematic(t testing.TB, body string) string {
	t.Helper()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, d.URL+"/schematics", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/yaml")

	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)

	defer resp.Body.Close()

	require.Equal(t, http.StatusCreated, resp.StatusCode)

	var created struct{ ID string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))

	return created.ID
}

// RequireBuilds skips a test that builds boot assets where it cannot: under -short, or without the real parts of
// the synthetic release (`make deps` fetches them), or without the named host commands.
func RequireBuilds(t testing.TB, commands ...string) {
	t.Helper()

	if testing.Short() {
		t.Skip("builds boot assets with the binary; skipped with -short")
	}

	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s is not installed (make deps)", c)
		}
	}

	if parts, _ := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil); !parts.Real() {
		t.Skip("synthetic release parts missing: run `make deps`")
	}
}

// SyncBuffer collects a process's output: the process writes while the test may read.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}
