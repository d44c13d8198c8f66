package e2e

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeNetbootProfiles runs the profile commands of the README's network-boot section, as written, against
// `edgefactory dev` (the section's serve command, which needs an interface and root, runs in the netns suite).
func TestReadmeNetbootProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}

	blocks := ReadmeBlocks(t, "### Network boot", "sh")
	require.Len(t, blocks, 2, "the section has the serve command and the profile commands")

	dev := StartDev(t)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", dev.Rewrite(blocks[1]))
	cmd.Dir = readmeDir(t)
	out, err := cmd.CombinedOutput()
	text := string(out)
	require.NoError(t, err, "the README's profile commands failed:\n%s", text)

	const id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	assert.Contains(t, text, "profile rack1-node1 written")
	assert.Regexp(t, `rack1-node1\s+mac=52:54:00:12:34:56\s+376567988ad3\s+v1\.13\.0\s+metal\s+false\s+console=ttyS0`, text)
	assert.Regexp(t, `rack1\s+label:rack=r1\s+376567988ad3`, text)
	assert.Contains(t, text, "kernel http://"+dev.Addr+"/image/"+id+"/v1.13.0/kernel-amd64 ")
	assert.Contains(t, text, " console=ttyS0\ninitrd http://"+dev.Addr+"/image/"+id+"/v1.13.0/initramfs-amd64.xz")
	assert.Contains(t, text, "echo no Edge Factory profile matches this machine: mac 52:54:00:99:99:99")
	assert.Regexp(t, `52:54:00:12:34:56\s+dev\S*\s+script\s+rack1-node1\s+http://`, text)
	assert.Regexp(t, `52:54:00:99:99:99\s+\S+\s+script\s+-\s+no profile`, text)
}
