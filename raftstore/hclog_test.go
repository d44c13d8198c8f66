package raftstore

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

func TestHclogAdapter(t *testing.T) {
	tests := []struct {
		name      string
		threshold slog.Level
		log       func(hclog.Logger)
		want      []string // substrings of the output; nil means no output
	}{
		{"info below warn threshold is dropped", slog.LevelWarn,
			func(l hclog.Logger) { l.Info("entering follower state") }, nil},
		{"warn passes with its args and component", slog.LevelWarn,
			func(l hclog.Logger) { l.Warn("heartbeat timeout", "peer", "n2") },
			[]string{"level=WARN", `msg="heartbeat timeout"`, "component=raft", "peer=n2"}},
		{"named and with carry over", slog.LevelInfo,
			func(l hclog.Logger) { l.Named("snapshots").With("id", "1-2").Info("reaping") },
			[]string{"level=INFO", "component=raft.snapshots", "id=1-2", "msg=reaping"}},
		{"trace is below every default threshold", slog.LevelDebug,
			func(l hclog.Logger) { l.Trace("noise") }, nil},
		{"standard logger infers levels", slog.LevelWarn,
			func(l hclog.Logger) {
				l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERR] broken pipe")
			},
			[]string{"level=ERROR", `msg="broken pipe"`}},
		{"standard logger without inference is info", slog.LevelWarn,
			func(l hclog.Logger) { l.StandardLogger(nil).Print("[ERR] dropped as info") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tt.log(newHclogAdapter(base, tt.threshold))
			if tt.want == nil {
				require.Empty(t, buf.String())
				return
			}
			for _, w := range tt.want {
				require.Contains(t, buf.String(), w)
			}
		})
	}

	t.Run("slog handler level still applies", func(t *testing.T) {
		var buf bytes.Buffer
		base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
		l := newHclogAdapter(base, slog.LevelDebug)
		require.False(t, l.IsWarn())
		l.Warn("suppressed by the handler")
		require.Empty(t, buf.String())
		l.SetLevel(hclog.Off)
		l.Error("off")
		require.Empty(t, buf.String())
	})
}
