package imager

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
)

// The Talos imager writes to os.Stderr on its own: it dumps every build's whole profile there, and hands it to the
// tools it runs (their complaints explain a failed build). In a server that stream is the log's, so it would break
// structured (JSON) logs and interleave concurrent builds. CaptureStderr turns it into log lines instead.

const (
	// stderrLineMax cuts longer lines (a tool dumping binary must not stall the pipe or the log).
	stderrLineMax = 4 << 10
	// stderrKept is how many recent lines RecentStderr returns.
	stderrKept = 40
)

var captured struct {
	mu     sync.Mutex
	recent []string
}

// CaptureStderr points os.Stderr at a pipe whose lines are logged (at debug level, but for the host-tool adapters'
// own records: see levelOf) and kept for RecentStderr. Loggers
// created before the call keep writing to the real standard error; so does the Go runtime (a crash is printed to
// file descriptor 2 directly). restore puts os.Stderr back once everything written so far is logged. Call it once per
// process, from the command that runs the server.
func CaptureStderr(log *slog.Logger) (restore func(), err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("capture standard error: %w", err)
	}

	original := os.Stderr
	os.Stderr = pw
	done := make(chan struct{})

	go func() {
		defer close(done)

		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, stderrLineMax), stderrLineMax)
		sc.Split(cutLines)

		for sc.Scan() {
			line := string(bytes.TrimRight(sc.Bytes(), "\r"))
			if line == "" {
				continue
			}

			log.Log(context.Background(), levelOf(line), "imager output", "line", line)

			captured.mu.Lock()
			captured.recent = append(captured.recent, line)
			if len(captured.recent) > 2*stderrKept {
				captured.recent = slices.Clone(captured.recent[len(captured.recent)-stderrKept:])
			}
			captured.mu.Unlock()
		}
	}()

	return func() {
		os.Stderr = original
		pw.Close() // ends the reader once drained
		<-done
		pr.Close() // drained
	}, nil
}

// RecentStderr returns the last lines written to the captured standard error (none without CaptureStderr): what
// the imager and its tools said last, for the log line of a failed build. With builds running at once, lines of
// another build may be among them.
func RecentStderr() []string {
	captured.mu.Lock()
	defer captured.mu.Unlock()

	return slices.Clone(captured.recent[max(0, len(captured.recent)-stderrKept):])
}

// levelOf is the level a captured line is logged at. The host-tool adapters (package hosttools) run as children
// of the imager and write slog text records ("level=WARN msg=..."): a warning such as lost SELinux labels keeps
// its level. Everything else (the imager's profile dump, the tools' own chatter) is debug.
func levelOf(line string) slog.Level {
	rest, ok := strings.CutPrefix(line, "level=")
	if !ok {
		return slog.LevelDebug
	}

	word, _, _ := strings.Cut(rest, " ")

	var level slog.Level
	if level.UnmarshalText([]byte(word)) != nil {
		return slog.LevelDebug
	}

	return level
}

// cutLines is bufio.ScanLines that also ends a line at stderrLineMax bytes, so any output keeps flowing.
func cutLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 && i < stderrLineMax {
		return i + 1, data[:i], nil
	}

	if len(data) >= stderrLineMax {
		return stderrLineMax, data[:stderrLineMax], nil
	}

	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}

	return 0, nil, nil
}
