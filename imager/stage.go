package imager

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strings"
)

// Stage names the step a build is at, as the status pages show it. The builder reports the steps it runs itself
// (waiting for a slot, fetching inputs, starting the imager); the worker reports the Talos imager's own steps
// (compressing, signing) as stage events on its events pipe, derived from the imager's progress messages.
type Stage string

// The stages of a build, in order (compressing and signing happen only for some outputs).
const (
	StageQueued      Stage = "queued"          // waiting for a build slot
	StageFetching    Stage = "fetching inputs" // release inputs pulled and verified (a talosctl copy: extracting)
	StageBuilding    Stage = "building"        // the Talos imager runs
	StageSigning     Stage = "signing"         // the imager generates the secure-boot database
	StageCompressing Stage = "compressing"     // the imager compresses its output
)

// Report receives the stages of one build, in order, never concurrently.
type Report func(Stage)

// stageOfStep maps one progress step of the Talos imager (its reporter's message, github.com/siderolabs/talos
// pkg/imager) to the stage it begins; false for steps inside the current stage.
func stageOfStep(step string) (Stage, bool) {
	switch {
	case strings.HasPrefix(step, "compressing ."), strings.HasPrefix(step, "processing .tar.gz"):
		return StageCompressing, true
	case strings.HasPrefix(step, "generating SecureBoot database"):
		return StageSigning, true
	case strings.HasPrefix(step, "building "), strings.HasPrefix(step, "creating disk image"),
		strings.HasPrefix(step, "rebuilding initramfs"), strings.HasPrefix(step, "copying "):
		return StageBuilding, true
	}

	return "", false
}

// workerEvent is one line of a worker's events pipe (its file descriptor 3): the worker's side of the protocol
// beside the job and result files.
type workerEvent struct {
	Stage Stage `json:"stage,omitempty"`
}

// workerEventsFD is the worker's events pipe (the first of exec.Cmd.ExtraFiles).
const workerEventsFD = 3

// forwardProgress copies the imager reporter's lines from r to progress (the worker's stdout, which the node
// logs) and sends a stage event to events each time a step begins another stage.
func forwardProgress(r io.Reader, progress io.Writer, events io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)

	var current Stage

	for sc.Scan() {
		line := sc.Text()
		io.WriteString(progress, line+"\n") //nolint:errcheck // progress is best effort: the build goes on

		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue // a detail of the step above
		}

		if st, ok := stageOfStep(strings.TrimSpace(line)); ok && st != current {
			current = st
			data, _ := json.Marshal(workerEvent{Stage: st}) //nolint:errchkjson // a struct of one string
			events.Write(append(data, '\n'))                //nolint:errcheck // the node may not listen
		}
	}

	io.Copy(io.Discard, r) //nolint:errcheck // keep the reporter's writes from blocking
}

// readEvents reads a worker's events until the pipe closes, reporting each stage.
func readEvents(r *os.File, report Report) {
	sc := bufio.NewScanner(r)

	for sc.Scan() {
		var ev workerEvent
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Stage != "" && report != nil {
			report(ev.Stage)
		}
	}

	io.Copy(io.Discard, r) //nolint:errcheck // drain
}
