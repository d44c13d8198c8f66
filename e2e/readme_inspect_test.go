package e2e

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeInspect runs the README's "Checking a download" commands as written against `edgefactory dev`, in a
// directory of their own with bin/ linked to the binary: the ISO downloaded is inspected and its schematic, command
// line and boot entries are shown.
func TestReadmeInspect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary and an ISO; skipped with -short")
	}

	blocks := ReadmeBlocks(t, "## Checking a download", "sh")
	require.Len(t, blocks, 1, "the section has one block of commands")

	dev := StartDev(t)
	dir := readmeDir(t)

	cmd := exec.CommandContext(t.Context(), "bash", "-euo", "pipefail", "-c", dev.Rewrite(blocks[0]))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the README's inspect example failed:\n%s", out)

	text := string(out)
	assert.Contains(t, text, "metal-amd64.iso: ISO image")
	assert.Contains(t, text, "v1.13.0, schematic 9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c")
	assert.Contains(t, text, "noapic nolapic", "the schematic's kernel arguments are on the command line shown")
	assert.Contains(t, text, "El Torito")
}
