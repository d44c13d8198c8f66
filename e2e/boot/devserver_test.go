//go:build boot

package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// devServer is a running `edgefactory dev`. Unlike e2e.StartDev it is not tied to one test: the ISO, UKI and disk
// tests share one (TestMain stops it), so the extension and release inputs are fetched once.
type devServer struct {
	URL  string
	cmd  *exec.Cmd
	logs *e2e.SyncBuffer
	data string
	done chan struct{}
}

// suiteTemp holds what the suite shares between tests (the binary, the shared server's data); TestMain removes it.
var suiteTemp = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "edgefactory-boot-") })

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// binary builds cmd/edgefactory once per run.
func binary(repo string) (string, error) {
	binaryOnce.Do(func() {
		dir, err := suiteTemp()
		if err != nil {
			binaryErr = err

			return
		}

		binaryPath = filepath.Join(dir, "edgefactory")
		cmd := exec.Command("go", "build", "-o", binaryPath, "./cmd/edgefactory")
		cmd.Dir = repo

		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("go build ./cmd/edgefactory: %w\n%s", err, out)
		}
	})

	return binaryPath, binaryErr
}

// startDev runs `edgefactory dev --listen listen --data <new dir under dataRoot>` plus extraArgs, with the parts
// the suite checked, and waits until it is ready (Raft leader and release catalog read).
func startDev(repo, dataRoot, listen string, extraArgs ...string) (*devServer, error) {
	bin, err := binary(repo)
	if err != nil {
		return nil, err
	}

	data, err := os.MkdirTemp(dataRoot, "data-")
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}

	d := &devServer{URL: "http://" + listen, logs: &e2e.SyncBuffer{}, data: data, done: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"dev", "--listen", listen, "--data", data}, extraArgs...)...)
	d.cmd.Stdout = d.logs
	d.cmd.Stderr = d.logs
	d.cmd.Env = append(os.Environ(), "EDGEFACTORY_PARTS="+synthetic.DefaultPartsDir())

	if os.Getenv("EDGEFACTORY_MKSQUASHFS") == "" {
		d.cmd.Env = append(d.cmd.Env,
			"EDGEFACTORY_MKSQUASHFS="+filepath.Join(repo, "build/hosttools/squashfs-tools/usr/bin/mksquashfs"))
	}

	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start edgefactory dev: %w", err)
	}

	go func() {
		d.cmd.Wait() //nolint:errcheck // the logs say why it ended
		close(d.done)
	}()

	if err := d.waitReady(60 * time.Second); err != nil {
		d.Stop()

		return nil, fmt.Errorf("%w\nedgefactory dev logs:\n%s", err, d.Logs())
	}

	return d, nil
}

func (d *devServer) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)

	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return errors.New("edgefactory dev exited before it was ready")
		default:
		}

		resp, err := http.Get(d.URL + "/readyz")
		if err == nil {
			resp.Body.Close()

			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}

		time.Sleep(100 * time.Millisecond)
	}

	return fmt.Errorf("edgefactory dev not ready within %s", limit)
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and removes its data.
func (d *devServer) Stop() {
	d.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited already

	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill() //nolint:errcheck // same
		<-d.done
	}

	os.RemoveAll(d.data) // a temporary directory
}

// Logs is the server's log output so far.
func (d *devServer) Logs() string { return d.logs.String() }

// logOnFailure prints the tail of the server's logs if t fails.
func (d *devServer) logOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			logs := d.Logs()
			if len(logs) > 32<<10 {
				logs = logs[len(logs)-32<<10:]
			}

			t.Logf("edgefactory dev logs (tail):\n%s", logs)
		}
	})
}

var shared struct {
	once sync.Once
	dev  *devServer
	err  error
}

// sharedDev is the `edgefactory dev` of the ISO, UKI and disk tests, started on first use.
func sharedDev(t *testing.T) *devServer {
	t.Helper()

	shared.once.Do(func() {
		root, err := suiteTemp()
		if err != nil {
			shared.err = err

			return
		}

		shared.dev, shared.err = startDev(e2e.RepoRoot(t), root, e2e.FreeAddr(t))
	})
	require.NoError(t, shared.err)
	require.NotNil(t, shared.dev, "the shared edgefactory dev did not start (see the first test that failed)")
	shared.dev.logOnFailure(t)

	return shared.dev
}

// stopShared stops the shared server (if started) and removes the suite's temporary files.
func stopShared() {
	if shared.dev != nil {
		shared.dev.Stop()
	}

	if dir, err := suiteTemp(); err == nil {
		os.RemoveAll(dir) // a temporary directory
	}
}

// bootSchematic asks for what every boot checks: an extra kernel argument and an extension.
const bootSchematic = `customization:
  extraKernelArgs:
    - ` + bootArg + `
  systemExtensions:
    officialExtensions:
      - siderolabs/` + bootExtension + `
`

const (
	bootArg       = "edgefactory.boot=1"
	bootExtension = "hello-world-service"
	talosVersion  = "v1.13.0"
)

// createSchematic posts yaml as a user would and returns the schematic ID.
func createSchematic(t *testing.T, base, yaml string) string {
	t.Helper()

	resp, err := http.Post(base+"/schematics", "application/yaml", strings.NewReader(yaml))
	require.NoError(t, err)

	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "POST /schematics: %s", body)

	var created struct {
		ID string `json:"id"`
	}

	require.NoError(t, json.Unmarshal(body, &created), "%s", body)
	require.Len(t, created.ID, 64)

	return created.ID
}

// download fetches /image/<id>/<version>/<path> into dir (the server builds it on the first request) and returns
// the file's path.
func download(t *testing.T, base, id, path, dir string) string {
	t.Helper()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	url := fmt.Sprintf("%s/image/%s/%s/%s", base, id, talosVersion, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)

	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)

	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)) // best effort, for the message
		require.Failf(t, "download failed", "GET %s: %s\n%s", url, resp.Status, body)
	}

	file := filepath.Join(dir, path)
	f, err := os.Create(file)
	require.NoError(t, err)

	n, err := io.Copy(f, resp.Body)
	require.NoError(t, err, "GET %s", url)
	require.NoError(t, f.Close())
	t.Logf("downloaded %s: %d bytes in %s", path, n, time.Since(start).Round(time.Millisecond))

	return file
}
