package imager

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"unsafe"

	"github.com/siderolabs/talos/pkg/reporter"
)

// newProgress returns a Talos reporter whose lines go to log, and a stop function to call once the imager is done.
//
// The reporter only writes to the *os.File in its unexported field w, set to os.Stderr by reporter.New, and has no
// option to change it. Concurrent builds must not share stderr, so the field is pointed at a pipe read into the
// log. Should a future reporter lack that field, progress is dropped (a zero Reporter's nil file refuses writes
// without failing) and a warning says so; TestProgressReachesLog catches it.
func newProgress(log *slog.Logger) (*reporter.Reporter, func()) {
	pr, pw, err := os.Pipe()
	if err != nil {
		log.Warn("imager progress not logged", "err", err)

		return &reporter.Reporter{}, func() {}
	}

	rep := reporter.New(reporter.WithOutputMode(reporter.OutputModePlain))
	if !setReporterOutput(rep, pw) {
		pr.Close() //nolint:errcheck,gosec // unused
		pw.Close() //nolint:errcheck,gosec // unused
		warnNoProgress.Do(func() { log.Warn("imager progress not logged: unknown reporter layout") })

		return &reporter.Reporter{}, func() {}
	}

	done := make(chan struct{})

	go func() {
		defer close(done)

		logLines(pr, log)
	}()

	return rep, func() {
		pw.Close() //nolint:errcheck,gosec // ends logLines
		<-done
		pr.Close() //nolint:errcheck,gosec // read side, drained
	}
}

var warnNoProgress sync.Once

func setReporterOutput(rep *reporter.Reporter, w *os.File) bool {
	field := reflect.ValueOf(rep).Elem().FieldByName("w")
	if !field.IsValid() || field.Type() != reflect.TypeFor[*os.File]() {
		return false
	}

	reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Set(reflect.ValueOf(w)) //nolint:gosec // see newProgress

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
		io.Copy(io.Discard, pr) //nolint:errcheck,gosec // keep the imager's writes from blocking
	}
}
