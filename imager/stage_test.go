package imager

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStageOfStep(t *testing.T) {
	for _, tc := range []struct {
		step  string
		stage Stage
	}{
		{"building ISO...", StageBuilding},
		{"building UKI...", StageBuilding},
		{"creating disk image...", StageBuilding},
		{"rebuilding initramfs with system extensions...", StageBuilding},
		{"copying kernel...", StageBuilding},
		{"generating SecureBoot database...", StageSigning},
		{"compressing .zst", StageCompressing},
		{"compressing .xz", StageCompressing},
		{"processing .tar.gz", StageCompressing},
		{"profile ready:", ""},
		{"ISO ready", ""},
		{"compression done: disk.raw.zst", ""},
	} {
		got, ok := stageOfStep(tc.step)
		assert.Equal(t, tc.stage != "", ok, tc.step)
		assert.Equal(t, tc.stage, got, tc.step)
	}
}

// TestForwardProgress: every line reaches the log's pipe; a stage event is sent once per stage, details ignored.
func TestForwardProgress(t *testing.T) {
	in := "profile ready:\n  arch: amd64\ncreating disk image...\n  detail\ncreating disk image...\n" +
		"compressing .zst\ncompression done: x\n"

	var progress, events bytes.Buffer

	forwardProgress(strings.NewReader(in), &progress, &events)

	assert.Equal(t, in, progress.String())
	assert.Equal(t, `{"stage":"building"}`+"\n"+`{"stage":"compressing"}`+"\n", events.String())
}

// TestBuildReportsStages: the stages of a build reach the caller in order, the imager's own ones (compressing) from
// the worker process.
func TestBuildReportsStages(t *testing.T) {
	f := getFixture(t)
	b, _ := f.newBuilder(t, nil)

	var (
		mu     sync.Mutex
		stages []Stage
	)

	out, err := b.BuildReporting(context.Background(), f.plan(t, "metal-amd64.raw.zst", ""), func(s Stage) {
		mu.Lock()
		defer mu.Unlock()

		if len(stages) == 0 || stages[len(stages)-1] != s {
			stages = append(stages, s)
		}
	})
	require.NoError(t, err)
	out.Cleanup()

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []Stage{StageFetching, StageBuilding, StageCompressing}, stages)
}
