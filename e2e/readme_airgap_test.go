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

// TestReadmeAirGap runs the README's air-gapped site, as written: mirror from the synthetic registry into a bundle,
// a member that is its own upstream, import, warm, and the registry mirror patch. It runs in a directory of its own
// (bin/ and build/ linked to the repository's), and everything it started is stopped after.
func TestReadmeAirGap(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary, a mirror and an import; skipped with -short")
	}

	blocks := ReadmeBlocks(t, "### An air-gapped site", "sh")
	require.Len(t, blocks, 1, "the section has one block of commands")

	dir := readmeDir(t)
	require.NoError(t, os.Symlink(filepath.Join(RepoRoot(t), "build"), filepath.Join(dir, "build")))

	text, err := runReadmeBlock(t, dir, blocks[0], 5*time.Minute)
	require.NoError(t, err, "the README's air-gapped site failed:\n%s", text)

	assert.Contains(t, text, "mirrored ")
	assert.Regexp(t, `imported \d+ images: \d+ blobs`, text)
	assert.Contains(t, text, "and the iPXE binaries (3 files", "the bundle carries them")
	assert.Contains(t, text, "imported the iPXE binaries (3 files, trixie all ipxe", "the import says so")
	assert.Regexp(t, `warm: v1\.13\.0 metal-amd64\.iso \([^)]+\) built or found by http://127\.0\.0\.1:8090`, text)
	assert.Regexp(t, `warm: v1\.13\.0 installer \([^)]+\) built or found by`, text)
	assert.Contains(t, text, "kind: RegistryMirrorConfig")
	assert.Contains(t, text, "name: registry.k8s.io")
	assert.Contains(t, text, "url: http://127.0.0.1:8090")
}

// runReadmeBlock runs a README block with bash in dir, in a process group of its own that is stopped (as by
// SIGTERM, then killed) when the test ends, so members it leaves running in the background do not outlive it. It
// returns everything the block wrote.
func runReadmeBlock(t *testing.T, dir, block string, timeout time.Duration) (string, error) {
	t.Helper()

	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	// A file, not a pipe: the processes it leaves running keep their output open after the block ends.
	out, err := os.Create(filepath.Join(dir, "output"))
	require.NoError(t, err)

	defer out.Close()

	cmd.Stdout, cmd.Stderr = out, out

	t.Cleanup(func() { stopGroup(cmd) })

	err = cmd.Run()
	raw, _ := os.ReadFile(out.Name())

	return string(raw), err
}

// stopGroup stops what a README block left running: SIGTERM (members leave gracefully), then SIGKILL after 20 s.
func stopGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}

	group := -cmd.Process.Pid
	syscall.Kill(group, syscall.SIGTERM) //nolint:errcheck // already gone is fine

	for deadline := time.Now().Add(20 * time.Second); syscall.Kill(group, 0) == nil; {
		if time.Now().After(deadline) {
			syscall.Kill(group, syscall.SIGKILL) //nolint:errcheck // idem

			return
		}

		time.Sleep(100 * time.Millisecond)
	}
}
