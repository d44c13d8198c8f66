package imager

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"unsafe"

	"github.com/siderolabs/talos/pkg/reporter"
)

// progressLog is a pipe whose lines go to a log as the imager's progress: a build worker's stdout.
type progressLog struct {
	w    *os.File // the write end, for the worker
	r    *os.File
	done chan struct{}
}

func newProgressLog(log *slog.Logger) (*progressLog, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}

	p := &progressLog{w: pw, r: pr, done: make(chan struct{})}

	go func() {
		defer close(p.done)

		logLines(pr, log)
	}()

	return p, nil
}

// close closes this process's write end and returns once every line written is logged: call it when the writers
// (the worker and the tools it ran, which inherit its stdout) are gone.
func (p *progressLog) close() {
	p.w.Close() // ends logLines once the other writers are gone
	<-p.done
	p.r.Close() // read side, drained
}

// newReporter returns a Talos reporter writing plain progress lines to w. The reporter only writes to the *os.File
// in its unexported field w, set to os.Stderr by reporter.New, and has no option to change it; stderr carries the
// imager's other output, so the field is pointed at w. Should a future reporter lack that field, the reporter
// returned discards progress (a zero Reporter's nil file refuses writes without failing) and ok is false;
// TestProgressReachesLog catches it.
func newReporter(w *os.File) (rep *reporter.Reporter, ok bool) {
	rep = reporter.New(reporter.WithOutputMode(reporter.OutputModePlain))
	if !setReporterOutput(rep, w) {
		return &reporter.Reporter{}, false
	}

	return rep, true
}

func setReporterOutput(rep *reporter.Reporter, w *os.File) bool {
	field := reflect.ValueOf(rep).Elem().FieldByName("w")
	if !field.IsValid() || field.Type() != reflect.TypeFor[*os.File]() {
		return false
	}

	reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Set(reflect.ValueOf(w)) // see newReporter

	return true
}

// logLines logs the reporter's output. The imager's progress messages are a step line followed by indented detail
// lines, and the step is repeated before every detail: each step is logged once, details carry their step.
func logLines(pr *os.File, log *slog.Logger) {
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)

	var step string

	for sc.Scan() {
		line := sc.Text()

		switch trimmed := strings.TrimSpace(line); {
		case trimmed == "":
		case strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t"):
			log.Info("imager", "step", step, "detail", trimmed)
		case trimmed != step:
			step = trimmed
			log.Info("imager", "step", step)
		}
	}

	if err := sc.Err(); err != nil {
		log.Warn("imager progress", "err", err)
		io.Copy(io.Discard, pr) //nolint:errcheck // keep the imager's writes from blocking
	}
}
