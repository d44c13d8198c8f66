package raftstore

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends hashicorp/raft's hclog output to the node's slog logger. Raft's own level threshold is kept
// separately from the slog handler's, because raft is chatty at info (every election, snapshot and compaction) while
// the store logs the leadership changes that matter itself.
type hclogAdapter struct {
	log       *slog.Logger
	name      string
	threshold *atomic.Int64 // hclog.Level; shared by loggers derived with With/Named
	implied   []any
}

func newHclogAdapter(l *slog.Logger, threshold slog.Level) hclog.Logger {
	a := &hclogAdapter{log: l, name: "raft", threshold: new(atomic.Int64)}
	a.threshold.Store(int64(toHclog(threshold)))
	return a
}

func toHclog(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func toSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Info, NoLevel, Off (never passed to Log)
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	t := hclog.Level(a.threshold.Load())
	return t != hclog.Off && l >= t && a.log.Enabled(context.Background(), toSlog(l))
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.NoLevel {
		level = hclog.Info
	}

	if level == hclog.Warn && routineWarnings[msg] {
		level = hclog.Info
	}

	if !a.enabled(level) {
		return
	}
	attrs := make([]any, 0, 2+len(a.implied)+len(args))
	attrs = append(attrs, "component", a.name)
	attrs = append(attrs, a.implied...)
	attrs = append(attrs, args...)
	a.log.Log(context.Background(), toSlog(level), msg, attrs...)
}

// routineWarnings are events raft logs as warnings that happen in every healthy cluster (each start elects a
// leader; a joining member lacks the log): an operator should not be woken by them.
var routineWarnings = map[string]bool{
	"heartbeat timeout reached, starting election": true,
	"failed to get previous log":                   true,
	// A member waiting to be added (or bootstrapped) has no configuration yet, and a non-voter never stands.
	"no known peers, aborting election":                   true,
	"not part of stable configuration, aborting election": true,
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool                 { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool                  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool                  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool                 { return a.enabled(hclog.Error) }
func (a *hclogAdapter) ImpliedArgs() []any            { return a.implied }
func (a *hclogAdapter) Name() string                  { return a.name }
func (a *hclogAdapter) SetLevel(l hclog.Level)        { a.threshold.Store(int64(l)) }
func (a *hclogAdapter) GetLevel() hclog.Level         { return hclog.Level(a.threshold.Load()) }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	c.name = a.name + "." + name
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdWriter{a: a, level: hclog.Info}
	if opts != nil {
		w.infer = opts.InferLevels
		if opts.ForceLevel != hclog.NoLevel {
			w.level, w.infer = opts.ForceLevel, false
		}
	}
	return w
}

// stdWriter turns lines written by a standard library logger into levelled records, reading "[WARN]"-style
// prefixes when asked to.
type stdWriter struct {
	a     *hclogAdapter
	level hclog.Level
	infer bool
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(string(bytes.TrimRight(p, "\n")), "\n") {
		level := w.level
		if w.infer {
			level, line = inferLevel(line, level)
		}
		w.a.Log(level, line)
	}
	return len(p), nil
}

func inferLevel(line string, def hclog.Level) (hclog.Level, string) {
	for prefix, l := range map[string]hclog.Level{
		"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug, "[INFO]": hclog.Info,
		"[WARN]": hclog.Warn, "[ERR]": hclog.Error, "[ERROR]": hclog.Error,
	} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return l, strings.TrimSpace(rest)
		}
	}
	return def, line
}
