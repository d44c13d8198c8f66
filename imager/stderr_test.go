package imager_test

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/imager"
)

// TestCaptureStderr: what this process and the tools it runs write to os.Stderr becomes log lines (one per line,
// overlong lines cut rather than stalling; debug, but for host-tool adapter records, which keep their level),
// RecentStderr keeps the last ones, and restore brings the real standard error back after everything written is logged.
func TestCaptureStderr(t *testing.T) {
	var logs e2e.SyncBuffer

	original := os.Stderr
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	restore, err := imager.CaptureStderr(log)
	require.NoError(t, err)

	restored := false
	t.Cleanup(func() {
		if !restored {
			restore()
		}
	})

	require.NotSame(t, original, os.Stderr)

	fmt.Fprintln(os.Stderr, "profile ready:")
	fmt.Fprintln(os.Stderr, strings.Repeat("x", 10_000)) // longer than any line is kept

	// A host-tool adapter's record keeps its level; a tool's own complaint is debug.
	cmd := exec.Command("sh", "-c",
		`echo 'level=WARN msg="edgefactory hosttools adapter" tool=mksquashfs' >&2; echo 'mksquashfs: no space left' >&2`)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Run())

	restore()
	restored = true

	assert.Same(t, original, os.Stderr)

	out := logs.String()
	assert.Contains(t, out, `"msg":"imager output","line":"profile ready:"`)
	assert.Contains(t, out, `"level":"DEBUG","msg":"imager output","line":"mksquashfs: no space left"`)
	assert.Contains(t, out, `"level":"WARN","msg":"imager output","line":"level=WARN msg=`)
	assert.Equal(t, 6, strings.Count(out, `"msg":"imager output"`), "4 lines, the 10,000 bytes cut into 3")

	recent := imager.RecentStderr()
	require.NotEmpty(t, recent)
	assert.Equal(t, "mksquashfs: no space left", recent[len(recent)-1])
}
