package e2e

import (
	"os"
	"path/filepath"
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

	text := runReadmeSection(t, "### A cluster", 3*time.Minute)

	assert.Contains(t, text, "ring v")
	assert.Contains(t, text, ": 3 members,", "status lists three members in the ring:\n%s", text)
	assert.NotContains(t, text, "leader NONE", text)

	for _, name := range []string{"n1", "n2", "n3"} {
		assert.Contains(t, text, name, "status names %s", name)
	}
}

// runReadmeSection runs the one block of shell commands under heading, as written, in a directory of its own
// (readmeDir, with build/ linked to the repository's), and returns what it printed; the test fails if it fails.
func runReadmeSection(t *testing.T, heading string, timeout time.Duration) string {
	t.Helper()

	blocks := ReadmeBlocks(t, heading, "sh")
	require.Len(t, blocks, 1, "%s has one block of commands", heading)

	dir := readmeDir(t)
	require.NoError(t, os.Symlink(filepath.Join(RepoRoot(t), "build"), filepath.Join(dir, "build")))

	text, err := runReadmeBlock(t, dir, blocks[0], timeout)
	require.NoError(t, err, "the README's %q failed:\n%s", heading, text)

	return text
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
