package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeSecure runs the README's secure cluster as written: init, three members over mutual TLS formed with a
// join token, a new token, the certificates, a gossip-key rotation, and no peer API on the public port.
func TestReadmeSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four processes of the binary; skipped with -short")
	}

	blocks := ReadmeBlocks(t, "### Securing a cluster", "sh")
	require.Len(t, blocks, 1, "the section has one block of commands")

	dir := readmeDir(t)
	require.NoError(t, os.Symlink(filepath.Join(RepoRoot(t), "build"), filepath.Join(dir, "build")))

	text, err := runReadmeBlock(t, dir, blocks[0], 3*time.Minute)
	require.NoError(t, err, "the README's secure cluster failed:\n%s", text)

	assert.Contains(t, text, "join token (expires", "init prints the first token")
	assert.Regexp(t, `join token [a-z0-9]{6} \(expires`, text, "token create prints a token")

	for _, m := range []string{"m1", "m2", "m3"} {
		assert.Regexp(t, `(?m)^`+m+`\s+[0-9a-f]+\s`, text, "certificates list shows %s's", m)
	}

	assert.Contains(t, text, "gossip-key rotated")
	assert.Contains(t, text, "\n404\n", "no peer API on the public port")
}
