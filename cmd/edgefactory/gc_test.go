package main

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	t.Run("GOGC unset", func(t *testing.T) {
		t.Setenv("GOGC", "") // restored after the subtest
		require.NoError(t, os.Unsetenv("GOGC"))

		debug.SetGCPercent(100)
		tuneGC()
		require.Equal(t, servingGCPercent, debug.SetGCPercent(100))
	})

	t.Run("GOGC set", func(t *testing.T) {
		t.Setenv("GOGC", "150")

		debug.SetGCPercent(150) // as the runtime did at start
		tuneGC()
		require.Equal(t, 150, debug.SetGCPercent(100), "GOGC from the environment decides")
	})
}
