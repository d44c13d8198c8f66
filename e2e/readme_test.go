package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeWalkthrough runs the README's curl walkthrough, as written, against `edgefactory dev`: the README's
// promise that these commands work is checked on every CI run.
func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}

	dev := StartDev(t)
	blocks := ReadmeBlocks(t, "## A walkthrough with curl", "sh")
	require.Len(t, blocks, 2, "the walkthrough has a block of commands and a block of mistakes")

	t.Run("commands", func(t *testing.T) {
		script := dev.Rewrite(blocks[0])
		out, err := exec.Command("bash", "-euo", "pipefail", "-c", script).CombinedOutput()
		require.NoError(t, err, "walkthrough failed:\n%s", out)
		assert.Contains(t, string(out), `["v1.12.0","v1.13.0"]`)
		assert.Contains(t, string(out), `"id":"9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"`)
		assert.Contains(t, string(out), "siderolabs/amd-ucode")
		assert.Contains(t, string(out), "rpi_generic")
		assert.Contains(t, string(out), `/talosctl/v1.13.0/talosctl-linux-amd64"`)
	})

	t.Run("mistakes", func(t *testing.T) {
		// Each command is followed by a comment "# <status> <start of the answer>".
		lines := strings.Split(strings.TrimSpace(blocks[1]), "\n")
		require.Equal(t, 0, len(lines)%2)

		for i := 0; i < len(lines); i += 2 {
			cmd := dev.Rewrite(lines[i]) + ` -w '%{http_code}'`
			want := regexp.MustCompile(`^# (\d{3}) (.*?)(\.\.\..*)?$`).FindStringSubmatch(lines[i+1])
			require.NotNil(t, want, "expected-answer comment: %q", lines[i+1])

			out, err := exec.Command("bash", "-c", cmd).Output()
			require.NoError(t, err, cmd)

			cut := strings.LastIndex(string(out), "\n")
			require.Positive(t, cut, "answer %q", out)
			body, status := string(out[:cut]), string(out[cut+1:])
			assert.Equal(t, want[1], status, cmd)
			assert.True(t, strings.HasPrefix(body, want[2]), "%s\nanswered %q, README says %q", cmd, body, want[2])
		}
	})
}

// TestReadmeFlavors runs the README's "Coming from image-service" block as written against `edgefactory dev`: a
// flavor is created with the old route and read back by the ID the README names.
func TestReadmeFlavors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}

	dev := StartDev(t)
	blocks := ReadmeBlocks(t, "## Coming from image-service", "sh")
	require.Len(t, blocks, 1, "the section has one block of commands")

	out, err := exec.Command("bash", "-euo", "pipefail", "-c", dev.Rewrite(blocks[0])).CombinedOutput()
	require.NoError(t, err, "the README's flavor commands failed:\n%s", out)
	assert.Contains(t, string(out), `{"id":"376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"}`,
		"POST /flavors answers the ID the README reads back")
	assert.Contains(t, string(out), "customization: {}", "GET /flavors/<id> answers the canonical schematic")
}
