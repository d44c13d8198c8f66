package e2e

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds bin/edgefactory once per test run, into a temporary directory.
func binary(t *testing.T) string {
	t.Helper()

	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edgefactory-e2e-")
		if err != nil {
			buildErr = err

			return
		}

		binPath = filepath.Join(dir, "edgefactory")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/edgefactory")
		cmd.Dir = repoRoot(t)

		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
	})

	require.NoError(t, buildErr)

	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func repoRoot(t *testing.T) string {
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

// devServer is a running `edgefactory dev`.
type devServer struct {
	addr string
	logs *bytes.Buffer
}

// rewrite points README commands (written for 127.0.0.1:8080) at this server.
func (d *devServer) rewrite(s string) string {
	return strings.ReplaceAll(s, "127.0.0.1:8080", d.addr)
}

// startDev runs `edgefactory dev` on a free port with its own data directory until the test ends, and waits until
// it is ready.
func startDev(t *testing.T, extraArgs ...string) *devServer {
	t.Helper()

	addr := freeAddr(t)
	logs := &bytes.Buffer{}
	args := append([]string{"dev", "--listen", addr, "--data", t.TempDir()}, extraArgs...)
	cmd := exec.Command(binary(t), args...)
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
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}

		resp.Body.Close()

		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "edgefactory dev never became ready")

	return &devServer{addr: addr, logs: logs}
}

func freeAddr(t *testing.T) string {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	return addr
}
