package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeCluster runs the README's three-member cluster, as written, on a machine without internet: the
// synthetic registry, the three members, the wait for readiness and `status`. It runs in a directory of its own
// (bin/ and build/ linked to the repository's), so ./data is fresh, and everything it started is stopped after.
func TestReadmeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four processes of the binary; skipped with -short")
	}

	blocks := readmeBlocks(t, "### A cluster")
	require.Len(t, blocks, 1, "the cluster section has one block of commands")

	dir := readmeDir(t)
	require.NoError(t, os.Symlink(filepath.Join(RepoRoot(t), "build"), filepath.Join(dir, "build")))

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", blocks[0])
	cmd.Dir = dir
	// Its own process group, so the members it leaves running in the background are stopped with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	// A file, not a pipe: the members it leaves running keep their output open after the script ends.
	out, err := os.Create(filepath.Join(dir, "output"))
	require.NoError(t, err)

	defer out.Close()

	cmd.Stdout, cmd.Stderr = out, out

	// The members and the registry stop as on SIGTERM (a member leaves the cluster); the test waits for them, so
	// their ports are free for whatever runs next.
	t.Cleanup(func() {
		if cmd.Process == nil {
			return
		}

		group := -cmd.Process.Pid
		syscall.Kill(group, syscall.SIGTERM) //nolint:errcheck // already gone is fine

		for deadline := time.Now().Add(20 * time.Second); syscall.Kill(group, 0) == nil; {
			if time.Now().After(deadline) {
				syscall.Kill(group, syscall.SIGKILL) //nolint:errcheck // idem

				break
			}

			time.Sleep(100 * time.Millisecond)
		}
	})

	err = cmd.Run()
	raw, _ := os.ReadFile(out.Name())
	text := string(raw)
	require.NoError(t, err, "the README's cluster example failed:\n%s", text)

	assert.Contains(t, text, "ring v")
	assert.Contains(t, text, ": 3 members,", "status lists three members in the ring:\n%s", text)
	assert.NotContains(t, text, "leader NONE", text)

	for _, name := range []string{"n1", "n2", "n3"} {
		assert.Contains(t, text, name, "status names %s", name)
	}
}

// readmeDir is a directory of its own for README commands that name bin/edgefactory: bin/ holds a link to the
// binary the tests built.
func readmeDir(t *testing.T) string {
	t.Helper()

	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.Symlink(Binary(t), filepath.Join(dir, "bin", "edgefactory")))

	return dir
}
